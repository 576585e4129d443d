"""Closing the loops over real sockets: the sandbox sends signed webhooks to our receiver
(uvicorn in a thread), the customer pays on the hosted checkout, unknown outcomes are settled,
and operators reconcile. SQLite and PostgreSQL.

Tests whose outcome depends on the webhooks the sandbox emits run with both event shapes
(``event_shape``, tests/reconciliation/conftest.py): the sandbox's (payment events name the
customer and the checkout session) and FastStar's documented one (``payment_id``, ``amount``,
``currency``, ``status`` only). A documented event cannot be placed on its own: it waits
(pending, looked at again every minute by the sweep), becomes one ``unmatched`` review after
15 minutes, and that review closes itself when any route books the payment: the follow-up
asking FastStar about the checkout session, or an operator. Tests that use no sandbox webhook
run once and say so."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from renewals.config import Settings
from renewals.faststar import FastStarClient, signature_header
from renewals.models import InboxEvent, PaymentReview
from renewals.models.db import unit_of_work
from renewals.sandbox.testing import RunningSandbox
from renewals.services.commands import command_view, run_command, submit
from renewals.services.inbox import process_inbox_event
from renewals.services.operators import payments_to_review
from renewals.services.reconcile import reconcile_paid
from renewals.webhooks.app import PATH, WebhookApp
from tests.reconciliation.conftest import DOCUMENTED_SHAPE
from tests.support.celery_processes import black_hole, wait_until
from tests.support.factories import Clock
from tests.support.inline import audit_actions, run_sweep, view
from tests.support.smtp import free_port

SECRET = "whsec_current_secret"
OLD_SECRET = "whsec_previous_secret"


@dataclass
class Receiver:
    url: str
    processed: list[int] = field(default_factory=list)


@pytest.fixture
def live_clock() -> Clock:
    # Webhook timestamps are real time, so this test's clock starts at the real now.
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "faststar_webhook_secret": SecretStr(SECRET),
            "faststar_webhook_secrets_old": SecretStr(OLD_SECRET),
            "checkout_poll_interval": 0.0,  # webhooks only, unless a test turns polling on
        }
    )


@pytest.fixture
def receiver(engine: Engine, hook_settings: Settings, live_clock: Clock) -> Iterator[Receiver]:
    """Our webhook app on a real socket; "the task" processes each event at once."""
    port = free_port()
    result = Receiver(f"http://127.0.0.1:{port}{PATH}")

    def process(inbox_id: int) -> None:
        process_inbox_event(engine, inbox_id, clock=live_clock, settings=hook_settings)
        result.processed.append(inbox_id)

    app = WebhookApp(engine=engine, settings=hook_settings, on_stored=process)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10, what="the webhook receiver")
    yield result
    server.should_exit = True
    thread.join(10)


def _signed(body: bytes, *, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if at is None else at
    return {
        "X-Webhook-Signature": signature_header(secret, ts, body),
        "X-Webhook-Timestamp": str(ts),
        "Content-Type": "application/json",
    }


def _event(event_id: str, **data: Any) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": "payment.succeeded",
            "created": int(time.time()),
            "data": {"status": "succeeded", **data},
            "livemode": False,
            "api_version": "v1",
        }
    ).encode()


def _reviews(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return int(session.scalar(select(func.count()).select_from(PaymentReview)) or 0)


def _inbox_count(engine: Engine) -> int:
    with unit_of_work(engine) as session:
        return int(session.scalar(select(func.count()).select_from(InboxEvent)) or 0)


def _open_reviews(engine: Engine) -> list[tuple[str, str | None]]:
    """(kind, payment id) of every open review, oldest first."""
    with unit_of_work(engine) as session:
        return [(r["kind"], r["payment_intent_id"]) for r in payments_to_review(session)]


def _payment_events(engine: Engine) -> list[tuple[str, str]]:
    """(payment id, inbox status) of every stored ``payment.succeeded`` event."""
    with unit_of_work(engine) as session:
        rows = session.scalars(
            select(InboxEvent).where(InboxEvent.type == "payment.succeeded").order_by(InboxEvent.id)
        ).all()
        return [(str(r.payload["data"]["payment_id"]), r.status) for r in rows]


def _all_delivered(sandbox: RunningSandbox, times: int = 1) -> bool:
    """Every event the sandbox emitted reached the receiver ``times`` times (the receiver
    answers only after its task ran, so each one was processed too)."""
    events = sandbox.events()
    return bool(events) and all(e["delivery"]["deliveries"] >= times for e in events)


def _wait_then_review(
    engine: Engine,
    faststar: FastStarClient,
    settings: Settings,
    clock: Clock,
    payment_ids: list[str],
) -> None:
    """Documented shape: each payment's event names neither customer nor session, so it
    waits (pending, no review), and after 15 minutes unplaced becomes one open review."""
    assert sorted(_payment_events(engine)) == sorted((pi, "pending") for pi in payment_ids)
    assert _open_reviews(engine) == []
    clock.advance(minutes=16)
    run_sweep(engine, faststar, settings, clock)
    run_sweep(engine, faststar, settings, clock)  # once processed, never listed twice
    assert sorted(_open_reviews(engine)) == sorted(("unmatched", pi) for pi in payment_ids)
    assert {status for _, status in _payment_events(engine)} == {"processed"}


def test_sca_email_checkout_webhook_active_then_next_period_off_session(
    engine: Engine,
    faststar: FastStarClient,
    hook_settings: Settings,
    live_clock: Clock,
    sandbox: RunningSandbox,
    event_shape: str,
    receiver: Receiver,
    make_subscription: Callable[..., int],
    tmp_path: Path,
) -> None:
    sandbox.configure(webhook_url=receiver.url, webhook_secret=SECRET)
    sub_id = make_subscription("sca", renews_at=live_clock.now)
    run_sweep(engine, faststar, hook_settings, live_clock)
    renewal = view(engine, sub_id)["renewals"][0]
    [eml] = (tmp_path / "mail").glob("*action_required*.eml")
    text = message_from_bytes(eml.read_bytes(), policy=policy.default).get_body(("plain",))
    assert text is not None and renewal["checkout_url"] in text.get_content()

    sandbox.complete_checkout(renewal["checkout_session_id"])
    [charge] = sandbox.charges()
    pi = str(charge["payment_intent_id"])
    if event_shape == DOCUMENTED_SHAPE:
        wait_until(lambda: _all_delivered(sandbox), timeout=15, what="the webhook")
        assert view(engine, sub_id)["status"] == "action_required"
        live_clock.advance(seconds=61)  # looked at again a minute later: still unplaced
        run_sweep(engine, faststar, hook_settings, live_clock)
        _wait_then_review(engine, faststar, hook_settings, live_clock, [pi])
        assert view(engine, sub_id)["status"] == "action_required"
        # The first reminder's follow-up asks FastStar about the session: paid, booked.
        live_clock.advance(days=3)
        run_sweep(engine, faststar, hook_settings, live_clock)
        assert _reviews(engine) == 1  # closed, not deleted
    else:
        wait_until(
            lambda: view(engine, sub_id)["status"] == "active", timeout=15, what="the webhook"
        )
    sub = view(engine, sub_id)
    [paid] = sub["renewals"]
    assert sub["status"] == "active"
    assert paid["status"] == "succeeded"
    assert paid["payment_intent_id"] == pi
    assert sub["current_period_start"] == paid["period_start"]
    assert audit_actions(engine, sub_id).count("renewal_paid_on_session") == 1
    assert _open_reviews(engine) == []

    # The next period is charged off-session as usual (this card asks for SCA again).
    live_clock.now = datetime.fromisoformat(sub["next_renewal_at"])
    run_sweep(engine, faststar, hook_settings, live_clock)
    second = view(engine, sub_id)["renewals"][1]
    assert second["period_index"] == 1
    assert [a["status"] for a in second["attempts"]] == ["requires_action"]


def test_checkout_completion_found_by_polling_without_webhooks(
    engine: Engine,
    faststar: FastStarClient,
    hook_settings: Settings,
    live_clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    # One shape only: no webhook is sent (no receiver), so the events' shape cannot matter.
    polling = hook_settings.model_copy(update={"checkout_poll_interval": 60.0})
    sub_id = make_subscription("sca", renews_at=live_clock.now)
    run_sweep(engine, faststar, polling, live_clock)
    renewal = view(engine, sub_id)["renewals"][0]
    live_clock.advance(seconds=61)
    run_sweep(engine, faststar, polling, live_clock)  # still open: polled, nothing changes
    assert view(engine, sub_id)["status"] == "action_required"
    sandbox.complete_checkout(renewal["checkout_session_id"])
    live_clock.advance(seconds=61)
    run_sweep(engine, faststar, polling, live_clock)
    sub = view(engine, sub_id)
    assert sub["status"] == "active"
    assert sub["renewals"][0]["payment_intent_id"] == sandbox.charges()[0]["payment_intent_id"]


def test_completion_after_cancellation_is_listed_for_refund(
    engine: Engine,
    faststar: FastStarClient,
    hook_settings: Settings,
    live_clock: Clock,
    sandbox: RunningSandbox,
    event_shape: str,
    receiver: Receiver,
    make_subscription: Callable[..., int],
) -> None:
    sandbox.configure(webhook_url=receiver.url, webhook_secret=SECRET)
    sub_id = make_subscription("sca", renews_at=live_clock.now)
    run_sweep(engine, faststar, hook_settings, live_clock)
    session_id = view(engine, sub_id)["renewals"][0]["checkout_session_id"]
    live_clock.advance(days=8)  # the customer never paid: canceled
    run_sweep(engine, faststar, hook_settings, live_clock)
    assert view(engine, sub_id)["status"] == "canceled"
    sandbox.complete_checkout(session_id)  # ... and then pays after all
    [charge] = sandbox.charges()
    wait_until(lambda: _all_delivered(sandbox), timeout=15, what="the webhook")
    if event_shape == DOCUMENTED_SHAPE:
        # The event names no session: nothing but FastStar's word on the session ties the
        # payment to this renewal. (The receiver stores at real time and processes at the
        # test's clock, 8 days ahead, so the event may be past its wait already.)
        live_clock.advance(minutes=16)
        run_sweep(engine, faststar, hook_settings, live_clock)
    with unit_of_work(engine) as session:
        # (In the documented shape an unmatched review was filed first; placing the payment
        # on this renewal closed it.)
        [review] = session.scalars(select(PaymentReview).where(PaymentReview.status == "open"))
    assert (review.kind, review.payment_intent_id) == ("refund_due", charge["payment_intent_id"])
    assert review.renewal_id == view(engine, sub_id)["renewals"][0]["id"]
    assert view(engine, sub_id)["status"] == "canceled"
    listed = json.loads(_cli(hook_settings, "reviews", "--json").stdout)
    assert [(r["kind"], r["payment_intent_id"]) for r in listed] == [
        ("refund_due", review.payment_intent_id)
    ]


def test_lost_response_is_resolved_by_the_sandbox_webhook(
    engine: Engine,
    faststar: FastStarClient,
    hook_settings: Settings,
    live_clock: Clock,
    sandbox: RunningSandbox,
    event_shape: str,
    receiver: Receiver,
    make_subscription: Callable[..., int],
) -> None:
    sandbox.configure(webhook_url=receiver.url, webhook_secret=SECRET)
    sub_id = make_subscription("lost_response", renews_at=live_clock.now)
    run_sweep(engine, faststar, hook_settings, live_clock)
    wait_until(lambda: _all_delivered(sandbox), timeout=15, what="the webhook")
    # The event may have come while the charge was still being recorded: it waits, and the
    # sweep hands it back once the attempt is known to be unknown.
    live_clock.advance(seconds=61)
    run_sweep(engine, faststar, hook_settings, live_clock)
    [charge] = sandbox.charges()
    pi = str(charge["payment_intent_id"])
    if event_shape == DOCUMENTED_SHAPE:
        # No customer on the event: amount alone never identifies the unknown attempt. It is
        # listed after its wait, and an operator who checked FastStar books it.
        renewal = view(engine, sub_id)["renewals"][0]
        assert (renewal["status"], renewal["payment_intent_id"]) == ("unknown", None)
        _wait_then_review(engine, faststar, hook_settings, live_clock, [pi])
        assert view(engine, sub_id)["renewals"][0]["status"] == "unknown"
        outcome, _ = reconcile_paid(
            engine,
            renewal["id"],
            pi,
            now=live_clock(),
            settings=hook_settings,
            actor="operator:alice",
            reason="FastStar dashboard shows the payment",
        )
        assert outcome == "unknown resolved as paid"
        assert "renewal_resolved_paid" in audit_actions(engine, sub_id)
    renewal = view(engine, sub_id)["renewals"][0]
    assert renewal["status"] == "succeeded"
    assert renewal["payment_intent_id"] == pi
    assert [a["status"] for a in renewal["attempts"]] == ["succeeded"]
    assert view(engine, sub_id)["status"] == "active"
    assert _open_reviews(engine) == []


def test_webhook_abuse_is_refused_and_duplicates_are_harmless(
    engine: Engine,
    receiver: Receiver,
    faststar: FastStarClient,
    hook_settings: Settings,
    live_clock: Clock,
) -> None:
    # One shape only: the events are built here, already in the documented shape.
    body = _event("evt_dup", payment_id="pi_nobody", amount=100, currency="USD")
    with httpx.Client(timeout=10) as http:
        answers = [http.post(receiver.url, content=body, headers=_signed(body)) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json()["duplicate"] for a in answers] == [False, True, True]
        assert _inbox_count(engine) == 1

        def post(content: bytes, headers: dict[str, str]) -> int:
            return http.post(receiver.url, content=content, headers=headers).status_code

        other = _event("evt_other", payment_id="pi_x", amount=1, currency="USD")
        assert post(other, {**_signed(other), "X-Webhook-Signature": "t=1,v1=00"}) in (400, 401)
        assert post(other, _signed(other, secret="whsec_wrong")) == 401
        assert post(other, _signed(other, at=int(time.time()) - 3600)) == 400
        assert post(other, _signed(other, at=int(time.time()) + 3600)) == 400
        reserialized = json.dumps(json.loads(other), indent=2).encode()
        assert post(reserialized, _signed(other)) == 401
        huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"
        assert post(huge, _signed(huge)) == 413
        assert post(other, {"Content-Type": "application/json"}) == 400
        assert _inbox_count(engine) == 1
        # During a rotation both the old and the new secret verify.
        rotated = _event("evt_rotated", payment_id="pi_y", amount=1, currency="USD")
        assert post(rotated, _signed(rotated, secret=OLD_SECRET)) == 200
        fresh = _event("evt_fresh", payment_id="pi_z", amount=1, currency="USD")
        assert post(fresh, _signed(fresh, secret=SECRET)) == 200
    assert _inbox_count(engine) == 3
    # Shaped as FastStar documents them (no customer), they first wait for a worker that
    # might be recording the payment id; after 15 minutes they are listed, not dropped.
    assert _reviews(engine) == 0
    live_clock.advance(minutes=16)
    run_sweep(engine, faststar, hook_settings, live_clock)
    with unit_of_work(engine) as session:
        kinds = session.scalars(select(PaymentReview.kind)).all()
    assert sorted(kinds) == ["unmatched"] * 3


def test_reordered_and_duplicated_sandbox_webhooks_settle_once(
    engine: Engine,
    faststar: FastStarClient,
    hook_settings: Settings,
    live_clock: Clock,
    sandbox: RunningSandbox,
    event_shape: str,
    receiver: Receiver,
    make_subscription: Callable[..., int],
) -> None:
    sandbox.configure(
        webhook_url=receiver.url,
        webhook_secret=SECRET,
        webhook_duplicates=True,
        webhook_reorder=True,
    )
    subs = [make_subscription("sca", renews_at=live_clock.now) for _ in range(3)]
    run_sweep(engine, faststar, hook_settings, live_clock)
    for sub_id in subs:
        sandbox.complete_checkout(view(engine, sub_id)["renewals"][0]["checkout_session_id"])
    # Every event, and its duplicate, has been received and processed.
    wait_until(lambda: _all_delivered(sandbox, times=2), timeout=20, what="every delivery")
    if event_shape == DOCUMENTED_SHAPE:
        assert all(view(engine, s)["status"] == "action_required" for s in subs)
        paid = [str(c["payment_intent_id"]) for c in sandbox.charges()]
        _wait_then_review(engine, faststar, hook_settings, live_clock, paid)
        # The first reminder's follow-ups ask FastStar about each session: each is booked.
        live_clock.advance(days=3)
        run_sweep(engine, faststar, hook_settings, live_clock)
    for sub_id in subs:
        assert view(engine, sub_id)["status"] == "active"
        assert audit_actions(engine, sub_id).count("renewal_paid_on_session") == 1
    assert _open_reviews(engine) == []
    if event_shape != DOCUMENTED_SHAPE:
        assert _reviews(engine) == 0


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "renewals", *args],
        env={
            "PATH": "/usr/bin:/bin",
            "RENEWALS_DATABASE_URL": settings.database_url,
            "RENEWALS_FASTSTAR_BASE_URL": settings.faststar_base_url,
            "RENEWALS_MAIL_URL": settings.mail_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_operator_reconciles_paid_and_not_charged(
    engine: Engine,
    faststar: FastStarClient,
    hook_settings: Settings,
    live_clock: Clock,
    sandbox: RunningSandbox,
    make_subscription: Callable[..., int],
) -> None:
    # One shape only: no webhook is sent (no receiver), so the events' shape cannot matter.
    paid_sub = make_subscription("lost_response", renews_at=live_clock.now)
    lost_sub = make_subscription("success", renews_at=live_clock.now)
    with black_hole() as port:
        timeout = httpx.Timeout(0.5)
        with FastStarClient(
            f"http://127.0.0.1:{port}/api/v1", sandbox.api_key, timeout=timeout
        ) as dead:
            run_sweep(engine, dead, hook_settings, live_clock)
    assert view(engine, lost_sub)["renewals"][0]["status"] == "unknown"
    assert view(engine, paid_sub)["renewals"][0]["status"] == "unknown"
    assert sandbox.charges() == []

    lost = view(engine, lost_sub)["renewals"][0]
    # The CLI refuses a bad command before anything is written or queued...
    refused = _cli(hook_settings, "reconcile", str(lost["id"]), "--not-charged")
    assert refused.returncode != 0 and "--reason" in refused.stderr

    # ... and queues the rest: run here as the worker runs it (tests/processes/
    # test_operator_commands.py runs `renewals reconcile` against a real worker).
    def reconcile(renewal_id: int, **arguments: object) -> dict[str, object]:
        command_id = submit(
            engine,
            "reconcile",
            {"renewal_id": renewal_id, **arguments},
            actor="operator:alice",
            now=live_clock(),
        )
        run_command(hook_settings, engine, faststar, live_clock, command_id)
        with unit_of_work(engine) as session:
            result = command_view(session, command_id)
        assert result is not None
        return result

    done = reconcile(lost["id"], not_charged=True, reason="FastStar support: no such charge")
    assert done["status"] == "done", done
    live_clock.now = datetime.now(UTC) + timedelta(seconds=1)
    run_sweep(engine, faststar, hook_settings, live_clock)
    renewal = view(engine, lost_sub)["renewals"][0]
    assert renewal["status"] == "succeeded"
    first, second = renewal["attempts"]
    assert (first["status"], second["status"]) == ("not_charged", "succeeded")
    assert first["idempotency_key"] != second["idempotency_key"]
    assert [c["idempotency_key"] for c in sandbox.charges()] == [second["idempotency_key"]]

    other = view(engine, paid_sub)["renewals"][0]
    done = reconcile(other["id"], paid="pi_from_support")
    assert done["status"] == "done", done
    settled = view(engine, paid_sub)["renewals"][0]
    assert (settled["status"], settled["payment_intent_id"]) == ("succeeded", "pi_from_support")
    again = reconcile(other["id"], paid="pi_from_support")
    assert again["status"] == "refused" and "succeeded" in str(again["result"])
    assert "renewal_resolved_paid" in audit_actions(engine, paid_sub)
