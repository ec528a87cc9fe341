"""An agent's external MCP servers (`mcpServers:`), checked when the agents file is read.

    agents:
      researcher:
        engine: llm
        mcpServers:
          docs:                              # tools become mcp__docs__<tool>
            url: https://mcp.example.com/mcp # streamable HTTP
            bearerTokenEnv: DOCS_MCP_TOKEN   # sent as Authorization: Bearer ..., to this URL only
            headersEnv: {X-Team: TEAM_ID}    # more headers, each from a variable
          lint:
            command: [/usr/bin/lint-mcp, --stdio]   # a program Threadline starts (stdio)
            envFrom: {LINT_KEY: LINT_MCP_KEY}       # its environment, from our variables
            network: false                   # the sandbox's network (default off)
            readOnlyPaths: [/opt/lint]       # more of the machine it may read
            trusted: false                   # true: run it outside the sandbox
            timeoutSeconds: 30

Only the server's agents file may add servers; a repository's file may keep fewer
(`agentSettings.<agent>.mcpServers: [names]`) or drop their tools from `active_tools`.
Credentials are named environment variables, read when the file is, as providers' API
keys are: the file never holds a secret, and a variable that is not set is a problem
`threadline config check` reports. A server's tools are offered to the model as
`mcp__<server>__<tool>`; `active_tools` may name `mcp__<server>` (all its tools) or
`mcp__<server>__<tool>`; an agent without `active_tools` gets all of its servers' tools.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import urlsplit

from bot.agents import yamlcheck as y
from bot.agents.base import McpServer
from bot.agents.llm import LLM_ENGINE

PREFIX = "mcp__"
SEPARATOR = "__"
SERVER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,23}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
TOOL_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # a server's tool name that models can call
SERVER_KEYS = (
    "url",
    "bearerTokenEnv",
    "headersEnv",
    "command",
    "envFrom",
    "network",
    "readOnlyPaths",
    "trusted",
    "timeoutSeconds",
)
URL_ONLY = ("bearerTokenEnv", "headersEnv")
COMMAND_ONLY = ("envFrom", "network", "readOnlyPaths", "trusted")

EXPECTED_SERVERS = "expected a mapping of server names to servers, got {got}"
BAD_SERVER_NAME = "a server name is lower-case letters, digits, - and _ (at most 24), got {got}"
ONE_OF = "give exactly one of url (streamable HTTP) or command (a program to start)"
BAD_URL = "expected an http:// or https:// URL, got {got}"
NOT_WITH = "{key} goes with {other}, not here"
BAD_ENV = "expected the name of an environment variable (not its value)"
ENV_UNSET = "the environment variable {name} is not set"
BAD_NAME = "expected a name (letters, digits, - and _), got {got}"
BAD_PATH = "expected an absolute path, got {got}"
BAD_TIMEOUT = "expected seconds between 1 and 600, got {got}"
LLM_ONLY = "only agents with engine llm use MCP servers (this one: {engine})"
UNKNOWN_SERVER = "no MCP server {name!r} in this agent's mcpServers ({known})"


def is_mcp_tool(name: str) -> bool:
    return name.startswith(PREFIX)


def tool_name(server: str, tool: str) -> str:
    """How the model sees `tool` of `server`."""
    return f"{PREFIX}{server}{SEPARATOR}{tool}"


def server_of(name: str) -> str:
    """The server part of `mcp__<server>` or `mcp__<server>__<tool>`."""
    return name[len(PREFIX) :].split(SEPARATOR, 1)[0]


def active(name: str, tools: tuple[str, ...]) -> bool:
    """Whether the namespaced tool `name` is among an agent's `tools` (by itself or by
    its server's `mcp__<server>`)."""
    return name in tools or f"{PREFIX}{server_of(name)}" in tools


def _env(report: y.Report, raw: object, path: y.KeyPath, environ: Mapping[str, str]) -> str | None:
    if not isinstance(raw, str) or not ENV_NAME.fullmatch(raw):
        report.add(path, BAD_ENV)  # never shown: it may be the secret itself
        return None
    value = environ.get(raw, "")
    if not value:
        report.add(path, ENV_UNSET.format(name=raw))
        return None
    return value


def _env_map(
    report: y.Report, raw: object, path: y.KeyPath, environ: Mapping[str, str], key: re.Pattern[str]
) -> dict[str, str]:
    if not isinstance(raw, dict):
        report.add(path, y.NOT_A_MAPPING.format(keys="names", got=y.shown(raw)))
        return {}
    found: dict[str, str] = {}
    for name, variable in raw.items():
        if not isinstance(name, str) or not key.fullmatch(name):
            report.add((*path, str(name)), BAD_NAME.format(got=y.shown(name)))
            continue
        value = _env(report, variable, (*path, name), environ)
        if value is not None:
            found[name] = value
    return found


