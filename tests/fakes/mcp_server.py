"""A small external MCP server for tests, built with the MCP SDK's `MCPServer`.

    python tests/fakes/mcp_server.py stdio          # over stdin/stdout
    python tests/fakes/mcp_server.py http PORT      # streamable HTTP at 127.0.0.1:PORT/mcp

Tools: `lookup(term)` answers a glossary line saying whether the request carried
`Authorization: Bearer $GLOSSARY_TOKEN` (HTTP) and what `$GLOSSARY_KEY` is (stdio: the
variable the agent's `envFrom` passed), whether it could read /etc/shadow and reach the
network (so a test sees the sandbox); `shout(text)` answers the text in capitals; `crash()` ends the process mid-call; and
`bad.name` has a name no model may call. It imports nothing of Threadline's.
"""

from __future__ import annotations

import os
import socket
import sys

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("glossary")


def _network() -> str:
    try:
        with socket.create_connection(("127.0.0.1", int(os.environ.get("PROBE_PORT", "9"))), 1):
            return "reachable"
    except OSError:
        return "unreachable"


@server.tool()
async def lookup(term: str, ctx: Context) -> str:
    """Look a term up in the glossary."""
    expected = os.environ.get("GLOSSARY_TOKEN", "")
    given = (ctx.headers or {}).get("authorization", "")
    auth = "ok" if expected and given == f"Bearer {expected}" else "none"
    shadow = "readable" if os.access("/etc/shadow", os.R_OK) else "unreadable"
    key = os.environ.get("GLOSSARY_KEY", "-")
    return (
        f"{term}: a word from the glossary (auth={auth}, key={key}, uid={os.getuid()}, "
        f"shadow={shadow}, network={_network()})"
    )


@server.tool()
async def shout(text: str) -> str:
    """Answer the text in capitals."""
    return text.upper()


@server.tool()
async def crash() -> str:
    """Exit the server's process in the middle of the call."""
    os._exit(3)


@server.tool(name="bad.name")
async def bad_name() -> str:
    """A tool whose name models cannot call."""
    return "never"


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run()
    else:
        server.run(
            "streamable-http",
            host="127.0.0.1",
            port=int(sys.argv[2]),
            stateless_http=True,
            json_response=True,
        )
