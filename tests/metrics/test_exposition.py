"""GET /metrics in-process (one process, no multiprocess folder): the text format parsed
back with prometheus_client's own parser; a database that cannot be read leaves the process
counters served; other paths reach the wrapped app."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine

from renewals import metrics
from renewals.metrics import names
from renewals.models.db import create_db_engine
from renewals.webhooks.metrics_endpoint import with_metrics
from tests.support.factories import Clock

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(app: Any, path: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(call())


def claimed(samples: Samples) -> float:
    return samples.get((names.CLAIMED.name, (("work", "charge"),)), 0.0)


def test_the_scrape_serves_process_counters_and_database_gauges(
    engine: Engine, clock: Clock
) -> None:
    app = with_metrics(None, engine, clock)
    before = claimed(parse(get(app, "/metrics").text))
    metrics.count_claimed(["charge", "charge", "deliver"])
    answer = get(app, "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = parse(answer.text)
    assert claimed(samples) == before + 2
    assert samples[(names.DB_UP.name, ())] == 1
    assert samples[(names.RENEWALS.name, (("status", "pending"),))] == 0


def test_a_database_down_still_serves_the_process_counters(tmp_path: Path, clock: Clock) -> None:
    broken = create_db_engine(f"sqlite:///{tmp_path}/missing/renewals.db")
    try:
        app = with_metrics(None, broken, clock)
        metrics.count_claimed(["charge"])
        answer = get(app, "/metrics")
    finally:
        broken.dispose()
    assert answer.status_code == 200
    samples = parse(answer.text)
    assert samples[(names.DB_UP.name, ())] == 0
    assert claimed(samples) >= 1
    assert not any(name == names.RENEWALS.name for name, _ in samples)


def test_other_paths_reach_the_wrapped_app(engine: Engine, clock: Clock) -> None:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    app = with_metrics(inner, engine, clock)
    answer = get(app, "/webhooks/faststar")
    assert (answer.status_code, answer.text) == (299, "/webhooks/faststar")
    alone = with_metrics(None, engine, clock)
    assert get(alone, "/").json() == {"ok": True}
    assert get(alone, "/nothing").status_code == 404


def test_faststar_endpoints_lose_their_ids_and_errors_keep_their_class() -> None:
    assert (
        metrics.faststar_endpoint("POST", "/public/customers/cus_Ab1/charge")
        == "POST /public/customers/{id}/charge"
    )
    assert (
        metrics.faststar_endpoint("GET", "/public/checkout/sessions/cs_x-9")
        == "GET /public/checkout/sessions/{id}"
    )
    assert metrics.faststar_endpoint("GET", "/merchant/catalog/prices") == (
        "GET /merchant/catalog/prices"
    )
    assert metrics.error_class("paid", 200) is None
    assert metrics.error_class("declined", 400) is None
    assert metrics.error_class("authentication_required", 402) is None
    assert metrics.error_class("not_sent", 429) == "rate_limited"
    assert metrics.error_class("not_sent", None) == "not_sent"
    assert metrics.error_class("unknown", 502) == "unknown"
    assert metrics.error_class("FastStarMalformedResponse", 200) == "malformed"
    assert metrics.error_class("FastStarRequestRejected", 400) == "rejected"
    assert metrics.error_class("configuration_error", 401) == "configuration"
    assert metrics.error_class("ok", 200) is None


def test_a_metric_that_cannot_be_written_never_raises(monkeypatch: Any) -> None:
    from renewals.metrics import instruments

    class Broken:
        def labels(self, *_: str) -> Any:
            raise OSError("No space left on device")

    monkeypatch.setattr(instruments, "charges", Broken())
    metrics.observe_faststar_call(
        "POST", "/public/customers/cus_1/charge", http_status=200, seconds=0.1, outcome="paid"
    )
