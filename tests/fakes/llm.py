"""Stateful fake LLM APIs served by aiohttp on 127.0.0.1: OpenAI Chat Completions and
Anthropic Messages, both streamed as their documentation describes.

`FakeOpenAI` answers `POST /v1/chat/completions` with Server-Sent Events: `data: {chunk}`
lines, text in `choices[0].delta.content`, tool calls in `delta.tool_calls` split over
several chunks (id and name first, arguments in pieces), `finish_reason` on the last
choice chunk, a usage chunk with no choices when `stream_options.include_usage` is set,
and `data: [DONE]`
(https://platform.openai.com/docs/api-reference/chat-streaming).

`FakeAnthropic` answers `POST /v1/messages` with `event: <type>` / `data: {...}` pairs:
message_start, content_block_start / content_block_delta (text_delta, input_json_delta)
/ content_block_stop per block, message_delta (stop_reason, output usage), message_stop
(https://docs.anthropic.com/en/api/messages-streaming).

Both fakes are strict about size and caching, as the real APIs are. Tokens are counted
as a quarter of the characters of the request's compact JSON. With `context_window`
set, a request past it gets the API's context-length 400. Anthropic caches only up to a
`cache_control` breakpoint (at most 4 of them, only on tools, system blocks and content
blocks, never on an empty text block), only a prefix of at least the model's minimum
cacheable length (1024 tokens; 2048 for Haiku models), and reads a cached prefix only
when it is byte-identical (cache_control itself aside) and ends at most 20 blocks before
a breakpoint of the request. OpenAI caches on its own: a prefix of whole messages seen
before, from 1024 tokens on, in steps of 128. With `measure_tokens` the usage the fakes
report is these counts (with cache reads and writes); otherwise the scripted numbers.
`LLMRequest.usage` keeps what was counted either way.

Each fake checks the API key (401 when wrong), checks the body as a strict server would
(400 in the API's own error shape: tool results that answer no call, tool choice without
tools, ...), records every request with its start and end times, and answers from a
queue of scripted answers, then from an optional `responder` callable:

    async with FakeOpenAI() as fake:
        fake.enqueue(
            Failure(429, retry_after=0.05),
            Reply(text=["Hel", "lo"]),
            Reply(calls=[Call("reply", {"body": "hi"})], delay=0.2),
            Reply(text=["cut "], cut_after=2),  # two events, then the connection drops
        )
        fake.responder = lambda req: Reply(text=[f"you said {req.last_user_text}"])
        provider = build_provider(fake.provider_config())
        ...
        fake.requests[0].json["tools"], fake.requests[0].started, fake.peak_concurrency
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import inspect
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from bot.agents.providers.base import ANTHROPIC, OPENAI, Params, ProviderConfig

DEFAULT_KEY = "sk-fake-0123456789abcdef"
ANTHROPIC_VERSION_HEADER = "anthropic-version"

# ---------------------------------------------------------------- scripts


@dataclass(frozen=True)
class Call:
    """A tool call the model makes. `arguments` as a string is sent verbatim (bad JSON)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None  # made up when None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """A streamed answer: text pieces (each its own delta, in order), then tool calls.

    `delay` waits before the answer starts, `gap` between events. `cut_after=n` sends
    the first n events and then cuts the stream: "drop" closes the connection in the
    middle of the body, "end" ends the body cleanly without the closing event, "error"
    sends the API's in-stream error event (overloaded) and ends the body.
    """

    text: Sequence[str] = ()
    calls: Sequence[Call] = ()
    input_tokens: int = 11
    output_tokens: int = 7
    stop_reason: str | None = None  # None: the API's word for "done" or "tool calls"
    model: str | None = None  # None: the model the request named
    delay: float = 0.0
    gap: float = 0.0
    cut_after: int | None = None
    cut: Literal["drop", "end", "error"] = "drop"


@dataclass(frozen=True)
class Failure:
    """An HTTP error instead of an answer (429, 500, 529, ...), in the API's error shape."""

    status: int
    retry_after: float | None = None  # seconds, sent as the `retry-after` header
    message: str | None = None
    delay: float = 0.0


Answer = Reply | Failure


