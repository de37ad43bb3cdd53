"""``GET /metrics``: the agent's figures in the Prometheus text format, for the hospital's
monitoring (Prometheus, Telegraf, Zabbix, a node exporter's textfile collector).

Made with ``prometheus_client`` on a registry of this app's own (no process-wide state, so
tests and the tray's restarts each get fresh figures). Counters that follow events (reads,
NHSO calls) are updated as they happen; figures that are a state (readers, claims,
refusals, uptime) are read at scrape time. No card data, no reader serial, no token: the
labels are reader names, outcomes (error codes) and claim states.

Monitoring agents call it without an ``Origin`` (they are not browsers), which the guard
already lets through on 127.0.0.1 like ``curl``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from .. import __version__
from ..events import Event
from .keys import CARD_SERVICE, EVENTS, REFUSALS
from .openapi import register_openapi

# A Thai ID card reads in 1-3 s with the photo; a slow reader or a retry goes past 5.
READ_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)
NHSO_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)

ClaimSummary = Callable[[], Awaitable[dict[str, Any]]]


class AgentMetrics:
    def __init__(self, app: web.Application, claims: ClaimSummary | None = None) -> None:
        self.app = app
        self.claims = claims
        self.started = time.time()
        self.registry = CollectorRegistry()
        self.reads = Counter("thaicard_card_reads", "Card reads by reader and outcome "
                             "(ok or the error code).", ["reader", "outcome"],
                             registry=self.registry)
        self.read_seconds = Histogram("thaicard_card_read_duration_seconds",
                                      "From card insertion to its text fields read.",
                                      ["reader"], buckets=READ_BUCKETS, registry=self.registry)
        self.nhso_calls = Counter("thaicard_nhso_requests", "NHSO calls by call and outcome "
                                  "(ok, http_4xx, or the error code).", ["call", "outcome"],
                                  registry=self.registry)
        self.nhso_seconds = Histogram("thaicard_nhso_request_duration_seconds",
                                      "NHSO call latency.", ["call"], buckets=NHSO_BUCKETS,
                                      registry=self.registry)
        self._inserted: dict[str, float] = {}
        self._claims_now: dict[str, Any] = {}
        self.registry.register(_StateCollector(self))

    # -- fed as things happen ---------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        reader = event.reader or "?"
        if event.type == "card.inserted":
            self._inserted[reader] = time.monotonic()
        elif event.type == "card.read":
            self.reads.labels(reader, "ok").inc()
            started = self._inserted.pop(reader, None)
            if started is not None:
                self.read_seconds.labels(reader).observe(time.monotonic() - started)
        elif event.type == "card.error":
            self.reads.labels(reader, str(event.payload.get("code", "error"))).inc()
            self._inserted.pop(reader, None)
        elif event.type in ("card.removed", "reader.removed"):
            self._inserted.pop(reader, None)

    def observe_nhso(self, call: str, outcome: str, seconds: float) -> None:
        self.nhso_calls.labels(call, outcome).inc()
        self.nhso_seconds.labels(call).observe(seconds)

    # -- the scrape -----------------------------------------------------------------------------
    async def render(self) -> bytes:
        self._claims_now = await self.claims() if self.claims is not None else {}
        return generate_latest(self.registry)


class _StateCollector:
    """Figures that are a state, read when scraped."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        app = self.m.app
        info = InfoMetricFamily("thaicard_agent", "The agent's version.")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily("thaicard_agent_uptime_seconds", "Seconds since the agent "
                                "started.", value=time.time() - self.m.started)
        cards = app[CARD_SERVICE]
        yield GaugeMetricFamily("thaicard_pcsc_up", "1 when the PC/SC service answers.",
                                value=1.0 if cards.pcsc_state() == "available" else 0.0)
        terminals = cards.terminals()
        yield GaugeMetricFamily("thaicard_readers", "Card readers present.",
                                value=len(terminals))
        present = GaugeMetricFamily("thaicard_reader_card_present", "1 when a card is in "
                                    "that reader.", labels=["reader"])
        for name, has_card in terminals:
            present.add_metric([name], 1.0 if has_card else 0.0)
        yield present
        refused = CounterMetricFamily("thaicard_refused_requests", "Refused requests by kind "
                                      "(origin, lan) and reason (error code).",
                                      labels=["kind", "reason"])
        # The common reason is always there (at 0), so an alert's rate() has a series.
        counts = {"origin.origin_not_allowed": 0}
        if REFUSALS in app:
            counts.update(app[REFUSALS].counts)
        for key, count in sorted(counts.items()):
            kind, _, reason = key.partition(".")
            refused.add_metric([kind, reason], count)
        yield refused
        claims = self.m._claims_now
        if claims:
            states = GaugeMetricFamily("thaicard_claims", "Claims in the outbox by state.",
                                       labels=["state"])
            for state, count in sorted(claims["counts"].items()):
                states.add_metric([state], count)
            yield states
            oldest = claims.get("oldest")
            yield GaugeMetricFamily(
                "thaicard_claims_oldest_unsent_age_seconds", "Age of the oldest claim not "
                "yet sent (0 when none waits).",
                value=max(0.0, time.time() - oldest) if oldest else 0.0)
            yield GaugeMetricFamily("thaicard_claims_due", "Unsent claims of the day flagged "
                                    "after the due time (dueTime, 20:00 by default).",
                                    value=claims.get("due", 0))


async def metrics_handler(request: web.Request) -> web.Response:
    body = await request.app[METRICS].render()
    # The 0.0.4 text format: every Prometheus, Telegraf and Zabbix version reads it.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4,
                                            "Cache-Control": "no-store"})


METRICS = web.AppKey("metrics", AgentMetrics)


def setup_metrics(app: web.Application, claims: ClaimSummary | None = None) -> AgentMetrics:
    """Mount ``/metrics`` and follow the app's events; the assembly calls this."""
    metrics = AgentMetrics(app, claims)
    app[METRICS] = metrics
    app[EVENTS].add_listener(metrics.on_event)
    app.router.add_get("/metrics", metrics_handler)
    register_openapi(app, OPENAPI_PATHS)
    return metrics


OPENAPI_PATHS = {"/metrics": {"get": {
    "summary": "The agent's figures in the Prometheus text format (docs/admin.md)",
    "tags": ["monitoring"],
    "responses": {"200": {"description": "Prometheus text exposition format 0.0.4",
                          "content": {"text/plain": {"schema": {"type": "string"}}}}}}}}
