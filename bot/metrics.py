"""Prometheus metrics: what each process counts, and what a scrape reads from the database.

Each process keeps its own counters (prometheus_client's default registry) and serves
them itself: the web process at `/metrics` (a Bearer operator or viewer token), and any
process on `THREADLINE_METRICS_ADDRESS` when that is set (no token: bind it where only
the scraper reaches). Prometheus sums several processes by their `instance` label; the
library's multiprocess mode is not used (it needs a shared directory, loses custom
collectors and gauges' meaning, and our processes often run on different machines).

What lives in the database (inbox depth and age, outbox by status, live sessions by
state) is read at scrape time by `DatabaseCollector`: a few grouped counts, the same
numbers from whichever process is scraped.
"""

from __future__ import annotations

import functools
import logging
import time
import types
from collections.abc import Iterable, Iterator
from datetime import datetime

import aiohttp
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from bot.clock import utcnow
from bot.db.models import LIVE_STATES, Delivery, OutboxItem, SessionRow

log = logging.getLogger(__name__)

PREFIX = "threadline"

DELIVERIES = Counter(
    f"{PREFIX}_deliveries_received",
    "Webhook deliveries answered by ingress, by host, event and answer "
    "(queued, ignored, duplicate, pong, refused, unavailable).",
    ["host", "event", "answer"],
)
DELIVERIES_HANDLED = Counter(
    f"{PREFIX}_deliveries_handled",
    "Deliveries a worker settled, by host and outcome (done, ignored, retry, failed).",
    ["host", "outcome"],
)
HANDLING_SECONDS = Histogram(
    f"{PREFIX}_delivery_handling_seconds",
    "Time a worker spent running one delivery's handlers.",
    ["host"],
)
OUTBOX_SENDS = Counter(
    f"{PREFIX}_outbox_sends",
    "Outbox writes a sender tried, by host, kind and result (sent, retry, failed).",
    ["host", "kind", "result"],
)
SEND_SECONDS = Histogram(
    f"{PREFIX}_outbox_send_seconds",
    "Time one outbox write took at the host (all of its API calls).",
    ["host", "kind"],
)
HOST_CALLS = Counter(
    f"{PREFIX}_host_api_calls",
    "Requests to a host's API, by host and HTTP status.",
    ["host", "status"],
)
RATE_REMAINING = Gauge(
    f"{PREFIX}_host_rate_limit_remaining",
    "The host's x-ratelimit-remaining on its latest answer.",
    ["host"],
)
TURNS = Counter(
    f"{PREFIX}_turns",
    "Session turns run, by result (ran; crashed: the turn raised and was not settled). "
    "A turn the engine failed ran, and counts as errors{kind=turn_failed}.",
    ["result"],
)
TURN_SECONDS = Histogram(
    f"{PREFIX}_turn_seconds",
    "Time one session turn took.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
LLM_CALLS = Counter(
    f"{PREFIX}_llm_calls",
    "Model calls whose usage was reported, by provider (the agent's `provider:`) and model.",
    ["provider", "model"],
)
LLM_TOKENS = Counter(
    f"{PREFIX}_llm_tokens",
    "Tokens of model calls, by provider, model and direction (input: all of them, of which"
    " cache_read and cache_write; output).",
    ["provider", "model", "direction"],
)
LLM_COST = Counter(
    f"{PREFIX}_llm_cost_microdollars",
    "Cost of model calls in US$ 1e-6 from the price table, by provider and model.",
    ["provider", "model"],
)
ERRORS = Counter(
    f"{PREFIX}_errors",
    "Errors by kind (delivery_failed, delivery_retry, send_failed, send_retry, turn_failed, "
    "turn_crashed, poll_failed).",
    ["kind"],
)


@functools.lru_cache(maxsize=1024)
def received(host: str, event: str, answer: str) -> Counter:
    """DELIVERIES' child for one label set, looked up once: ingress is benchmarked, and
    `labels()` takes a lock and builds a key on every call."""
    return DELIVERIES.labels(host, event, answer)


class DatabaseCollector(Collector):
    """Inbox depth and the oldest waiting delivery's age, outbox rows and live sessions by
    status, read from the database at scrape time (grouped counts on indexed columns)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            inbox, oldest, outbox, sessions = self._read()
        except Exception:
            log.warning("metrics: could not read the database", exc_info=True)
            return
        depth = GaugeMetricFamily(
            f"{PREFIX}_inbox_depth", "Deliveries not yet settled, by status.", labels=["status"]
        )
        for status in ("pending", "processing"):
            depth.add_metric([status], inbox.get(status, 0))
        yield depth
        age = 0.0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            f"{PREFIX}_inbox_oldest_waiting_seconds",
            "Age of the oldest delivery still waiting to be handled (0 when none waits).",
            value=age,
        )
        rows = GaugeMetricFamily(
            f"{PREFIX}_outbox_rows", "Outbox rows by status.", labels=["status"]
        )
        for status in sorted({"pending", "sending", "sent", "failed", *outbox}):
            rows.add_metric([status], outbox.get(status, 0))
        yield rows
        live = GaugeMetricFamily(
            f"{PREFIX}_sessions_live", "Live sessions by state.", labels=["state"]
        )
        for state in LIVE_STATES:
            live.add_metric([state], sessions.get(state, 0))
        yield live

    def _read(
        self,
    ) -> tuple[dict[str, int], datetime | None, dict[str, int], dict[str, int]]:
        waiting = ("pending", "processing")
        with Session(self.engine) as db:
            inbox = db.execute(
                select(Delivery.status, func.count())
                .where(Delivery.status.in_(waiting))
                .group_by(Delivery.status)
            ).all()
            oldest = db.scalar(
                select(func.min(Delivery.received_at)).where(Delivery.status.in_(waiting))
            )
            outbox = db.execute(
                select(OutboxItem.status, func.count()).group_by(OutboxItem.status)
            ).all()
            sessions = db.execute(
                select(SessionRow.state, func.count())
                .where(SessionRow.state.in_(LIVE_STATES))
                .group_by(SessionRow.state)
            ).all()
        return (
            {s: n for s, n in inbox},
            oldest,
            {s: n for s, n in outbox},
            {s: n for s, n in sessions},
        )


def exposition(engine: Engine) -> bytes:
    """This process's counters and the database's gauges, in the text format."""
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector(engine))
    return generate_latest(REGISTRY) + generate_latest(database)


CONTENT_TYPE = CONTENT_TYPE_LATEST


class Timer:
    """Seconds since it was made (monotonic), for the histograms."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.started


def count_send(host: str, kind: str, result: str) -> None:
    """One outbox send's result; a retry or a failure is an error of its kind too."""
    OUTBOX_SENDS.labels(host, kind, result).inc()
    if result != "sent":
        ERRORS.labels(f"send_{result}").inc()


def count_turn(result: str, seconds: float) -> None:
    """One session turn: its result (ran, crashed: not settled) and its duration."""
    TURNS.labels(result).inc()
    TURN_SECONDS.observe(seconds)
    if result == "crashed":
        ERRORS.labels("turn_crashed").inc()


def count_llm(
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read: int = 0,
    cache_write: int = 0,
    cost_micros: int = 0,
) -> None:
    """One model call's usage and its cost (micro-dollars, from the price table)."""
    LLM_CALLS.labels(provider, model).inc()
    LLM_TOKENS.labels(provider, model, "input").inc(input_tokens)
    LLM_TOKENS.labels(provider, model, "output").inc(output_tokens)
    LLM_TOKENS.labels(provider, model, "cache_read").inc(cache_read)
    LLM_TOKENS.labels(provider, model, "cache_write").inc(cache_write)
    LLM_COST.labels(provider, model).inc(cost_micros)


def observe_host_answer(host: str, status: int, remaining: str | None) -> None:
    """One host API answer: its status, and the rate limit it says is left."""
    HOST_CALLS.labels(host, str(status)).inc()
    if remaining is not None and remaining.isdigit():
        RATE_REMAINING.labels(host).set(int(remaining))


def host_api_tracing(bases: Iterable[tuple[str, str]]) -> aiohttp.TraceConfig:
    """An aiohttp trace that counts every answer from a URL under one of `bases`
    ((host name, base URL) pairs) on the process's shared client session (GitHub's REST and
    GraphQL calls; python-gitlab has its own requests session, whose response hook in
    bot.hosts.gitlab.core counts GitLab's the same way)."""
    prefixes = [(url.rstrip("/") + "/", host) for host, url in bases if url]

    async def on_request_end(
        session: aiohttp.ClientSession,
        context: types.SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        url = str(params.url)
        for prefix, host in prefixes:
            if url.startswith(prefix) or url == prefix[:-1]:
                headers = params.response.headers
                observe_host_answer(
                    host, params.response.status, headers.get("x-ratelimit-remaining")
                )
                return

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    return trace
