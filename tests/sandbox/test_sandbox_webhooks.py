"""Signed webhook delivery to a real local receiver: retries, duplicates, reordering."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from renewals.faststar.signatures import compute_signature
from renewals.sandbox.testing import RunningSandbox
from renewals.sandbox.testing import envelope_data as data
from tests.support.waiting import wait_for

SECRET = "whsec_test_receiver"


class Receiver:
    """A webhook endpoint on a loopback port recording every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []  # answered in order; 200 once exhausted
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.requests.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def wait_for(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        """The requests received once there are at least ``count`` of them."""

        def received() -> list[tuple[dict[str, str], bytes]]:
            with self._lock:
                return list(self.requests)

        return wait_for(received, lambda got: len(got) >= count, what=f"{count} webhook request(s)")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(sandbox: RunningSandbox) -> Iterator[Receiver]:
    endpoint = Receiver()
    sandbox.configure(webhook_url=endpoint.url, webhook_secret=SECRET, webhook_retry_base_s=0.05)
    yield endpoint
    sandbox.reset()  # stop any retries before the receiver goes away
    endpoint.close()


def settled_delivery(sandbox: RunningSandbox, state: str) -> dict[str, Any]:
    """The first event's delivery record once it reaches ``state``.

    The sandbox records the outcome only after the receiver has answered, so a test that
    has just seen the request arrive must wait for the record; reading it at once races.
    """
    event = wait_for(
        lambda: sandbox.events()[0],
        lambda e: e["delivery"]["state"] == state,
        what=f"the event's delivery state to become {state!r}",
    )
    delivery: dict[str, Any] = event["delivery"]
    return delivery


def charge(sandbox: RunningSandbox, api: httpx.Client, number: str = "4242424242424242") -> None:
    customer_id, card_id = sandbox.save_card(number)
    api.post(
        f"/public/customers/{customer_id}/charge",
        json={"payment_method_id": card_id, "amount": 1999, "currency": "USD", "off_session": True},
    )


def test_event_is_delivered_signed(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    charge(sandbox, api)
    [(headers, body)] = receiver.wait_for(1)
    event = json.loads(body)
    [executed] = sandbox.charges()
    assert event["id"].startswith("evt_")
    assert event["type"] == "payment.succeeded"
    assert (event["livemode"], event["api_version"]) == (False, "v1")
    assert isinstance(event["created"], int)
    assert event["data"]["payment_id"] == executed["payment_intent_id"]
    assert (event["data"]["amount"], event["data"]["currency"]) == (1999, "USD")
    assert event["data"]["status"] == "succeeded"
    assert event["data"]["customer_id"] == executed["customer_id"]

    assert headers["X-Webhook-ID"] == event["id"]
    timestamp = int(headers["X-Webhook-Timestamp"])
    assert abs(timestamp - time.time()) < 60
    assert headers["X-Webhook-Signature"] == (
        f"t={timestamp},v1={compute_signature(SECRET, timestamp, body)}"
    )
    assert compute_signature("wrong secret", timestamp, body) not in headers["X-Webhook-Signature"]

    delivery = settled_delivery(sandbox, "delivered")
    assert (delivery["attempts"], delivery["deliveries"], delivery["last_status"]) == (1, 1, 200)
    [logged] = sandbox.events()
    assert {k: v for k, v in logged.items() if k != "delivery"} == event


def test_declines_emit_payment_failed(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    charge(sandbox, api, "4000000000009995")
    [(_, body)] = receiver.wait_for(1)
    event = json.loads(body)
    assert event["type"] == "payment.failed"
    assert event["data"]["payment_id"].startswith("pi_")
    assert event["data"]["status"] == "failed"
    assert sandbox.charges() == []


def test_failed_deliveries_are_retried_until_2xx(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    charge(sandbox, api)
    deliveries = receiver.wait_for(3)
    assert len({headers["X-Webhook-ID"] for headers, _ in deliveries}) == 1
    assert len({body for _, body in deliveries}) == 1
    delivery = settled_delivery(sandbox, "delivered")
    assert (delivery["attempts"], delivery["last_status"]) == (3, 200)


def test_delivery_gives_up_after_max_attempts(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    sandbox.configure(webhook_max_attempts=2)
    receiver.statuses = [500] * 10
    charge(sandbox, api)
    # "failed" is recorded after the last answer and nothing is scheduled after it, so once
    # it is seen the receiver's count is final: no sleep "past another retry" is needed.
    delivery = settled_delivery(sandbox, "failed")
    assert (delivery["attempts"], delivery["last_status"]) == (2, 500)
    assert len(receiver.wait_for(2)) == 2


def test_unreachable_endpoint_is_retried(sandbox: RunningSandbox, api: httpx.Client) -> None:
    closed = Receiver()
    closed.close()  # nothing listens on its port any more
    sandbox.configure(webhook_url=closed.url, webhook_max_attempts=2, webhook_retry_base_s=0.01)
    charge(sandbox, api)
    delivery = settled_delivery(sandbox, "failed")
    assert delivery["attempts"] == 2
    assert delivery["last_error"]


def test_duplicates_switch_sends_each_event_twice(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    sandbox.configure(webhook_duplicates=True)
    charge(sandbox, api)
    (first_headers, first_body), (second_headers, second_body) = receiver.wait_for(2)
    assert first_headers["X-Webhook-ID"] == second_headers["X-Webhook-ID"]
    assert first_body == second_body
    # The copy is counted after the receiver answered it: wait for the count, not the state
    # (the state already read "delivered" after the first copy).
    wait_for(
        lambda: sandbox.events()[0]["delivery"],
        lambda d: d["deliveries"] == 2,
        what="both copies to be counted",
    )


def test_reorder_switch_delivers_batches_newest_first(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    sandbox.configure(webhook_reorder=True, webhook_reorder_window_s=0.4)
    customer_id, card_id = sandbox.save_card()
    for amount in (100, 200, 300):
        data(
            api.post(
                f"/public/customers/{customer_id}/charge",
                json={"payment_method_id": card_id, "amount": amount, "currency": "USD"},
            )
        )
    received = [json.loads(body)["data"]["amount"] for _, body in receiver.wait_for(3)]
    assert received == [300, 200, 100]
    assert [e["data"]["amount"] for e in sandbox.events()] == [100, 200, 300]


def test_without_webhook_url_events_are_only_logged(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    charge(sandbox, api)
    [event] = sandbox.events()
    assert event["type"] == "payment.succeeded"
    assert event["delivery"]["state"] == "not_sent"


DOCUMENTED = {"payment_id", "amount", "currency", "status"}


def test_payment_events_carry_sandbox_extras_by_default(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    charge(sandbox, api)
    [(_, body)] = receiver.wait_for(1)
    event_data = json.loads(body)["data"]
    [executed] = sandbox.charges()
    assert set(event_data) > DOCUMENTED
    assert event_data["customer_id"] == executed["customer_id"]
    assert event_data["payment_method_id"] == executed["payment_method_id"]
    assert "checkout_session_id" in event_data


def test_documented_shape_switch_sends_exactly_the_documented_keys(
    sandbox: RunningSandbox, api: httpx.Client, receiver: Receiver
) -> None:
    sandbox.configure(webhook_documented_shape=True)
    charge(sandbox, api)
    charge(sandbox, api, "4000000000009995")  # a decline: payment.failed
    deliveries = receiver.wait_for(2)
    events = [json.loads(body) for _, body in deliveries]
    assert sorted(e["type"] for e in events) == ["payment.failed", "payment.succeeded"]
    for event in events:
        assert set(event["data"]) == DOCUMENTED, event
    [succeeded] = [e for e in events if e["type"] == "payment.succeeded"]
    [executed] = sandbox.charges()
    assert succeeded["data"] == {
        "payment_id": executed["payment_intent_id"],
        "amount": 1999,
        "currency": "USD",
        "status": "succeeded",
    }
    # the event log shows what was sent, not the extras behind it
    assert [set(e["data"]) for e in sandbox.events()] == [DOCUMENTED, DOCUMENTED]


def test_documented_shape_switch_strips_checkout_payments_too(
    sandbox: RunningSandbox, api: httpx.Client
) -> None:
    sandbox.configure(webhook_documented_shape=True)
    customer = data(api.post("/public/customers", json={"email": "jane@example.com"}))
    session = data(
        api.post(
            "/public/checkout/sessions",
            json={
                "mode": "payment",
                "line_items": [{"ad_hoc_amount": 500, "ad_hoc_currency": "EUR"}],
                "customer_id": customer["id"],
            },
        )
    )
    completed = sandbox.complete_checkout(session["id"])
    [event] = sandbox.events()
    assert event["data"] == {
        "payment_id": completed["payment_intent_id"],
        "amount": 500,
        "currency": "EUR",
        "status": "succeeded",
    }
