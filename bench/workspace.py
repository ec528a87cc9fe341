"""Workspace benchmark: set-up time of a session's worktree, and the sandbox's cost.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/workspace.py                  # 10,000 files, 50 MB
    .venv/bin/python bench/workspace.py --files 2000 --megabytes 10 --commands 20

A repository of --files files (--megabytes in all, incompressible) is made and served
over loopback by `git http-backend` with a token header, as the fake hosts do. Cold:
the mirror fetched plus a worktree added; warm: one more worktree from the mirror
(what a further session on the same repository costs), --warm times, the median, each
interleaved with its baseline measured in the same run: a bare `git worktree add` of
the same commit (git's own cost, with nothing of Threadline's: no quota checks, no
handing the files to the sandbox user). Then `true` is run --commands times plainly
(`proc.run`) and in the sandbox (`run_sandboxed`, bubblewrap + prlimit): the
difference of the medians is the sandbox's overhead per command. The machine's load
average is printed first and last: on a shared machine the figures move with it.
Targets: warm worktree under 1 s; sandbox overhead under 50 ms. Exit code 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import code_state

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:  # tests/ is not installed; it sits beside bench/
    sys.path.insert(0, str(HERE.parent))

from bot.workspaces import proc  # noqa: E402
from bot.workspaces import sandbox as sb  # noqa: E402
from bot.workspaces.git import Credential  # noqa: E402
from bot.workspaces.store import WorkspaceStore  # noqa: E402
from tests.fakes.git_http import basic, git, serve_git  # noqa: E402

TOKEN = "ghs_bench-token"
UID = 64000


def make_big_repo(root: Path, files: int, megabytes: int) -> None:
    work = root / "acme" / "big-work"
    work.mkdir(parents=True)
    size = megabytes * 1024 * 1024 // files
    for number in range(files):
        folder = work / f"d{number // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{number:05d}.bin").write_bytes(os.urandom(size))
    git(work, "init", "--quiet", "-b", "main")
    git(work, "add", "--all")
    git(work, "commit", "--quiet", "-m", "big")
    git(root, "clone", "--quiet", "--bare", str(work), str(root / "acme" / "big.git"))


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


async def main(args: argparse.Namespace) -> int:
    print(f"code: {code_state()}")
    print(f"load average at start: {load()}")
    scratch = Path(tempfile.mkdtemp(prefix="tl-bench-"))
    os.chmod(scratch, 0o755)  # noqa: S103 (the sandbox user must reach the worktree)
    try:
        started = time.perf_counter()
        make_big_repo(scratch / "served", args.files, args.megabytes)
        print(
            f"repository: {args.files} files, {args.megabytes} MB, made in "
            f"{time.perf_counter() - started:.1f} s"
        )
        store = WorkspaceStore(
            scratch / "ws", quota_bytes=10 * 1024**3, owner=UID if os.geteuid() == 0 else None
        )
        async with serve_git(scratch / "served", basic("x-access-token", TOKEN)) as server:
            started = time.perf_counter()
            mirror = await store.fetch(
                "github",
                "acme/big",
                f"{server.url}/acme/big.git",
                Credential.github(server.url, TOKEN),
            )
            head = await store.default_head(mirror, "main")
            await store.add_worktree("s-cold", mirror, head, "threadline/s-cold")
            cold = time.perf_counter() - started
        warms, bare = [], []
        for number in range(args.warm):
            started = time.perf_counter()
            tree = await store.add_worktree(f"s-warm{number}", mirror, head, f"tl/s-warm{number}")
            warms.append(time.perf_counter() - started)
            started = time.perf_counter()
            plain = scratch / f"plain{number}"
            git(mirror, "worktree", "add", "--quiet", "-b", f"plain{number}", str(plain), head)
            bare.append(time.perf_counter() - started)
        warm, baseline = statistics.median(warms), statistics.median(bare)
        print(f"cold (mirror + worktree): {cold:.2f} s")
        print(
            f"warm (worktree only):     {warm:.2f} s median of {args.warm} "
            f"({', '.join(f'{w:.2f}' for w in warms)})   target < 1 s"
        )
        print(
            f"baseline bare git worktree add: {baseline:.2f} s median; "
            f"warm / baseline = {warm / baseline:.2f}"
        )
        for folder in (scratch / "ws", scratch / "ws" / "trees"):
            os.chmod(folder, 0o755)  # noqa: S103 (the same)
        plain, boxed = [], []
        env = {"PATH": sb.SANDBOX_PATH}
        for _ in range(args.commands):
            done = await proc.run(["true"], env=env, cwd=tree.path, time_limit=10)
            plain.append(done.seconds)
            done = await sb.run_sandboxed(
                tree.path,
                ["true"],
                policy=sb.Policy(uid=UID),
                limits=sb.Limits(),
                bwrap=sb.bwrap_path(),
            )
            boxed.append(done.seconds)
        overhead = statistics.median(boxed) - statistics.median(plain)
        print(
            f"command `true`: plain median {statistics.median(plain) * 1000:.1f} ms, "
            f"sandboxed median {statistics.median(boxed) * 1000:.1f} ms"
        )
        print(f"sandbox overhead per command: {overhead * 1000:.1f} ms   target < 50 ms")
        print(f"load average at end: {load()}")
        return 0 if warm < 1.0 and overhead < 0.05 else 1
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--commands", type=int, default=30)
    parser.add_argument("--warm", type=int, default=5)
    sys.exit(asyncio.run(main(parser.parse_args())))
