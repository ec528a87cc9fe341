"""Commands on agent sessions and workflow runs: list, show, transcript, send, close, restart,
purge."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from bot.config import Settings

if TYPE_CHECKING:
    from bot.server import Services
    from bot.sessions.store import SessionInfo, SessionStore
from bot.cli.common import (
    EXIT_FAILURE,
    _session_or_complain,
    _with_sessions,
)
from bot.cli.workspace_events import command_line, describe


def cmd_sessions_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        rows = store.recent(state=args.state, repo=args.repo, limit=args.limit)
        if args.json:
            print(json.dumps([r.summary() for r in rows], indent=2))
            return 0
        if not rows:
            print("no sessions")
            return 0
        for r in rows:
            created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
            state = r.state if r.live else f"{r.state}:{r.close_reason}"
            print(
                f"{r.id}  {created}  {state:<22}  {r.agent_id:<12}  turns {r.turns:<3}  {r.thread.key}"
            )
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_show(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        inputs = [i.__dict__ for i in store.inputs(found.id)]
        children = [
            {"id": c.id, "agent": c.agent_id, "state": c.state, "output": c.output}
            for c in store.children(found.id)
        ]
        if args.json:
            shown = {**found.summary(), "spec": found.spec, "inputs": inputs, "children": children}
            print(json.dumps(shown, indent=2))
            return 0
        for key, value in found.summary().items():
            print(f"{key:>17}: {value if value is not None else '-'}")
        print("           inputs:")
        for i in inputs:
            print(
                f"                   #{i['id']} {i['status']:<9} {i['kind']:<8} @{i['author']}: {i['body'][:80]}"
            )
        if children:
            print("      delegations:")
            for c in children:
                output = (c["output"] or "").replace("\n", " ")[:60]
                print(f"                   {c['id']} {c['agent']:<12} {c['state']:<7} {output}")
        _print_gates(services, found.id)
        _print_workspace(store.transcript(found.id))
        return 0

    return _with_sessions(settings, use)


def _print_workspace(events: list[Any]) -> None:
    """The session's commands (the last ten) and its newest worktree diff's files."""
    commands = [e for e in events if e.kind == "command"]
    if commands:
        print("         commands:")
        for e in commands[-10:]:
            print(f"                   {command_line(e.data)}")
    diffs = [e for e in events if e.kind == "worktree_diff"]
    if diffs:
        lines = describe("worktree_diff", diffs[-1].data) or []
        print(f"    worktree diff: {lines[0] if lines else '-'}")


def _gate_rows(services: Services, session_id: str) -> tuple[list[Any], list[Any]]:
    from bot.sessions.approvals import ApprovalStore

    approvals = ApprovalStore(services.engine)
    return approvals.gates(session_id), approvals.change_sets(session_id)


def _print_gates(services: Services, session_id: str) -> None:
    gates, changes = _gate_rows(services, session_id)
    if gates:
        print("            gates:")
        for g in gates:
            who = f" by @{g.decided_by}" if g.decided_by else ""
            sha = f" on {g.decided_sha[:12]}" if g.decided_sha else ""
            print(f"                   #{g.id} {g.status:<17}{who}{sha}  {g.subject}")
    if changes:
        print("      change sets:")
        for c in changes:
            where = c.pull_url or c.branch or c.error or ""
            print(f"                   #{c.id} {c.status:<9} {c.title}  {where}")


def _workflow_ids(services: Services) -> list[str]:
    from bot.agents.chain import CHAIN_ENGINE

    config = services.runtime.config
    return [a.id for a in config.agents.values() if a.engine == CHAIN_ENGINE]


def cmd_runs_list(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        runs = store.recent(agents=_workflow_ids(services), limit=args.limit)
        if args.json:
            print(json.dumps([r.summary() for r in runs], indent=2))
            return 0
        if not runs:
            print("no workflow runs")
            return 0
        for r in runs:
            steps = store.children(r.id)
            state = r.state if r.live else f"{r.state}:{r.close_reason}"
            created = r.created_at.strftime("%Y-%m-%d %H:%M:%S")
            print(
                f"{r.id}  {created}  {state:<22}  {r.agent_id:<12}  "
                f"{len(steps)} step session(s)  {r.thread.key}"
            )
        return 0

    return _with_sessions(settings, use)


def cmd_runs_show(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        run = _session_or_complain(store, args.id)
        if run is None:
            return EXIT_FAILURE
        steps = store.children(run.id)
        gates, changes = _gate_rows(services, run.id)
        if args.json:
            shown = {
                **run.summary(),
                "steps": [s.summary() for s in steps],
                "gates": [g.__dict__ for g in gates],
                "change_sets": [c.__dict__ for c in changes],
            }
            print(json.dumps(shown, indent=2, default=str))
            return 0
        state = run.state if run.live else f"{run.state} ({run.close_reason})"
        print(f"run {run.id} of {run.agent_id} in {run.thread.key}: {state}")
        print(f"task: {run.task}")
        for number, step in enumerate(steps, 1):
            output = (step.output or "").replace("\n", " ")[:70]
            print(f"  {number}. {step.id} {step.agent_id:<12} {step.state:<7} {output}")
        _print_gates(services, run.id)
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_transcript(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        events = store.transcript(found.id)
        if args.format == "jsonl":
            for e in events:
                print(
                    json.dumps({"id": e.id, "at": e.at.isoformat(), "kind": e.kind, "data": e.data})
                )
            return 0
        print(f"# Session {found.id} · {found.agent_id} · {found.thread.key}\n")
        for e in events:
            at = e.at.strftime("%H:%M:%S.%f")[:-3]
            lines = describe(e.kind, e.data)
            if lines is not None:  # a command, a diff or a CLI agent's event: as text
                print(f"- `{at}` **{e.kind}** {lines[0]}")
                if lines[1:]:
                    print("\n  ```\n" + "\n".join(f"  {line}" for line in lines[1:]) + "\n  ```")
                continue
            detail = ", ".join(f"{k}={json.dumps(v)}" for k, v in e.data.items())
            print(f"- `{at}` **{e.kind}** {detail}")
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_send(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        if store.add_input(found.id, kind="operator", author="operator", body=args.text) is None:
            print(f"session {found.id} is {found.state}: it takes no input", file=sys.stderr)
            return EXIT_FAILURE
        print(f"queued for session {found.id}; its next turn will read it")
        return 0

    return _with_sessions(settings, use)


def _closed_status(services: Services, closed: SessionInfo, public_url: str | None) -> None:
    from bot import outbox as ob
    from bot.clock import utcnow
    from bot.sessions import status
    from bot.sessions.store import SessionStore

    store = SessionStore(services.engine)
    seq, fresh = store.status_snapshot(closed.id)
    cost = services.runtime.config.status.show_cost
    body = status.render(fresh, utcnow(), public_url=public_url, cost=cost)
    services.outbox.enqueue(
        ob.upsert(status.status_key(closed.id), seq, closed.thread, body, closed.installation_id)
    )


def cmd_sessions_close(args: argparse.Namespace, settings: Settings) -> int:
    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        closed = store.close(found.id, "operator", by="operator")
        if closed is None:
            print(f"session {found.id} is already {found.state}", file=sys.stderr)
            return EXIT_FAILURE
        _closed_status(services, closed, settings.public_url)
        print(f"session {found.id} closed")
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_restart(args: argparse.Namespace, settings: Settings) -> int:
    from bot.sessions.store import RestartRefused
    from bot.web.actions import OperatorActions

    def use(store: SessionStore, services: Services) -> int:
        cost = services.runtime.config.status.show_cost
        actions = OperatorActions(services.engine, settings.public_url, show_cost=cost)
        try:
            restarted = actions.restart(args.id, "operator")
        except RestartRefused as exc:
            print(f"threadline: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(
            f"session {restarted.id} restarted from turn {restarted.turns}; a worker runs it next"
        )
        return 0

    return _with_sessions(settings, use)


def cmd_sessions_purge(args: argparse.Namespace, settings: Settings) -> int:
    if not args.yes:
        print(
            "purge deletes the session's transcript for good; add --yes to do it", file=sys.stderr
        )
        return EXIT_FAILURE

    def use(store: SessionStore, services: Services) -> int:
        found = _session_or_complain(store, args.id)
        if found is None:
            return EXIT_FAILURE
        store.purge(found.id)
        purged = store.get(found.id)
        if found.live and purged is not None:
            _closed_status(services, purged, settings.public_url)
        print(f"session {found.id} purged: transcript and inputs deleted")
        return 0

    return _with_sessions(settings, use)
