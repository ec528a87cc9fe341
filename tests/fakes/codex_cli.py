#!/usr/bin/python3
"""A fake Codex CLI (`codex exec [resume] --json ... [THREAD] -`): reads the prompt on stdin
and prints the JSONL events `codex exec --json` prints (thread.started, turn.started,
item.started/item.completed with reasoning, command_execution, file_change and
agent_message items, turn.completed with usage). Its answer says what it saw: argv, its
provider variables, Threadline's variables. Like Codex, it keeps each thread in a rollout
file under ~/.codex/sessions and cannot resume a thread it has no file of. Standard
library only: it runs in the sandbox."""

import json
import os
import subprocess
import sys


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def main() -> int:
    argv = sys.argv[1:]
    resuming = argv[:2] == ["exec", "resume"]
    flags = argv[2:4] if resuming else argv[1:3]
    if argv[0] != "exec" or flags != ["--json", "--skip-git-repo-check"] or argv[-1] != "-":
        print(f"unexpected arguments: {argv}", file=sys.stderr)
        return 2
    prompt = sys.stdin.read()
    thread = argv[-2] if resuming else "0199a213-81c0-7800-8aa1-bbab2a035a53"
    folder = os.path.join(
        os.environ.get("HOME", "/nonexistent"), ".codex", "sessions", "2026", "01", "02"
    )
    rollout = os.path.join(folder, f"rollout-2026-01-02T03-04-05-{thread}.jsonl")
    if resuming and not os.path.exists(rollout):
        print(f"Error: no rollout found for thread id {thread}", file=sys.stderr)
        return 1
    os.makedirs(folder, exist_ok=True)
    with open(rollout, "a") as handle:
        handle.write(json.dumps({"prompt": prompt}) + "\n")
    emit({"type": "thread.started", "thread_id": thread})
    emit({"type": "turn.started"})
    emit(
        {
            "type": "item.completed",
            "item": {"id": "item_0", "type": "reasoning", "text": "**Looking at the tree**"},
        }
    )
    command = "ls"
    emit(
        {
            "type": "item.started",
            "item": {
                "id": "item_1",
                "type": "command_execution",
                "command": command,
                "aggregated_output": "",
                "exit_code": None,
                "status": "in_progress",
            },
        }
    )
    done = subprocess.run(["/bin/ls"], capture_output=True, text=True, check=False)
    emit(
        {
            "type": "item.completed",
            "item": {
                "id": "item_1",
                "type": "command_execution",
                "command": command,
                "aggregated_output": done.stdout,
                "exit_code": done.returncode,
                "status": "completed",
            },
        }
    )
    with open("codex.txt", "a") as handle:
        handle.write(prompt + "\n")
    emit(
        {
            "type": "item.completed",
            "item": {
                "id": "item_2",
                "type": "file_change",
                "changes": [{"path": "codex.txt", "kind": "add"}],
                "status": "completed",
            },
        }
    )
    seen = {
        "argv": argv,
        "base_url": os.environ.get("OPENAI_BASE_URL"),
        "key": os.environ.get("OPENAI_API_KEY"),
        "anthropic": os.environ.get("ANTHROPIC_API_KEY"),
        "threadline": sorted(k for k in os.environ if k.startswith("THREADLINE_")),
    }
    emit(
        {
            "type": "item.completed",
            "item": {"id": "item_3", "type": "agent_message", "text": "SEEN " + json.dumps(seen)},
        }
    )
    emit(
        {
            "type": "turn.completed",
            "usage": {"input_tokens": 1200, "cached_input_tokens": 200, "output_tokens": 345},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
