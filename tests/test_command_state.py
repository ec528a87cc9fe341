"""A CLI's packed session records: what goes in, and that unpacking a hostile archive
writes nothing outside the adapter's folders of the home."""

from __future__ import annotations

import base64
import io
import tarfile
from pathlib import Path

from bot.agents.command_state import MAX_STATE_BYTES, pack, present, unpack

FOLDERS = (".claude/projects",)


def test_records_round_trip_without_links_or_other_folders(tmp_path: Path) -> None:
    home = tmp_path / "one"
    records = home / ".claude" / "projects" / "-workspace"
    records.mkdir(parents=True)
    (records / "s1.jsonl").write_text("hello\n")
    (records / "link.jsonl").symlink_to("/etc/passwd")
    (home / ".claude" / "settings.json").write_text("{}")  # not a record folder
    packed = pack(home, FOLDERS)
    assert packed is not None
    other = tmp_path / "two"
    other.mkdir()
    assert not present(other, FOLDERS)
    assert unpack(other, packed, FOLDERS, None) == 1
    assert (other / ".claude" / "projects" / "-workspace" / "s1.jsonl").read_text() == "hello\n"
    assert not (other / ".claude" / "projects" / "-workspace" / "link.jsonl").exists()
    assert not (other / ".claude" / "settings.json").exists()
    assert present(other, FOLDERS)


def test_too_much_or_nothing_packs_to_none(tmp_path: Path) -> None:
    assert pack(tmp_path, FOLDERS) is None
    big = tmp_path / ".claude" / "projects" / "big.jsonl"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"x" * (MAX_STATE_BYTES + 1))
    assert pack(tmp_path, FOLDERS) is None


def _archive(members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return base64.b64encode(buffer.getvalue()).decode()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_a_hostile_archive_writes_nothing_outside_the_record_folders(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    link = tarfile.TarInfo(".claude/projects/escape")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc"
    device = tarfile.TarInfo(".claude/projects/null")
    device.type = tarfile.CHRTYPE
    packed = _archive(
        [
            _file(".claude/projects/../../../outside.txt"),
            _file("/tmp/absolute.txt"),  # noqa: S108 (a hostile member's name)
            _file(".bashrc"),
            (link, b""),
            (device, b""),
            _file(".claude/projects/ok.jsonl", b"fine"),
        ]
    )
    try:
        count = unpack(home, packed, FOLDERS, None)
    except tarfile.TarError:
        count = -1  # the data filter refused the archive: equally safe
    assert not (tmp_path / "outside.txt").exists()
    assert not (home / ".bashrc").exists()
    assert not (home / ".claude" / "projects" / "escape").exists()
    assert not (home / ".claude" / "projects" / "null").exists()
    assert count in (1, -1)
    if count == 1:
        assert (home / ".claude" / "projects" / "ok.jsonl").read_bytes() == b"fine"
