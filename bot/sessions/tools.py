"""The tools one turn of one session may call, carried out and recorded as they are used.

Every call is recorded before it runs (`tool_call`, only while this runner still owns the
turn: a closed or taken-over session stops here) and after (`tool_result`); `reply`, whose
whole work is one queued comment, records both with the comment in one transaction. A tool
the agent may not use answers ok=False and is recorded like any other. Results are text for the model;
nothing here raises for a bad argument, it answers with the reason. Host writes go through
the outbox under keys made of the turn and the call's number: a taken-over turn (after a
crash) does not write twice."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from bot import metrics
from bot import outbox as ob
from bot.agents import base as b
from bot.agents.base import AgentSpec, BudgetExceeded, ToolResult, tool_json
from bot.agents.models import usd
from bot.diffs import PatchError, apply_diff, diff_paths, file_patch, file_stat
from bot.hosts.base import DiffComment, HostClient, HostError
from bot.paths import path_problem, repo_path
from bot.sessions.approvals import FileContent
from bot.sessions.changes import read_or_none
from bot.sessions.directory_tools import DirectoryTools
from bot.sessions.mcp_tools import McpToolbox
from bot.sessions.memory import MemoryStore
from bot.sessions.ports import ToolService
from bot.sessions.proposals import from_workspace
from bot.sessions.protected import refusal, refused
from bot.sessions.search import SessionAccessError, SessionDirectory
from bot.sessions.store import CONVERSATION, SessionInfo
from bot.workspaces.tools import WorkspaceTools

MAX_FILE_BYTES = 100_000
MAX_DIFF_BYTES = 200_000
MAX_CHANGE_FILES = 100
MAX_CHANGE_BYTES = 1_000_000
DELTA_FLUSH_SECONDS = 0.1  # streamed text is recorded at most this often...
DELTA_FLUSH_CHARS = 400  # ...or when this much has gathered
CUT = "\n[... cut at {size} bytes of {total}]"
NO_WORKSPACE = "{tool}: this session has no workspace (agent {agent}'s `workspace` is none)"

# delegate(parent, tools, agent_id, task, runtime params, call id, ticket) -> result
Delegate = Callable[
    [SessionInfo, "SessionTools", str, str, Mapping[str, Any], str, int], Awaitable[ToolResult]
]
SpawnCall = Callable[..., Awaitable[ToolResult]]  # bot.sessions.turns.SpawnHooks.call
HostFor = Callable[[SessionInfo], HostClient]


def reply_write(session: SessionInfo, key: str, body: str) -> ob.Write:
    """The comment of a session's reply `key` in its thread (the outbox key carries the
    session: a reply retried after a crash is not posted twice)."""
    return ob.comment(f"{session.id}.{key}", session.thread, body, session.installation_id)


class TurnAbandoned(Exception):
    """The session was closed (or taken over) while its turn ran: stop, write nothing more."""


def _path_arg(args: Mapping[str, Any], tool: str) -> str:
    """The call's `path`, checked before any I/O (UnsafePath, a ValueError, says why not)."""
    raw = args.get("path")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValueError(f"{tool} needs a path")
    return str(repo_path(raw.strip() if isinstance(raw, str) else raw))


def _cut(data: bytes, most: int) -> str:
    text = data[:most].decode("utf-8", errors="replace")
    return text + (CUT.format(size=most, total=len(data)) if len(data) > most else "")


