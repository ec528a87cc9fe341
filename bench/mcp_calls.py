"""MCP over /mcp against /api/v1: what one call costs through each.

Run by hand (never in CI), from the repository root:

    .venv/bin/python bench/mcp_calls.py                 # SQLite, 300 calls each
    .venv/bin/python bench/mcp_calls.py --calls 1000

Starts `threadline serve --playground --workers 1` on a fresh SQLite database on a free
loopback port, launches one headless session through the API, then times, one after the
other on one connection each:

  api     GET /api/v1/sessions/{id} with aiohttp (the baseline)
  mcp     tools/call sessions_status through the MCP SDK's own client over streamable
          HTTP (one MCP client, stateless server: every call is one POST)

and prints p50/p99 of each and the ratio of the medians. Both reach the same operation
(control.status); the difference is the SDK's transport and the ASGI bridge.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import TOKEN, free_port, start_server, wait_healthy
from common import code_state, percentile_ms


async def measure(url: str, calls: int) -> tuple[list[float], list[float]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        await wait_healthy(http, url)
        async with http.post(url + "/api/v1/sessions", json={"task": "bench"}) as response:
            sid = (await response.json())["id"]
        api = []
        for _ in range(calls):
            start = time.perf_counter()
            async with http.get(f"{url}/api/v1/sessions/{sid}") as response:
                await response.read()
            api.append(time.perf_counter() - start)
    mcp = []
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as client_http,
        Client(streamable_http_client(url + "/mcp", http_client=client_http)) as client,
    ):
        for _ in range(calls):
            start = time.perf_counter()
            result = await client.call_tool("sessions_status", {"sessionId": sid})
            mcp.append(time.perf_counter() - start)
            if result.is_error:
                raise RuntimeError(f"sessions_status failed: {result.content}")
    return api, mcp


async def run(calls: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADLINE_")}
        env.update(
            THREADLINE_DATABASE_URL=f"sqlite:///{Path(tmp) / 'mcp.db'}",
            THREADLINE_OPERATOR_TOKEN=TOKEN,
            THREADLINE_GITHUB_WEBHOOK_SECRET="bench-secret-0123456789",  # noqa: S106
            THREADLINE_LOG_LEVEL="WARNING",
        )
        proc, log = start_server(env, port, Path(tmp) / "serve.log")
        try:
            api, mcp = await measure(f"http://127.0.0.1:{port}", calls)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    a50, a99 = percentile_ms(api, 0.5), percentile_ms(api, 0.99)
    m50, m99 = percentile_ms(mcp, 0.5), percentile_ms(mcp, 0.99)
    print(
        f"api  GET /api/v1/sessions/{{id}}   p50 {a50:6.2f} ms  p99 {a99:6.2f} ms  ({calls} calls)"
    )
    print(
        f"mcp  sessions_status via /mcp     p50 {m50:6.2f} ms  p99 {m99:6.2f} ms  ({calls} calls)"
    )
    print(f"ratio mcp/api p50 {m50 / a50:.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    print(f"code: {code_state()}")
    asyncio.run(run(args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
