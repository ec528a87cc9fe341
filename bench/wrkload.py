"""Closed-loop load from `wrk` (a C load generator) for bench/ingress.py.

wrk leaves more of the machine's two cores to the servers than any Python client. A
Lua script (written next to the request files) sends prepared, signed requests in
turn, each with a delivery id of its own (`wrk-<run>-<thread>-<n>`), and counts the
answers by status and the 2xx answers that said "queued". The counts come back on
stdout as one JSON line.

wrk stops at the end of its duration without waiting for the requests still in flight,
so up to one request per connection is sent and never answered; the script counts
those (`unanswered`), and the durability check allows that many stored rows beyond
the "queued" answers (and never fewer rows than "queued" answers).
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LUA = r"""
-- Written by bench/wrkload.py: prepared requests, a fresh delivery id each, answers counted.
local dir, run = "__DIR__", "__RUN__"
local heads, bodies, count = {}, {}, 0
local threads, made = {}, 0

function setup(thread)
  made = made + 1
  thread:set("tid", made)
  table.insert(threads, thread)
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  count = tonumber(slurp(dir .. "/count"))
  for i = 1, count do
    heads[i] = slurp(dir .. "/" .. i .. ".head")
    bodies[i] = slurp(dir .. "/" .. i .. ".body")
  end
  sent, answered, ok, queued, other = 0, 0, 0, 0, 0
  statuses = {}
end

function request()
  sent = sent + 1
  local i = (sent + tid * 7) % count + 1
  return heads[i] .. "wrk-" .. run .. "-" .. tid .. "-" .. sent .. "\r\n\r\n" .. bodies[i]
end

function response(status, headers, body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
    if string.find(body, '"queued"', 1, true) then queued = queued + 1 end
  else
    other = other + 1
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local s, a, o, q, x = 0, 0, 0, 0, 0
  local bad = {}
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); a = a + t:get("answered"); o = o + t:get("ok")
    q = q + t:get("queued"); x = x + t:get("other")
    for code, n in pairs(t:get("statuses")) do bad[code] = (bad[code] or 0) + n end
  end
  local e = summary.errors
  local codes = {}
  for code, n in pairs(bad) do table.insert(codes, '"' .. code .. '":' .. n) end
  io.write(string.format(
    '{"sent":%d,"answered":%d,"ok":%d,"queued":%d,"other":%d,"duration_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"statuses":{%s}}\n',
    s, a, o, q, x, summary.duration, e.connect, e.read, e.write, e.timeout,
    table.concat(codes, ",")))
end
"""


@dataclass
class WrkRun:
    """What one wrk run sent and got back."""

    sent: int = 0
    answered: int = 0
    ok: int = 0
    queued: int = 0
    seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)  # non-2xx answers
    errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout
    cpu_seconds: float = 0.0  # wrk's own user+system CPU

    @property
    def unanswered(self) -> int:
        return max(self.sent - self.answered, 0)


def available() -> bool:
    return shutil.which("wrk") is not None


class WrkLoad:
    """Prepared request files plus the script, in `directory`; `run` drives one phase."""

    def __init__(
        self,
        directory: Path,
        host: str,
        port: int,
        requests: list[tuple[str, list[tuple[str, str]], str, bytes]],
    ) -> None:
        """`requests`: (path, fixed headers, delivery header name, body) each."""
        self.directory = directory
        self.url = f"http://{host}:{port}"
        directory.mkdir(parents=True, exist_ok=True)
        for i, (path, headers, delivery_header, body) in enumerate(requests, start=1):
            lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
            lines += [f"{name}: {value}" for name, value in headers]
            lines += [f"Content-Length: {len(body)}", f"{delivery_header}: "]
            (directory / f"{i}.head").write_bytes("\r\n".join(lines).encode("latin-1"))
            (directory / f"{i}.body").write_bytes(body)
        (directory / "count").write_text(str(len(requests)))

    def run(self, connections: int, seconds: float, threads: int = 1) -> WrkRun:
        script = self.directory / "bench.lua"
        tag = uuid.uuid4().hex[:12]
        script.write_text(LUA.replace("__DIR__", str(self.directory)).replace("__RUN__", tag))
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        argv = ["wrk", "-t", str(threads), "-c", str(max(connections, threads))]
        argv += ["-d", f"{max(seconds, 1):.0f}s", "--timeout", "15s", "-s", str(script), self.url]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith('{"sent"')), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        data = json.loads(line)
        errors = {k: data[k] for k in ("connect", "read", "write", "timeout") if data[k]}
        return WrkRun(
            sent=data["sent"],
            answered=data["answered"],
            ok=data["ok"],
            queued=data["queued"],
            seconds=data["duration_us"] / 1e6,
            statuses={int(k): v for k, v in data["statuses"].items()},
            errors=errors,
            cpu_seconds=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        )