def _server(
    report: y.Report, name: str, raw: object, path: y.KeyPath, environ: Mapping[str, str]
) -> McpServer | None:
    before = len(report)
    found = y.mapping(report, raw, path, SERVER_KEYS)
    if ("url" in found) == ("command" in found):
        report.add(path, ONE_OF)
        return None
    others, owner = (COMMAND_ONLY, "command") if "url" in found else (URL_ONLY, "url")
    for key in others:
        if key in found:
            report.add((*path, key), NOT_WITH.format(key=key, other=owner))
    url = None
    if "url" in found:
        url = found["url"]
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            report.add((*path, "url"), BAD_URL.format(got=y.shown(url)))
    command = y.texts(report, found["command"], (*path, "command")) if "command" in found else ()
    headers: dict[str, str] = {}
    if "bearerTokenEnv" in found:
        token = _env(report, found["bearerTokenEnv"], (*path, "bearerTokenEnv"), environ)
        headers["Authorization"] = f"Bearer {token}"
    if "headersEnv" in found:
        headers.update(
            _env_map(report, found["headersEnv"], (*path, "headersEnv"), environ, HEADER_NAME)
        )
    env = {}
    if "envFrom" in found:
        env = _env_map(report, found["envFrom"], (*path, "envFrom"), environ, ENV_NAME)
    paths: tuple[str, ...] = ()
    if "readOnlyPaths" in found:
        paths = y.texts(report, found["readOnlyPaths"], (*path, "readOnlyPaths")) or ()
        for number, item in enumerate(paths):
            if not item.startswith("/"):
                report.add((*path, "readOnlyPaths", number), BAD_PATH.format(got=y.shown(item)))
    timeout = found.get("timeoutSeconds", 30)
    seconds = y.number(timeout)
    if seconds is None or not 1 <= seconds <= 600:
        report.add((*path, "timeoutSeconds"), BAD_TIMEOUT.format(got=y.shown(timeout)))
    network = y.flag(report, found["network"], (*path, "network")) if "network" in found else False
    trusted = y.flag(report, found["trusted"], (*path, "trusted")) if "trusted" in found else False
    if len(report) > before:
        return None
    return McpServer(
        name=name,
        url=url if isinstance(url, str) else None,
        command=tuple(command or ()),
        headers=MappingProxyType(headers),
        env=MappingProxyType(env),
        network=bool(network),
        trusted=bool(trusted),
        read_only_paths=tuple(paths),
        timeout_seconds=float(seconds or 30),
    )


def mcp_servers(
    report: y.Report, raw: object, path: y.KeyPath, environ: Mapping[str, str]
) -> tuple[McpServer, ...]:
    """An agent's `mcpServers`, checked."""
    entries = y.named(
        report, raw, path, SERVER_NAME, expected=EXPECTED_SERVERS, bad_name=BAD_SERVER_NAME
    )
    servers = [_server(report, name, body, where, environ) for name, body, where in entries]
    return tuple(server for server in servers if server is not None)


def agent_servers(
    report: y.Report,
    found: Mapping[str, object],
    path: y.KeyPath,
    engine: str | None,
    environ: Mapping[str, str],
) -> tuple[McpServer, ...]:
    """The agent's `mcpServers` (none when it has no such key); only `llm` agents call tools
    a model chooses, so only they may have servers."""
    if "mcpServers" not in found:
        return ()
    where = (*path, "mcpServers")
    if engine != LLM_ENGINE:
        report.add(where, LLM_ONLY.format(engine=engine))
        return ()
    return mcp_servers(report, found["mcpServers"], where, environ)


def with_server_tools(
    report: y.Report,
    tools: tuple[str, ...],
    servers: tuple[McpServer, ...],
    path: y.KeyPath,
    *,
    listed: bool,
) -> tuple[str, ...]:
    """The agent's tools with its servers': `mcp__<server>` for each server when the
    agent has no `active_tools` of its own; when it has, each mcp__ entry must name one
    of its servers."""
    names = [server.name for server in servers]
    if not listed:
        return (*tools, *(f"{PREFIX}{name}" for name in names))
    for number, tool in enumerate(tools):
        if is_mcp_tool(tool) and server_of(tool) not in names:
            known = y.choices(names) if names else "none"
            report.add((*path, number), UNKNOWN_SERVER.format(name=server_of(tool), known=known))
    return tools
