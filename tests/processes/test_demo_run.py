"""``renewals run`` end to end, as a newcomer runs it: real sandbox, webhook receiver, worker
and scheduler processes on the embedded defaults, in a folder of its own.

The demo plays the customer whose card asks for authentication: once the 402 email is
written, it completes the Checkout Session and the sandbox's signed ``payment.succeeded``
webhook, through our receiver and a worker, brings the subscription back to ``active``.
``--until-settled`` ends the run on that condition (``--exit-after`` bounds it), so the test
waits on the demo's own condition, never on a duration. A second start re-uses the sandbox's
state file and the database: no customer or subscription is created twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from renewals.cli.demo_view import DEMO_CARDS, card_label
from renewals.models import InboxEvent, Subscription
from renewals.models.db import get_engine, unit_of_work
from renewals.services.demo import demo_rows
from renewals.services.subscriptions import list_subscriptions, subscription_views
from tests.support.inline import audit_actions
from tests.support.smtp import free_port

SCA_LAST4 = "3184"
RUN_DEADLINE_S = 150


def _run_demo(folder: Path, sandbox_port: int, webhooks_port: int) -> str:
    # Only what the demo needs: the test session's own RENEWALS_* variables (test databases,
    # brokers) must not leak into the embedded defaults.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENEWALS_")}
    env["RENEWALS_FASTSTAR_BASE_URL"] = f"http://127.0.0.1:{sandbox_port}/api/v1"
    args = ["run", "--webhooks-port", str(webhooks_port), "--until-settled"]
    result = subprocess.run(
        [sys.executable, "-m", "renewals", *args, "--exit-after", str(RUN_DEADLINE_S)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_DEADLINE_S + 60,
        check=False,
    )
    logs = "".join(
        f"\n== {log.name}\n{log.read_text(errors='replace')[-3000:]}"
        for log in sorted((folder / "var" / "logs").glob("*.log"))
    )
    assert result.returncode == 0, result.stdout + result.stderr + logs
    return result.stdout


def _frames(output: str) -> list[str]:
    """The live view's blocks (on a pipe each starts with ``--- HH:MM:SS``), without that
    line: what the viewer sees change."""
    blocks = output.split("\n--- ")[1:]
    return [block.split("\n", 1)[1].split("\nemails written:")[0] for block in blocks]


def _sandbox_rows(folder: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / "var" / "sandbox.db") as db:
        return db.execute(query).fetchall()


@pytest.mark.slow
@pytest.mark.timeout(2 * RUN_DEADLINE_S + 180)
def test_the_demo_tells_the_story_and_restarts_on_its_state(tmp_path: Path) -> None:
    sandbox_port, webhooks_port = free_port(), free_port()
    output = _run_demo(tmp_path, sandbox_port, webhooks_port)

    # The header says what runs where; each row names its test card.
    assert "database  sqlite:///var/renewals.db" in output
    assert "broker    sqla+sqlite:///var/broker.db" in output
    assert f"127.0.0.1:{sandbox_port}/api/v1 (state kept in var/sandbox.db)" in output
    assert f"webhooks  http://127.0.0.1:{webhooks_port}/webhooks/faststar" in output
    for number in DEMO_CARDS:
        assert card_label(number[-4:]) in output
    assert "4000 0027 6000 3184  authentication required (402)" in output
    frames = _frames(output)
    assert len(frames) >= 2
    repeated = [a for a, b in pairwise(frames) if a == b]
    assert repeated == [], "a frame was drawn again without a change"

    # The customer came back on-session, booked from the sandbox's webhook.
    engine = get_engine(f"sqlite:///{tmp_path}/var/renewals.db")
    sca = _sca_view(engine)
    [renewal] = sca["renewals"]
    assert sca["status"] == "active"
    assert renewal["status"] == "succeeded"
    [(checkout_charge,)] = _sandbox_rows(
        tmp_path, "SELECT body FROM charges WHERE json_extract(body, '$.source') = 'checkout'"
    )
    paid = json.loads(str(checkout_charge))["payment_intent_id"]
    assert renewal["payment_intent_id"] == paid
    assert audit_actions(engine, sca["id"]).count("renewal_paid_on_session") == 1
    with unit_of_work(engine) as session:
        booked_by = session.scalars(
            select(InboxEvent.status).where(InboxEvent.payment_intent_id == paid)
        ).all()
    assert booked_by == ["processed"]
    assert f"#{sca['id']} action_required -> active" in output

    # The 402 email was written, and the summary lists it with the commands to try next.
    [action_email] = (tmp_path / "var" / "mail").glob("*action_required*.eml")
    summary = output.split("\nemails written:\n", 1)[1]
    assert f"  var/mail/{action_email.name}\n" in summary
    for command in ("subscriptions list", f"subscriptions show {sca['id']}", "report"):
        assert f"renewals {command} " in summary
    for command in ("unknown", "reviews", "command ID"):
        assert f"renewals {command} " in summary

    # A second start re-uses the sandbox's state and the database.
    customers = _sandbox_rows(tmp_path, "SELECT id FROM objects WHERE kind = 'customer'")
    charges = _sandbox_rows(tmp_path, "SELECT seq FROM charges")
    assert len(customers) == len(DEMO_CARDS)
    again = _run_demo(tmp_path, sandbox_port, webhooks_port)
    assert "the demo subscriptions exist already: re-using them" in again
    assert _sandbox_rows(tmp_path, "SELECT id FROM objects WHERE kind = 'customer'") == customers
    assert _sandbox_rows(tmp_path, "SELECT seq FROM charges") == charges
    with unit_of_work(engine) as session:
        assert len(list_subscriptions(session)) == len(DEMO_CARDS)
    assert _sca_view(engine)["status"] == "active"
    assert "no email was written in this run" in again


def _sca_view(engine: Engine) -> dict[str, Any]:
    """``subscriptions show --json`` of the subscription on the authentication card."""
    with unit_of_work(engine) as session:
        [sub_id] = [r.subscription_id for r in demo_rows(session) if r.last4 == SCA_LAST4]
        [view] = subscription_views(session, [session.get_one(Subscription, sub_id)])
    return view
