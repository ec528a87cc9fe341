#!/usr/bin/python3
"""A fake Claude Code CLI (`claude -p --output-format stream-json --verbose`): reads the
task on stdin, writes a file in its working directory, and prints the stream-json lines
Claude Code prints (system init, assistant text and tool_use, user tool_result, result),
with what it saw (argv, its provider variables, Threadline's variables, its home) in its
first text so a test can check them. `--resume ID` needs the session file it wrote in its
home on the first run, where Claude Code keeps it: ~/.claude/projects/<cwd, "/" as
"-">/<ID>.jsonl. Standard library only: it runs inside the sandbox."""

import json
import os
import sys
import uuid


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def main() -> int:
    argv = sys.argv[1:]
    task = sys.stdin.read()
    home = os.environ.get("HOME", "")
    sessions = os.path.join(home, ".claude", "projects", os.getcwd().replace("/", "-"))
    resumed = argv[argv.index("--resume") + 1] if "--resume" in argv else None
    if resumed is not None and not os.path.exists(os.path.join(sessions, resumed + ".jsonl")):
        emit(
            {
                "type": "result",
                "subtype": "error_during_execution",
                "is_error": True,
                "result": f"No conversation found with session ID: {resumed}",
                "session_id": resumed,
            }
        )
        return 1
    session = resumed or str(uuid.uuid4())
    os.makedirs(sessions, exist_ok=True)
    with open(os.path.join(sessions, session + ".jsonl"), "a") as handle:
        handle.write(task + "\n")
    emit(
        {
            "type": "system",
            "subtype": "init",
            "session_id": session,
            "cwd": os.getcwd(),
            "model": "claude-fake-1",
            "tools": ["Bash", "Write"],
            "permissionMode": "default",
        }
    )
    seen = {
        "argv": argv,
        "task": task,
        "base_url": os.environ.get("ANTHROPIC_BASE_URL"),
        "key": os.environ.get("ANTHROPIC_API_KEY"),
        "threadline": sorted(k for k in os.environ if k.startswith("THREADLINE_")),
        "home": home,
        "cwd": os.getcwd(),
        "resumed": resumed,
    }
    emit(
        {
            "type": "assistant",
            "session_id": session,
            "parent_tool_use_id": None,
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-fake-1",
                "content": [{"type": "text", "text": "SEEN " + json.dumps(seen)}],
                "usage": {"input_tokens": 10, "output_tokens": 5},
            },
        }
    )
    name = "notes.txt"
    emit(
        {
            "type": "assistant",
            "session_id": session,
            "parent_tool_use_id": None,
            "message": {
                "id": "msg_2",
                "type": "message",
                "role": "assistant",
                "model": "claude-fake-1",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "Write",
                        "input": {"file_path": name, "content": task},
                    }
                ],
            },
        }
    )
    with open(name, "a") as handle:
        handle.write(task + "\n")
    emit(
        {
            "type": "user",
            "session_id": session,
            "parent_tool_use_id": None,
            "message": {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": f"File created successfully at: {name}",
                        "is_error": False,
                    }
                ],
            },
        }
    )
    print("a line on stderr that is not JSON", file=sys.stderr, flush=True)
    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "duration_ms": 12,
            "duration_api_ms": 10,
            "num_turns": 2,
            "session_id": session,
            "result": f"Wrote {name} (session {session})",
            "total_cost_usd": 0.0123,
            "usage": {
                "input_tokens": 100,
                "cache_creation_input_tokens": 20,
                "cache_read_input_tokens": 30,
                "output_tokens": 40,
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