class SessionTools:
    """The `Tools` of one turn of one session."""

    def __init__(
        self,
        service: ToolService,
        session: SessionInfo,
        turn: int,
        agent: AgentSpec,
        owner: str,
        *,
        host_for: HostFor | None = None,
        directory: SessionDirectory | None = None,
        memory: MemoryStore | None = None,
        delegate: Delegate | None = None,
        workspace: WorkspaceTools | None = None,
        external: McpToolbox | None = None,
        spawn: SpawnCall | None = None,
    ) -> None:
        self.service = service
        self.session = session
        self.turn = turn
        self.agent = agent
        self.owner = owner
        self._host_for = host_for
        self._memory = memory
        self._delegate = delegate
        self._workspace = workspace
        self._external = external
        self._spawn = spawn
        self._completed = False
        self._calls = 0
        self._tickets = 0  # delegations asked for in this turn, in the order they were made
        self._pending = ""
        self._flushed = time.monotonic()
        sessions = DirectoryTools(service, session, agent, directory)
        self._handlers: Mapping[str, Callable[[Mapping[str, Any], str], Awaitable[ToolResult]]] = {
            b.UPDATE_STATUS: self._update_status,
            b.TASK_COMPLETED: self._task_completed,
            b.POST_REVIEW_THREAD: self._post_review_thread,
            b.READ_FILE: self._read_file,
            b.GET_DIFF: self._get_diff,
            b.MEMORY_WRITE: self._memory_write,
            b.MEMORY_READ: self._memory_read,
            b.PROPOSE_CHANGE: self._propose_change,
            b.REQUEST_APPROVAL: self._request_approval,
            b.SESSIONS_LIST: sessions.list,
            b.SESSIONS_HISTORY: sessions.history,
            b.SESSIONS_SEARCH: sessions.search,
            b.SESSIONS_SEND: sessions.send,
        }

    @property
    def completed(self) -> bool:
        return self._completed

    @property
    def workspace(self) -> WorkspaceTools | None:
        """The session's worktree tools (the `command` engine runs its CLI there)."""
        return self._workspace

    async def note(self, kind: str, data: Mapping[str, Any]) -> None:
        """Record an engine's own event (a compaction, a CLI agent's tool call) in the
        transcript."""
        await self.flush()
        await self.service.note(self.session, kind, {"turn": self.turn, **data})

    # ------------------------------------------------------------ recording

    async def say(self, text: str) -> None:
        await self.flush()
        await self.service.note(self.session, "message", {"turn": self.turn, "text": text})

    async def stream(self, text: str) -> None:
        """Streamed text, gathered briefly so a fast stream is not one row per token."""
        self._pending += text
        now = time.monotonic()
        if len(self._pending) >= DELTA_FLUSH_CHARS or now - self._flushed >= DELTA_FLUSH_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        self._flushed = time.monotonic()
        if not self._pending:
            return
        text, self._pending = self._pending, ""
        await self.service.note(self.session, "delta", {"turn": self.turn, "text": text})

    async def remember(self, message: Mapping[str, Any]) -> None:
        await self.flush()
        data = {"turn": self.turn, "message": dict(message)}
        await self.service.note(self.session, CONVERSATION, data)

    async def usage(
        self,
        input_tokens: int,
        output_tokens: int,
        model: str,
        *,
        cache_read: int = 0,
        cache_write: int = 0,
        cost_micros: int = 0,
    ) -> None:
        # The `llm` engine's options name the provider (LLMOptions.provider.id).
        llm = self.agent.options.get("llm")
        provider = str(getattr(getattr(llm, "provider", None), "id", self.agent.engine))
        metrics.count_llm(
            provider,
            model,
            input_tokens,
            output_tokens,
            cache_read=cache_read,
            cache_write=cache_write,
            cost_micros=cost_micros,
        )
        store = self.service.store
        total_in, total_out, cost = await self.service.calls(
            functools.partial(
                store.add_usage,
                self.session.id,
                input_tokens,
                output_tokens,
                cache_read=cache_read,
                cache_write=cache_write,
                cost_micros=cost_micros,
            )
        )
        data = {
            "turn": self.turn,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_tokens": cache_read,
            "cache_write_tokens": cache_write,
            "cost_micros": cost_micros,
            "session_input_tokens": total_in,
            "session_output_tokens": total_out,
            "session_cost_micros": cost,
        }
        await self.service.note(self.session, "usage", data)
        most = self.agent.budget.tokens
        if most is not None and total_in + total_out >= most:
            raise BudgetExceeded(f"token budget of {most} spent ({total_in + total_out} used)")
        dearest = self.agent.budget.cost_micros
        if dearest is not None and cost >= dearest:
            raise BudgetExceeded(f"cost budget of US$ {usd(dearest)} spent (US$ {usd(cost)})")
        self.service.check_budget(self.session, self.agent)

    # -------------------------------------------------------------- calling

    async def call(
        self, name: str, args: Mapping[str, Any], *, call_id: str | None = None
    ) -> ToolResult:
        # Numbered before the first await: calls started together keep the model's order,
        # and so do their places under the delegation limit.
        self._calls += 1
        number = self._calls
        ticket = 0
        if name in (b.DELEGATE, b.SPAWN_AGENT):
            self._tickets += 1
            ticket = self._tickets
        await self.flush()
        store = self.service.store
        call = {"turn": self.turn, "tool": name, "args": dict(args), "call": number}
        if call_id:
            call["call_id"] = call_id
        if name == b.REPLY and name in self.agent.tools and self._outside(name) is None:
            return await self._reply(args, call, number)
        if not await self.service.calls(
            store.record_if_turn_owned, self.session.id, self.owner, "tool_call", call
        ):
            raise TurnAbandoned(self.session.id)
        cid = call_id or str(number)
        if name == b.DELEGATE and name in self.agent.tools:
            result = await self._delegate_call(args, cid, ticket)
        elif name in b.SPAWN_TOOLS and name in self.agent.tools and self._spawn is not None:
            result = await self._spawn(self.session, self, name, args, cid, ticket)
        else:
            result = await self._run(name, args, f"t{self.turn}.c{number}")
        await self.service.note(self.session, "tool_result", self._result(name, result, number))
        return result

    def _result(self, name: str, result: ToolResult, number: int) -> dict[str, Any]:
        """The `tool_result` event of call `number`."""
        ok, content = result.ok, result.content
        return {"turn": self.turn, "tool": name, "ok": ok, "content": content, "call": number}

    def _outside(self, name: str) -> McpToolbox | None:
        """The agent's own MCP servers, if they answer `name`."""
        external = self._external
        return external if external is not None and external.handles(name) else None

    async def _reply(
        self, args: Mapping[str, Any], call: dict[str, Any], number: int
    ) -> ToolResult:
        """`reply`, whose whole work is one queued comment: the call, the comment and the
        result commit in one transaction (`write_in_turn`), or not at all when the turn was
        taken away."""
        body = str(args.get("body") or "").strip()
        write = reply_write(self.session, f"t{self.turn}.c{number}", body) if body else None
        result = ToolResult(True, "reply queued")
        if write is None:
            result = ToolResult(False, "reply needs a non-empty body")
        data = self._result(b.REPLY, result, number)
        if not await self.service.write_in_turn(self.session, self.owner, call, write, data):
            raise TurnAbandoned(self.session.id)
        return result

    async def _run(self, name: str, args: Mapping[str, Any], key: str) -> ToolResult:
        if (external := self._outside(name)) is not None:
            return await external.call(name, dict(args))  # the agent's, filtered
        if name not in self.agent.tools:
            return ToolResult(False, f"tool {name!r} is not allowed for agent {self.agent.id}")
        if name in b.WORKSPACE_TOOLS or (name == b.READ_FILE and self._workspace is not None):
            if self._workspace is None:
                return ToolResult(False, NO_WORKSPACE.format(tool=name, agent=self.agent.id))
            return await self._workspace.call(name, args)
        handler = self._handlers.get(name)
        if handler is None:
            return ToolResult(False, f"unknown tool {name!r}")
        try:
            return await handler(args, key)
        except HostError as exc:
            return ToolResult(False, f"{name} failed: the host answered: {exc}")
        except SessionAccessError as exc:
            return ToolResult(False, str(exc))
        except (ValueError, TypeError) as exc:
            return ToolResult(False, f"{name}: {exc}")

    # --------------------------------------------------------- thread tools

    async def _update_status(self, args: Mapping[str, Any], key: str) -> ToolResult:
        steps = [
            {"title": str(s.get("title", "")), "done": bool(s.get("done"))}
            for s in args.get("steps") or []
            if isinstance(s, Mapping)
        ]
        progress = {"steps": steps, "summary": str(args.get("summary") or "")}
        await self.service.calls(self.service.store.save_progress, self.session.id, progress)
        await self.service.publish_status(self.session)
        return ToolResult(True, "status updated")

    async def _task_completed(self, args: Mapping[str, Any], key: str) -> ToolResult:
        # The result goes into the status comment; `reply` is how agents talk.
        output = str(args.get("output") or "").strip()
        await self.service.calls(self.service.store.save_output, self.session.id, output)
        self._completed = True
        return ToolResult(True, "task completed")

    # ---------------------------------------------------- pull request tools

    def _host(self) -> HostClient:
        if self._host_for is None:
            raise ValueError("no host connection in this process")
        return self._host_for(self.session)

    def _pull(self) -> None:
        if self.session.thread.target == "issue":
            raise ValueError("this session is on an issue, not a pull/merge request")

    async def _post_review_thread(self, args: Mapping[str, Any], key: str) -> ToolResult:
        self._pull()
        path = _path_arg(args, "post_review_thread")
        body = str(args.get("body") or "").strip()
        line = args.get("line")
        start = args.get("start_line")
        side = str(args.get("side") or "RIGHT").upper()
        if not path or not body or not isinstance(line, int) or line < 1:
            return ToolResult(False, "post_review_thread needs path, line (1 or more) and body")
        if start is not None and (not isinstance(start, int) or not 1 <= start <= line):
            return ToolResult(False, "start_line must be a line number not after line")
        if start == line:
            start = None  # a range of one line is that line
        if side not in ("RIGHT", "LEFT"):
            return ToolResult(False, "side is RIGHT (the new file) or LEFT (the old one)")
        info = await self._host().pull_info(self.session.thread.conversation)
        comment = DiffComment(path, line, body, side, start)  # type: ignore[arg-type]
        write = ob.review(
            f"{self.session.id}.{key}",
            self.session.thread.conversation,
            info.head_sha,
            [comment],
            installation_id=self.session.installation_id,
        )
        await self.service.write(self.session, write)
        where = f"{path}:{start}-{line}" if start else f"{path}:{line}"
        return ToolResult(True, f"review thread queued on {where} at {info.head_sha[:12]}")

    async def _read_file(self, args: Mapping[str, Any], key: str) -> ToolResult:
        path = _path_arg(args, "read_file")
        ref = await self._head()  # None, for an issue: the default branch
        data = await self._host().read_file(self.session.thread.repo, path, ref)
        if b"\0" in data[:8000]:
            return ToolResult(False, f"{path} is a binary file ({len(data)} bytes)")
        return ToolResult(True, _cut(data, MAX_FILE_BYTES))

    async def _get_diff(self, args: Mapping[str, Any], key: str) -> ToolResult:
        self._pull()
        diff = await self._host().pull_diff(self.session.thread.conversation)
        return ToolResult(True, _cut(diff.encode(), MAX_DIFF_BYTES))

    # ------------------------------------------------------------ changes

    async def _texts_at(self, paths: Iterable[str], ref: str) -> dict[str, str | None]:
        """Each file's text at `ref` (None: not there), read once each."""
        texts: dict[str, str | None] = {}
        for path in paths:
            if path not in texts:
                data = await read_or_none(self._host(), self.session.thread.repo, path, ref)
                texts[path] = None if data is None else data.decode("utf-8", errors="replace")
        return texts

    async def _head(self) -> str | None:
        """The pull request's head commit; None for a session on an issue."""
        if self.session.thread.target == "issue":
            return None
        return (await self._host().pull_info(self.session.thread.conversation)).head_sha

    async def _propose_change(self, args: Mapping[str, Any], key: str) -> ToolResult:
        title = str(args.get("title") or "").strip()
        description = str(args.get("description") or "").strip()
        files, diff = args.get("files"), args.get("diff")
        if not title:
            return ToolResult(False, "propose_change needs a title")
        if not files and not diff and self._workspace is not None:
            # Without files or a diff: what the workspace changed since its base.
            return await self._propose_workspace(title, description)
        if bool(files) == bool(diff):
            return ToolResult(False, "propose_change needs either files or a diff (not both)")
        # Every path is checked before the host is asked anything.
        given: dict[str, str | None] = {}
        if files:
            if not isinstance(files, list) or len(files) > MAX_CHANGE_FILES:
                return ToolResult(False, f"files: a list of at most {MAX_CHANGE_FILES} files")
            for item in files:
                if not isinstance(item, Mapping):
                    return ToolResult(False, "each file needs a relative path and a text content")
                content = item.get("content")
                if not (content is None or isinstance(content, str)):
                    return ToolResult(False, "each file needs a relative path and a text content")
                given[_path_arg(item, "each file")] = content
            named = list(given)
        else:
            named = diff_paths(str(diff))
            for path in named:
                wrong = path_problem(path)
                if wrong is not None:
                    return ToolResult(False, f"the diff names {path!r}: {wrong}")
        barred = refused(named, self.agent.allow_protected)
        if barred:
            return ToolResult(False, refusal(self.agent.id, barred))
        branch, base_sha = await self._host().default_branch(self.session.thread.repo)
        before: dict[str, str | None] = {}
        if files:
            new = given
        else:
            before = await self._texts_at(named, base_sha)
            try:
                new = apply_diff(str(diff), before)
            except PatchError as exc:
                return ToolResult(False, f"the diff does not apply to {branch}: {exc}")
            if set(new) - set(named):  # never expected: the diff's own names were checked
                return ToolResult(False, "the diff changes a file its headers do not name")
        size = sum(len(content or "") for content in new.values())
        if size > MAX_CHANGE_BYTES:
            return ToolResult(False, f"the change is {size} bytes; at most {MAX_CHANGE_BYTES}")
        before = {**before, **await self._texts_at(set(new) - set(before), base_sha)}
        shown = "".join(file_patch(path, before[path], new[path]) for path in sorted(new))
        if not shown:
            return ToolResult(False, f"the change leaves every file as it is on {branch}")
        made = [
            FileContent(path, content, file_stat(path, before[path], content))
            for path, content in sorted(new.items())
        ]
        return await self._record(title, description, made, branch, base_sha, shown)

    async def _propose_workspace(self, title: str, description: str) -> ToolResult:
        """The worktree's changes (bytes and modes) as the change set."""
        assert self._workspace is not None
        changed = await self._workspace.changed_files()
        if not changed:
            return ToolResult(False, "the workspace has no changes to propose")
        if len(changed) > MAX_CHANGE_FILES:
            return ToolResult(False, f"the workspace changed over {MAX_CHANGE_FILES} files")
        barred = refused([c.path for c in changed], self.agent.allow_protected)
        if barred:
            return ToolResult(False, refusal(self.agent.id, barred))
        size = sum(len(c.data or b"") for c in changed)
        if size > MAX_CHANGE_BYTES:
            return ToolResult(False, f"the change is {size} bytes; at most {MAX_CHANGE_BYTES}")
        repo = self.session.thread.repo
        branch, base_sha = await self._host().default_branch(repo)

        async def before(path: str) -> bytes | None:
            return await read_or_none(self._host(), repo, path, base_sha)

        made, shown = await from_workspace(changed, before)
        if not made:
            return ToolResult(False, f"the change leaves every file as it is on {branch}")
        return await self._record(title, description, made, branch, base_sha, shown)

    async def _record(
        self,
        title: str,
        description: str,
        made: list[FileContent],
        branch: str,
        base_sha: str,
        shown: str,
    ) -> ToolResult:
        pinned = await self._head()
        change, gate = await asyncio.to_thread(
            self.service.approvals.propose,
            self.session.id,
            title=title,
            description=description,
            files=made,
            base_branch=branch,
            base_sha=base_sha,
            pinned_sha=pinned,
            diff=shown,
        )
        return ToolResult(
            True,
            f"change set #{change.id} proposed against {branch} at {base_sha[:12]}; after this "
            f"turn the session waits for a maintainer's decision (gate #{gate.id})",
        )

    async def _request_approval(self, args: Mapping[str, Any], key: str) -> ToolResult:
        subject = str(args.get("subject") or "").strip()
        if not subject:
            return ToolResult(False, "request_approval needs a subject: what is to be approved")
        pinned = None if self._host_for is None else await self._head()
        gate = await self.service.calls(
            self.service.approvals.open_gate, self.session.id, subject, pinned
        )
        return ToolResult(
            True, f"gate #{gate.id} opened: the session waits for a maintainer after this turn"
        )

    # ------------------------------------------------------------ memory

    def _memory_store(self) -> MemoryStore:
        if self._memory is None:
            raise ValueError("memory is not available in this process")
        return self._memory

    async def _memory_write(self, args: Mapping[str, Any], key: str) -> ToolResult:
        name = str(args.get("key") or "").strip()
        value = args.get("value")
        if not name or not isinstance(value, str):
            return ToolResult(False, "memory_write needs a key and a text value")
        thread = self.session.thread
        await asyncio.to_thread(
            self._memory_store().write,
            thread.host,
            thread.repo,
            self.agent.id,
            name,
            value,
            self.session.id,
        )
        return ToolResult(True, f"kept note {name!r}")

    async def _memory_read(self, args: Mapping[str, Any], key: str) -> ToolResult:
        name = args.get("key")
        thread = self.session.thread
        notes = await asyncio.to_thread(
            self._memory_store().read,
            thread.host,
            thread.repo,
            self.agent.id,
            str(name) if name else None,
        )
        if name and not notes:
            return ToolResult(False, f"no note {name!r}")
        return ToolResult(True, tool_json(notes))

    # ------------------------------------------------------- delegation

    async def _delegate_call(
        self, args: Mapping[str, Any], call_id: str, ticket: int
    ) -> ToolResult:
        if self._delegate is None:
            return ToolResult(False, "delegation is not available in this process")
        agent_id = str(args.get("agent_id") or "").strip()
        task = str(args.get("task") or "").strip()
        params = args.get("runtimeParams")
        if agent_id not in self.agent.agent_ids:
            known = ", ".join(self.agent.agent_ids) or "none"
            return ToolResult(False, f"cannot delegate to {agent_id!r}; sub-agents: {known}")
        if not task:
            return ToolResult(False, "delegate_to_sub_agent needs a task with all its context")
        return await self._delegate(
            self.session,
            self,
            agent_id,
            task,
            params if isinstance(params, Mapping) else {},
            call_id,
            ticket,
        )
