"""The sandbox's guarantees, one test each, with the real bubblewrap.

Skipped only where bubblewrap cannot run (no program, or user namespaces blocked);
in CI (CI set) that is a failure instead: the guarantees must be shown there.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.workspaces import sandbox as sb
from bot.workspaces.store import MB

UID = 64000
BWRAP = sb.bwrap_path()


def _bwrap_problem() -> str | None:
    if BWRAP is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    done = subprocess.run(
        [BWRAP, "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, text=True
    )
    if done.returncode != 0:
        return f"bubblewrap cannot run here: {done.stderr.strip()}"
    return None


def _running_as(uid: int, name: str, argument: str) -> list[str]:
    """Live processes called `name` with `argument` whose real user id is `uid` (from
    /proc). The argument tells this test's processes from other tests' running at once."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if (
            fields.get("Name", "").strip() == name
            and fields["Uid"].split()[0] == str(uid)
            and not fields.get("State", "").strip().startswith("Z")
            and argument.encode() in argv
        ):
            found.append(entry.name)
    return found


@pytest.fixture(scope="module", autouse=True)
def _needs_bwrap() -> None:
    problem = _bwrap_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"the sandbox must run in CI: {problem}")
    pytest.skip(problem)


@pytest.fixture
def worktree() -> Iterator[Path]:
    """A worktree the sandbox user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="tl-sandbox-"))
    os.chmod(folder, 0o755)  # noqa: S103 (the sandbox user must reach the worktree)
    tree = folder / "tree"
    tree.mkdir()
    if os.geteuid() == 0:
        os.chown(tree, UID, UID)
    yield tree
    shutil.rmtree(folder)


async def run(
    tree: Path, argv: list[str], *, policy: sb.Policy | None = None, **limits: int | float
) -> sb.proc.Completed:
    return await sb.run_sandboxed(
        tree,
        argv,
        policy=policy or sb.Policy(uid=UID),
        limits=sb.Limits(**{"seconds": 20.0, **limits}),  # type: ignore[arg-type]
        bwrap=BWRAP,
    )


async def test_a_command_runs_in_the_worktree_as_the_sandbox_user(worktree: Path) -> None:
    done = await run(worktree, ["sh", "-c", "id -u; pwd; echo made > out.txt"])
    assert done.exit_code == 0, done.output
    assert done.output.split() == [str(UID), sb.WORKDIR]
    assert (worktree / "out.txt").read_text() == "made\n"


async def test_a_file_outside_the_worktree_cannot_be_read(worktree: Path) -> None:
    secret = worktree.parent / "secret.txt"
    secret.write_text("s3cret-outside")
    os.chmod(secret, 0o644)  # readable by anyone on the machine: only the sandbox hides it
    done = await run(worktree, ["cat", str(secret)])
    assert done.exit_code != 0
    assert "s3cret-outside" not in done.output
    # The machine's own files beyond the few of /etc are not there either.
    done = await run(worktree, ["sh", "-c", f"ls {Path.cwd()} /root /work 2>&1; cat /etc/shadow"])
    assert done.exit_code != 0
    assert "pyproject.toml" not in done.output


async def test_a_loopback_port_cannot_be_reached(worktree: Path) -> None:
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connect = [
        "python3",
        "-c",
        f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')",
    ]
    try:
        done = await run(worktree, connect)
        assert done.exit_code != 0
        assert "CONNECTED" not in done.output
        assert accepted == []
        # The same command with network allowed does connect: the test can fail.
        allowed = await run(worktree, connect, policy=sb.Policy(uid=UID, network=True))
        assert allowed.exit_code == 0, allowed.output
    finally:
        server.close()
        await server.wait_closed()


async def test_no_threadline_variable_reaches_a_command(
    worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THREADLINE_GITHUB_TOKEN", "ghs_do-not-leak")
    policy = sb.Policy(uid=UID, env={"THREADLINE_X": "no", "PROJECT_FLAG": "yes"})
    done = await run(worktree, ["env"], policy=policy)
    assert done.exit_code == 0
    assert "THREADLINE" not in done.output
    assert "ghs_do-not-leak" not in done.output
    assert "PROJECT_FLAG=yes" in done.output


async def test_a_command_is_stopped_at_its_time_limit_with_its_children(worktree: Path) -> None:
    done = await run(worktree, ["sh", "-c", "sleep 60.4217 & sleep 60.4217"], seconds=1.0)
    assert done.timed_out
    assert done.exit_code is None
    assert done.seconds < 10
    assert "time limit of 1 s" in done.output
    assert _running_as(UID, "sleep", "60.4217") == []


async def test_a_command_whose_turn_is_cancelled_is_stopped_with_its_children(
    worktree: Path,
) -> None:
    """A cancelled turn (the API's cancel, `/stop`) cancels its engine's task, and with
    it the running command: its whole process group goes, not only the waiting."""
    running = asyncio.create_task(
        run(worktree, ["sh", "-c", "sleep 60.5317 & sleep 60.5317"], seconds=60.0)
    )
    for _ in range(200):
        if len(_running_as(UID, "sleep", "60.5317")) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(_running_as(UID, "sleep", "60.5317")) == 2
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for _ in range(100):
        if not _running_as(UID, "sleep", "60.5317"):
            break
        await asyncio.sleep(0.05)
    assert _running_as(UID, "sleep", "60.5317") == []


async def test_a_command_is_stopped_at_its_cpu_limit(worktree: Path) -> None:
    done = await run(worktree, ["python3", "-c", "while True: pass"], cpu_seconds=1)
    assert not done.timed_out
    assert done.exit_code != 0
    assert done.seconds < 10


async def test_a_command_cannot_take_more_memory_than_its_limit(worktree: Path) -> None:
    grab = "x = bytearray(1024 * 1024 * 1024); print('got it')"
    done = await run(worktree, ["python3", "-c", grab], memory_bytes=256 * MB)
    assert done.exit_code != 0
    assert "MemoryError" in done.output
    assert "got it" not in done.output


async def test_a_fork_bomb_is_contained(worktree: Path) -> None:
    bomb = (
        "import os, time\n"
        "made = 0\n"
        "for _ in range(300):\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(2)\n"
        "        os._exit(0)\n"
        "    made += 1\n"
        "print('made', made)\n"
    )
    done = await run(worktree, ["python3", "-c", bomb], processes=40)
    made = int(done.output.split()[-1])
    assert made < 40, done.output


async def test_huge_output_is_cut_in_the_middle_with_a_marker(worktree: Path) -> None:
    done = await run(
        worktree,
        ["sh", "-c", "echo FIRST; head -c 50000000 /dev/zero | tr '\\0' x; echo; echo LAST"],
        output_bytes=10_000,
    )
    assert done.exit_code == 0
    assert done.output.startswith("FIRST")
    assert done.output.rstrip().endswith("LAST")
    assert "bytes of output cut" in done.output
    assert done.cut
    assert len(done.output) < 11_000
    assert done.total_bytes > 50_000_000


async def test_a_file_larger_than_the_limit_cannot_be_written(worktree: Path) -> None:
    done = await run(worktree, ["sh", "-c", "head -c 5000000 /dev/zero > big"], file_bytes=MB)
    assert done.exit_code != 0
    assert (worktree / "big").stat().st_size <= MB


async def test_a_worktree_growing_past_its_quota_stops_the_command(worktree: Path) -> None:
    fill = "for i in 1 2 3 4 5 6; do head -c 1000000 /dev/zero > f$i; done; sleep 30"
    done = await run(worktree, ["sh", "-c", fill], disk_bytes=3 * MB)
    assert "grew past its quota of 3 MB" in done.output
    assert done.seconds < 20


async def test_a_read_only_worktree_cannot_be_written(worktree: Path) -> None:
    policy = sb.Policy(uid=UID, writable=False)
    done = await run(worktree, ["sh", "-c", "echo x > out.txt"], policy=policy)
    assert done.exit_code != 0
    assert not (worktree / "out.txt").exists()


async def test_without_bwrap_nothing_runs_unless_the_operator_chose_none(worktree: Path) -> None:
    with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
        await sb.run_sandboxed(
            worktree, ["true"], policy=sb.Policy(uid=UID), limits=sb.Limits(), bwrap=None
        )
    done = await sb.run_sandboxed(
        worktree, ["echo", "plain"], policy=sb.Policy(uid=UID), limits=sb.Limits(), sandbox="none"
    )
    assert done.output == "plain\n"


def test_the_bwrap_arguments_isolate_by_default() -> None:
    argv = sb.bwrap_argv("bwrap", Path("/w/t"), ["make"], sb.Policy(uid=1234))
    assert argv[0] == "bwrap"
    assert argv[-2:] == ["--", "make"]
    for flag in ("--unshare-all", "--die-with-parent", "--clearenv", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[argv.index("--uid") + 1] == "1234"
    assert argv[argv.index("/w/t") - 1 : argv.index("/w/t") + 2] == ["--bind", "/w/t", sb.WORKDIR]
    ro = sb.bwrap_argv("bwrap", Path("/w/t"), ["make"], sb.Policy(writable=False, network=True))
    assert "--share-net" in ro
    assert ro[ro.index("/w/t") - 1] == "--ro-bind"