@dataclass
class LLMRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    json: Any
    started: float  # time.monotonic() when it arrived
    ended: float | None = None  # when the fake finished answering
    status: int = 0
    answer: Answer | None = None  # what the fake served (None: an error of its own)
    usage: Counted | None = None  # the fake's own count of the request (when valid)
    # The client closed the connection before the streamed answer ended (a cancelled
    # turn aborting its model call); seen at the next write or when the handler ends.
    disconnected: bool = False

    @property
    def model(self) -> str:
        return str(self.body.get("model") or "")

    @property
    def body(self) -> dict[str, Any]:
        return self.json if isinstance(self.json, dict) else {}

    @property
    def messages(self) -> list[dict[str, Any]]:
        value = self.body.get("messages")
        return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []

    @property
    def system(self) -> str:
        """The system prompt: Anthropic's `system`, or OpenAI's system/developer messages."""
        system = self.body.get("system")
        if system is not None:
            return _block_text(system)
        return "\n".join(
            _block_text(m.get("content"))
            for m in self.messages
            if m.get("role") in ("system", "developer")
        )

    @property
    def tool_names(self) -> list[str]:
        names = []
        for tool in self.body.get("tools") or []:
            function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            names.append(str(function.get("name")))
        return names

    @property
    def last_user_text(self) -> str:
        """The text of the last user message that has any (tool results do not count)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                text = _block_text(message.get("content"))
                if text:
                    return text
        return ""

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The results the request ends with, as {"id", "content", "is_error"}: OpenAI's
        trailing `tool` messages, or the `tool_result` blocks of Anthropic's last turn."""
        found: list[dict[str, Any]] = []
        messages = self.messages
        if messages and messages[-1].get("role") == "user":
            content = messages[-1].get("content")
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    found.append(
                        {
                            "id": block.get("tool_use_id"),
                            "content": block.get("content"),
                            "is_error": bool(block.get("is_error")),
                        }
                    )
            return found
        for message in reversed(messages):
            if message.get("role") != "tool":
                break
            found.insert(
                0,
                {
                    "id": message.get("tool_call_id"),
                    "content": message.get("content"),
                    "is_error": False,
                },
            )
        return found


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text") or "")
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return ""


Responder = Callable[[LLMRequest], Answer | Awaitable[Answer]]


def split3(text: str) -> list[str]:
    """`text` in up to three pieces, the way servers send long fields in several deltas."""
    if len(text) < 3:
        return [text]
    third = len(text) // 3
    return [text[:third], text[third : 2 * third], text[2 * third :]]


class BadRequest(Exception):
    """What a strict server would refuse with 400."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


CHARS_PER_TOKEN = 4
CACHE_LOOKBACK = 20  # blocks before a breakpoint the API looks back for a cached prefix
MAX_BREAKPOINTS = 4
OPENAI_CACHE_MIN = 1024
OPENAI_CACHE_STEP = 128


@dataclass(frozen=True)
class Counted:
    """A request as the fake counted it: every input token, and the cached ones."""

    input_tokens: int
    cache_read: int = 0
    cache_write: int = 0

    @property
    def uncached(self) -> int:
        return self.input_tokens - self.cache_read - self.cache_write


def tokens_of(value: Any) -> int:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return -(-len(text) // CHARS_PER_TOKEN)


class PrefixChain:
    """Hashes and token counts of every prefix of a sequence of items."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.hashes: list[str] = []
        self.tokens: list[int] = []
        digest = hashlib.sha256()
        total = 0
        for item in items:
            digest.update(json.dumps(item, sort_keys=True).encode())
            digest.update(b"\x00")
            total += tokens_of(item)
            self.hashes.append(digest.copy().hexdigest())
            self.tokens.append(total)

    @property
    def total(self) -> int:
        return self.tokens[-1] if self.tokens else 0


# ---------------------------------------------------------------- the common server


class FakeLLM:
    """What both fakes share: lifecycle, recording, the answer queue, streaming."""

    kind: str
    path: str

    def __init__(self, *, api_key: str = DEFAULT_KEY) -> None:
        self.api_key = api_key
        self.requests: list[LLMRequest] = []
        self.answers: collections.deque[Answer] = collections.deque()
        self.responder: Responder | None = None
        self.responder_errors: list[BaseException] = []
        self.in_flight = 0
        self.peak_concurrency = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.context_window: int | None = None  # tokens; None: no limit
        self.measure_tokens = False  # report counted usage instead of the scripted one
        self.cache: dict[str, int] = {}  # prefix hash -> its tokens
        self.caching = True  # False: a server without a prompt cache (for baselines)

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the SDK takes as `base_url`."""
        raise NotImplementedError

    def provider_config(
        self,
        *,
        id: str | None = None,
        api_key: str | None = None,
        max_retries: int = 2,
        timeout_seconds: float = 10.0,
        defaults: Params | None = None,
        compat: str | None = None,
        context_window: int | None = None,
        caching: bool = True,
    ) -> ProviderConfig:
        """A `ProviderConfig` pointing at this fake (its key unless told otherwise)."""
        return ProviderConfig(
            id=id or f"fake-{self.kind}",
            kind=self.kind,
            api_key=self.api_key if api_key is None else api_key,
            base_url=self.base_url,
            timeout_seconds=timeout_seconds,
            max_retries=max_retries,
            defaults=defaults or Params(),
            compat=compat,
            context_window=context_window,
            caching=caching,
        )

    # ------------------------------------------------------------ scripting

    def enqueue(self, *answers: Answer) -> None:
        """Answers for the next requests, in order; after them the `responder` decides."""
        self.answers.extend(answers)

    @property
    def bodies(self) -> list[Any]:
        return [r.json for r in self.requests]

    # ------------------------------------------------------------ dispatch

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = LLMRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
            started=time.monotonic(),
        )
        self.requests.append(record)
        self.in_flight += 1
        self.peak_concurrency = max(self.peak_concurrency, self.in_flight)
        try:
            response = await self._answer(request, record)
            record.status = response.status
            return response
        finally:
            self.in_flight -= 1
            record.ended = time.monotonic()

    async def _answer(self, request: web.Request, record: LLMRequest) -> web.StreamResponse:
        if (request.method, request.path) != ("POST", self.path):
            return self._error(404, "not_found_error", f"no route {request.method} {request.path}")
        key = self._key_of(record.headers)
        if key != self.api_key:
            # Deliberately hostile: some servers echo the key they got; callers must not.
            return self._error(401, "authentication_error", f"Incorrect API key provided: {key}")
        try:
            if not isinstance(record.json, dict):
                raise BadRequest("the body must be a JSON object")
            self._validate(record)
            record.usage = self._count(record)
        except BadRequest as exc:
            return self._error(400, exc.code or "invalid_request_error", str(exc))
        answer = await self._next_answer(record)
        if answer is None:
            return self._error(
                400,
                "invalid_request_error",
                f"fake {self.kind}: nothing scripted for request #{len(self.requests)}",
            )
        record.answer = answer
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if isinstance(answer, Failure):
            return self._failure(answer)
        return await self._stream(request, record, answer)

    async def _next_answer(self, record: LLMRequest) -> Answer | None:
        if self.answers:
            return self.answers.popleft()
        if self.responder is None:
            return None
        try:
            answer = self.responder(record)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:  # the test's own bug: keep it for the test to see
            self.responder_errors.append(exc)
            return None
        return answer

    def _failure(self, failure: Failure) -> web.Response:
        kinds = {429: "rate_limit_error", 529: "overloaded_error", 401: "authentication_error"}
        kind = kinds.get(failure.status, "api_error" if failure.status >= 500 else "error")
        response = self._error(
            failure.status, kind, failure.message or f"fault injected: HTTP {failure.status}"
        )
        if failure.retry_after is not None:
            response.headers["retry-after"] = f"{failure.retry_after:g}"
        return response

    async def _stream(
        self, request: web.Request, record: LLMRequest, reply: Reply
    ) -> web.StreamResponse:
        events = self._events(record, reply)
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._extra_headers(),
            },
        )
        await response.prepare(request)
        try:
            for number, event in enumerate(events):
                if reply.cut_after is not None and number >= reply.cut_after:
                    if reply.cut == "drop" and request.transport is not None:
                        request.transport.close()  # mid-body: the chunked encoding never ends
                        return response
                    if reply.cut == "error":
                        await response.write(self._stream_error())
                    break
                if reply.gap and number:
                    await asyncio.sleep(reply.gap)
                if request.transport is None or request.transport.is_closing():
                    record.disconnected = True  # the client hung up mid-stream
                    return response
                await response.write(event)
            await response.write_eof()
        except ConnectionError:  # aiohttp's ClientConnectionResetError among them
            record.disconnected = True
        except asyncio.CancelledError:  # a server that cancels handlers on hang-up
            record.disconnected = True
            raise
        return response

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{secrets.token_hex(6)}"

    # ------------------------------------------------------------ per API

    def _key_of(self, headers: Mapping[str, str]) -> str:
        raise NotImplementedError

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        raise NotImplementedError

    def _extra_headers(self) -> dict[str, str]:
        return {}

    def _validate(self, record: LLMRequest) -> None:
        raise NotImplementedError

    def _events(self, record: LLMRequest, reply: Reply) -> list[bytes]:
        raise NotImplementedError

    def _stream_error(self) -> bytes:
        raise NotImplementedError

    def _count(self, record: LLMRequest) -> Counted:
        """Count the request, check it against the window, and read/write the cache."""
        raise NotImplementedError

    def _reported(self, record: LLMRequest, reply: Reply) -> Counted:
        if self.measure_tokens and record.usage is not None:
            return record.usage
        return Counted(reply.input_tokens)


def _require(condition: object, message: str) -> None:
    if not condition:
        raise BadRequest(message)


# ---------------------------------------------------------------- OpenAI


class FakeOpenAI(FakeLLM):
    """Chat Completions, streamed (the only mode the adapter uses)."""

    kind = OPENAI
    path = "/v1/chat/completions"

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _key_of(self, headers: Mapping[str, str]) -> str:
        auth = headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        # https://platform.openai.com/docs/guides/error-codes
        codes = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error" if status < 500 else "server_error",
                "param": "messages" if kind == "context_length_exceeded" else None,
                "code": codes.get(status, kind),
            }
        }
        return web.json_response(body, status=status, headers=self._extra_headers())

    def _extra_headers(self) -> dict[str, str]:
        return {"x-request-id": self._next_id("req_")}

    def _stream_error(self) -> bytes:
        error = {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
        }
        return f"data: {json.dumps({'error': error})}\n\n".encode()

    def _validate(self, record: LLMRequest) -> None:
        body = record.body
        _require(isinstance(body.get("model"), str) and body["model"], "'model' is required")
        _require(body.get("stream") is True, "this fake only streams: 'stream' must be true")
        messages: Any = body.get("messages")
        _require(isinstance(messages, list) and messages, "'messages' must be a non-empty array")
        tools = body.get("tools")
        names: set[str] = set()
        if tools is not None:
            _require(isinstance(tools, list) and tools, "'tools' must be a non-empty array")
            for tool in tools:
                function: Any = tool.get("function") if isinstance(tool, dict) else None
                _require(
                    tool.get("type") == "function" and isinstance(function, dict),
                    "each tool needs type 'function' and a 'function' object",
                )
                _require(isinstance(function.get("name"), str), "each function needs a 'name'")
                names.add(function["name"])
        choice = body.get("tool_choice")
        if choice is not None:
            _require(tools, "'tool_choice' is only allowed when 'tools' are specified")
            if isinstance(choice, dict):
                named = (choice.get("function") or {}).get("name")
                _require(named in names, f"tool_choice names an unknown tool: {named!r}")
            else:
                _require(choice in ("auto", "required", "none"), f"bad tool_choice {choice!r}")
        self._validate_messages(messages)

    def _count(self, record: LLMRequest) -> Counted:
        # https://platform.openai.com/docs/guides/prompt-caching: automatic, for a
        # prefix seen before, from 1024 tokens on, in steps of 128.
        body = record.body
        chain = PrefixChain([body.get("tools") or [], *body["messages"]])
        total = chain.total
        if self.context_window is not None and total > self.context_window:
            raise BadRequest(
                f"This model's maximum context length is {self.context_window} tokens. "
                f"However, your messages resulted in {total} tokens. Please reduce the "
                "length of the messages.",
                code="context_length_exceeded",
            )
        hit = max(
            (t for h, t in zip(chain.hashes, chain.tokens, strict=True) if h in self.cache),
            default=0,
        )
        if not self.caching:
            return Counted(total)
        cached = 0
        if hit >= OPENAI_CACHE_MIN:
            cached = (
                OPENAI_CACHE_MIN + (hit - OPENAI_CACHE_MIN) // OPENAI_CACHE_STEP * OPENAI_CACHE_STEP
            )
        for h, t in zip(chain.hashes, chain.tokens, strict=True):
            self.cache[h] = t
        return Counted(total, cache_read=cached)

    def _validate_messages(self, messages: list[Any]) -> None:
        waiting: set[str] = set()  # calls of the last assistant message not yet answered
        for number, message in enumerate(messages):
            _require(isinstance(message, dict), f"messages[{number}] must be an object")
            role = message.get("role")
            _require(
                role in ("system", "developer", "user", "assistant", "tool"),
                f"messages[{number}].role {role!r} is not valid",
            )
            if role == "tool":
                call_id = message.get("tool_call_id")
                _require(
                    call_id in waiting,
                    f"messages[{number}]: a 'tool' message must answer a preceding 'tool_calls' id (got {call_id!r})",
                )
                _require(isinstance(message.get("content"), str), "tool content must be a string")
                waiting.discard(call_id)
                continue
            _require(
                not waiting,
                f"an assistant message with 'tool_calls' must be followed by tool messages for each id; missing {sorted(waiting)}",
            )
            if role == "assistant":
                for call in message.get("tool_calls") or []:
                    function = call.get("function") or {}
                    _require(
                        call.get("type") == "function" and isinstance(call.get("id"), str),
                        f"messages[{number}].tool_calls need an id and type 'function'",
                    )
                    _require(
                        isinstance(function.get("arguments"), str),
                        "tool call arguments must be a JSON string",
                    )
                    waiting.add(call["id"])
                _require(
                    message.get("content") is not None or message.get("tool_calls"),
                    f"messages[{number}]: an assistant message needs content or tool_calls",
                )
            else:
                _require(message.get("content") is not None, f"messages[{number}] needs content")
        _require(not waiting, f"tool calls left unanswered: {sorted(waiting)}")

    def _events(self, record: LLMRequest, reply: Reply) -> list[bytes]:
        body = record.body
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base: dict[str, Any] = {
            "id": self._next_id("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": reply.model or record.model,
            "system_fingerprint": "fp_fake",
        }
        if include_usage:
            base["usage"] = None

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**base, "choices": [choice]}

        chunks = [chunk({"role": "assistant", "content": ""})]
        chunks += [chunk({"content": piece}) for piece in reply.text]
        for index, call in enumerate(reply.calls):
            head = {
                "index": index,
                "id": call.id or self._next_id("call_"),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            chunks.append(chunk({"tool_calls": [head]}))
            for piece in split3(call.arguments_json()):
                part = {"index": index, "function": {"arguments": piece}}
                chunks.append(chunk({"tool_calls": [part]}))
        stop = reply.stop_reason or ("tool_calls" if reply.calls else "stop")
        chunks.append(chunk({}, stop))
        if include_usage:
            counted = self._reported(record, reply)
            usage = {
                "prompt_tokens": counted.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": counted.input_tokens + reply.output_tokens,
                "prompt_tokens_details": {"cached_tokens": counted.cache_read},
            }
            chunks.append({**base, "choices": [], "usage": usage})
        frames = [f"data: {json.dumps(c)}\n\n".encode() for c in chunks]
        return [*frames, b"data: [DONE]\n\n"]


# ---------------------------------------------------------------- Anthropic


class FakeAnthropic(FakeLLM):
    """Messages, streamed. Takes the key as `x-api-key` or as `Authorization: Bearer`
    (the installed SDK sends the latter), and wants an `anthropic-version` header."""

    kind = ANTHROPIC
    path = "/v1/messages"

    async def __aenter__(self) -> FakeAnthropic:
        await self.start()
        return self

    @property
    def base_url(self) -> str:
        return self.url

    def _key_of(self, headers: Mapping[str, str]) -> str:
        if "x-api-key" in headers:
            return headers["x-api-key"]
        auth = headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""

    def _error(self, status: int, kind: str, message: str) -> web.Response:
        # https://docs.anthropic.com/en/api/errors
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, kind)
        request_id = self._next_id("req_")
        body = {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": request_id,
        }
        return web.json_response(body, status=status, headers={"request-id": request_id})

    def _extra_headers(self) -> dict[str, str]:
        return {"request-id": self._next_id("req_")}

    def _stream_error(self) -> bytes:
        # https://docs.anthropic.com/en/api/messages-streaming#error-events
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return f"event: error\ndata: {json.dumps(error)}\n\n".encode()

    def _validate(self, record: LLMRequest) -> None:
        body = record.body
        _require(
            record.headers.get(ANTHROPIC_VERSION_HEADER),
            f"the {ANTHROPIC_VERSION_HEADER} header is required",
        )
        _require(isinstance(body.get("model"), str) and body["model"], "model: Field required")
        max_tokens = body.get("max_tokens")
        _require(
            isinstance(max_tokens, int) and max_tokens >= 1,
            "max_tokens: Field required (a positive integer)",
        )
        _require(body.get("stream") is True, "this fake only streams: 'stream' must be true")
        system = body.get("system")
        _require(
            system is None or isinstance(system, str | list), "system: a string or text blocks"
        )
        tools = body.get("tools")
        names: set[str] = set()
        if tools is not None:
            _require(isinstance(tools, list), "tools: must be an array")
            for tool in tools:
                _require(
                    isinstance(tool.get("name"), str)
                    and isinstance(tool.get("input_schema"), dict),
                    "tools: each tool needs a name and an input_schema",
                )
                names.add(tool["name"])
        choice = body.get("tool_choice")
        if choice is not None:
            _require(tools, "tool_choice may only be specified while providing tools")
            _require(
                choice.get("type") in ("auto", "any", "tool", "none"),
                f"tool_choice.type {choice.get('type')!r} is not valid",
            )
            if choice.get("type") == "tool":
                _require(choice.get("name") in names, "tool_choice names an unknown tool")
        messages: Any = body.get("messages")
        _require(isinstance(messages, list) and messages, "messages: at least one message")
        uses_tools = self._validate_messages(messages)
        _require(
            not uses_tools or tools,
            "Requests which include `tool_use` or `tool_result` blocks must define tools.",
        )

    def min_cacheable(self, model: str) -> int:
        """The shortest prefix the API caches (Haiku models need more)."""
        return 2048 if "haiku" in model else 1024

    def _count(self, record: LLMRequest) -> Counted:
        # https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
        body = record.body
        items: list[Any] = []
        marks: list[int] = []  # indices of items that carry cache_control

        def add(where: str, item: Any, allowed: bool = True) -> None:
            if isinstance(item, dict) and "cache_control" in item:
                _require(allowed, f"{where}: cache_control is not permitted here")
                control = item["cache_control"]
                _require(
                    isinstance(control, dict)
                    and control.get("type") == "ephemeral"
                    and set(control) <= {"type", "ttl"},
                    f"{where}.cache_control: expected {{'type': 'ephemeral'}}",
                )
                _require(
                    item.get("type") != "text" or item.get("text"),
                    f"{where}: cache_control cannot be set for empty text blocks",
                )
                marks.append(len(items))
                item = {k: v for k, v in item.items() if k != "cache_control"}
            items.append(item)

        for number, tool in enumerate(body.get("tools") or []):
            add(f"tools.{number}", tool)
        system = body.get("system")
        if isinstance(system, str):
            add("system", {"type": "text", "text": system})
        for number, block in enumerate(system if isinstance(system, list) else []):
            add(f"system.{number}", block)
        for number, message in enumerate(body["messages"]):
            _require(
                "cache_control" not in message,
                f"messages.{number}.cache_control: Extra inputs are not permitted",
            )
            content = message["content"]
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            for index, block in enumerate(blocks):
                add(f"messages.{number}.content.{index}", {"role": message["role"], **block})
        _require(
            len(marks) <= MAX_BREAKPOINTS,
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marks)}.",
        )
        chain = PrefixChain(items)
        total = chain.total
        if self.context_window is not None and total > self.context_window:
            raise BadRequest(f"prompt is too long: {total} tokens > {self.context_window} maximum")
        if not self.caching:
            return Counted(total)
        read = 0
        for mark in marks:
            for index in range(mark, max(-1, mark - CACHE_LOOKBACK), -1):
                if chain.hashes[index] in self.cache:
                    read = max(read, chain.tokens[index])
                    break
        written = read
        least = self.min_cacheable(record.model)
        for mark in marks:
            if chain.tokens[mark] >= least:
                self.cache.setdefault(chain.hashes[mark], chain.tokens[mark])
                written = max(written, chain.tokens[mark])
        return Counted(total, cache_read=read, cache_write=written - read)

    def _validate_messages(self, messages: list[Any]) -> bool:
        """Check roles and tool pairing; True when any tool block appears."""
        uses_tools = False
        waiting: set[str] = set()  # tool_use ids of the previous assistant message
        for number, message in enumerate(messages):
            _require(isinstance(message, dict), f"messages.{number}: must be an object")
            role = message.get("role")
            _require(role in ("user", "assistant"), f"messages.{number}.role: {role!r}")
            _require(number or role == "user", "messages: the first message must use the user role")
            content = message.get("content")
            blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
            _require(
                isinstance(blocks, list) and blocks,
                f"messages.{number}: content must be a string or a non-empty array",
            )
            answered: set[str] = set()
            results_done = False
            for block in blocks:
                kind = block.get("type")
                if kind == "text":
                    _require(
                        block.get("text"),
                        f"messages.{number}: text content blocks must be non-empty",
                    )
                    results_done = True
                elif kind == "tool_result":
                    uses_tools = True
                    _require(role == "user", "tool_result blocks belong in user messages")
                    _require(
                        not results_done,
                        f"messages.{number}: tool_result blocks must come before any other content",
                    )
                    tool_use_id: Any = block.get("tool_use_id")
                    _require(
                        tool_use_id in waiting,
                        f"messages.{number}: unexpected `tool_use_id` found in `tool_result` blocks: {tool_use_id}",
                    )
                    _require(
                        isinstance(block.get("is_error", False), bool), "is_error must be a boolean"
                    )
                    answered.add(tool_use_id)
                elif kind == "tool_use":
                    uses_tools = True
                    _require(role == "assistant", "tool_use blocks belong in assistant messages")
                    _require(
                        isinstance(block.get("id"), str) and isinstance(block.get("input"), dict),
                        f"messages.{number}: tool_use needs an id and an input object",
                    )
                else:
                    raise BadRequest(f"messages.{number}: unknown block type {kind!r}")
            if waiting:
                _require(
                    answered == waiting,
                    f"messages.{number}: `tool_use` ids were found without `tool_result` blocks immediately after: {sorted(waiting - answered)}",
                )
            _require(
                not number or messages[number - 1].get("role") != role,
                f"messages.{number}: roles must alternate between user and assistant",
            )
            waiting = (
                {b["id"] for b in blocks if b.get("type") == "tool_use"}
                if role == "assistant"
                else set()
            )
        _require(not waiting, f"`tool_use` ids without `tool_result` blocks: {sorted(waiting)}")
        return uses_tools

    def _events(self, record: LLMRequest, reply: Reply) -> list[bytes]:
        def event(kind: str, data: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        counted = self._reported(record, reply)
        usage_start = {
            "input_tokens": counted.uncached,
            "output_tokens": 1,
            "cache_creation_input_tokens": counted.cache_write,
            "cache_read_input_tokens": counted.cache_read,
        }
        message: dict[str, Any] = {
            "id": self._next_id("msg_"),
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": reply.model or record.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_start,
        }
        events = [event("message_start", {"message": message}), event("ping", {})]
        index = 0
        if reply.text:
            events.append(
                event(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
            )
            for piece in reply.text:
                delta = {"type": "text_delta", "text": piece}
                events.append(event("content_block_delta", {"index": index, "delta": delta}))
            events.append(event("content_block_stop", {"index": index}))
            index += 1
        for call in reply.calls:
            block = {
                "type": "tool_use",
                "id": call.id or self._next_id("toolu_"),
                "name": call.name,
                "input": {},
            }
            events.append(event("content_block_start", {"index": index, "content_block": block}))
            for piece in split3(call.arguments_json()):
                delta = {"type": "input_json_delta", "partial_json": piece}
                events.append(event("content_block_delta", {"index": index, "delta": delta}))
            events.append(event("content_block_stop", {"index": index}))
            index += 1
        stop = reply.stop_reason or ("tool_use" if reply.calls else "end_turn")
        events.append(
            event(
                "message_delta",
                {
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            )
        )
        events.append(event("message_stop", {}))
        return events


def overlapping(requests: Iterable[LLMRequest]) -> bool:
    """Whether any two of these requests were being answered at the same time."""
    spans = sorted((r.started, r.ended or time.monotonic()) for r in requests)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
