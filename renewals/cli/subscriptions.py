"""``renewals subscriptions add|show|list``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import select

from renewals.cli.commands import show_halt
from renewals.cli.root import main, settings_or_exit
from renewals.cli.tables import emit, read_engine, table, when
from renewals.config import Settings
from renewals.domain.periods import Interval
from renewals.domain.states import SubscriptionStatus
from renewals.faststar import FastStarClient
from renewals.logs import luhn_valid
from renewals.models import Subscription
from renewals.models.db import unit_of_work
from renewals.services.subscriptions import (
    SavedCard,
    check_subscription_input,
    create_subscription,
    list_subscriptions,
    subscription_views,
)
from renewals.services.views import timeline


def _renews_at(ctx: click.Context, param: click.Parameter, value: str) -> datetime:
    # A click callback, so that a bad value is refused naming --renews-at, before anything
    # else happens.
    if value == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected ISO-8601 (e.g. 2026-12-01T09:00:00Z) or 'now'") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2026-12-01T09:00:00Z")
    return parsed.astimezone(UTC)


def _card_number(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # Checked here, before the sandbox is asked to create a customer: a typo must not leave
    # an orphan customer behind. The number itself is never echoed.
    if value is None:
        return None
    digits = value.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise click.BadParameter("a card number is 12 to 19 digits (spaces allowed)")
    if not luhn_valid(digits):
        raise click.BadParameter("not a valid card number (its check digit is wrong)")
    return digits


def _client(settings: Settings) -> FastStarClient:
    return FastStarClient(settings.faststar_base_url, settings.faststar_api_key.get_secret_value())


def save_sandbox_card(settings: Settings, email: str, name: str | None, number: str) -> SavedCard:
    """Sandbox only: run the seed guide's sequence to save ``number`` for a new customer."""
    from renewals.sandbox.client import save_card

    customer_id, payment_method_id = save_card(
        settings.faststar_base_url,
        settings.faststar_api_key.get_secret_value(),
        email=email,
        name=name or email.partition("@")[0],
        number=number,
    )
    return _lookup_card(settings, customer_id, payment_method_id)


def _lookup_card(settings: Settings, customer_id: str, payment_method_id: str) -> SavedCard:
    with _client(settings) as client:
        cards = client.list_payment_methods(customer_id)
    for card in cards:
        if card.id == payment_method_id:
            return SavedCard(
                customer_id=customer_id,
                payment_method_id=card.id,
                brand=card.brand,
                last4=card.last4,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
            )
    raise click.ClickException(f"{payment_method_id} is not a saved card of {customer_id}")


def _list_table(views: list[dict[str, Any]]) -> str:
    return table(
        ["id", "status", "amount", "every", "next action", "at", "decline"],
        [
            [
                v["id"],
                v["status"],
                v["amount_display"],
                f"{v['interval_count']} {v['interval']}",
                v["next_action"],
                when(v["next_action_at"]),
                v["decline_reason"],
            ]
            for v in views
        ],
    )


def _show_text(view: dict[str, Any]) -> str:
    facts = [
        ("subscription", view["id"]),
        ("status", view["status"]),
        ("amount", f"{view['amount_display']} every {view['interval_count']} {view['interval']}"),
        ("customer", f"{view['customer_id']} (card {view['payment_method_id']})"),
        ("next action", f"{view['next_action'] or '-'} {when(view['next_action_at']) or ''}"),
        ("decline", view["decline_reason"] or "-"),
    ]
    head = "\n".join(f"{name + ':':<14}{value}".rstrip() for name, value in facts)
    if not view["timeline"]:
        return head + "\n\nno history yet"
    rows = [[when(e["at"]), e["kind"], e["text"]] for e in view["timeline"]]
    return head + "\n\n" + table(["at", "what", "detail"], rows)


@main.group()
def subscriptions() -> None:
    """Create and inspect subscriptions."""


@subscriptions.command("add")
@click.option("--email", required=True)
@click.option("--name", default=None)
@click.option(
    "--card",
    "card_number",
    default=None,
    callback=_card_number,
    help="Sandbox only: a test card number.",
)
@click.option("--customer", "customer_id", default=None, help="An existing FastStar cus_ id.")
@click.option("--payment-method", "payment_method_id", default=None, help="Its saved pm_ id.")
@click.option("--amount", required=True, type=int, help="In minor units (1999 = 19.99 USD).")
@click.option("--currency", required=True)
@click.option("--interval", required=True, type=click.Choice([i.value for i in Interval]))
@click.option("--interval-count", default=1, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--renews-at",
    default="now",
    show_default=True,
    callback=_renews_at,
    help="ISO-8601 instant or 'now'.",
)
@click.option("--price-id", default=None, help="Catalog price_ id (Merchant-of-Record).")
@click.option("--json", "as_json", is_flag=True)
def add(
    email: str,
    name: str | None,
    card_number: str | None,
    customer_id: str | None,
    payment_method_id: str | None,
    amount: int,
    currency: str,
    interval: str,
    interval_count: int,
    renews_at: datetime,
    price_id: str | None,
    as_json: bool,
) -> None:
    """Add a subscription; prints its id (or the object with --json)."""
    settings = settings_or_exit()
    if (card_number is None) == (customer_id is None and payment_method_id is None):
        raise click.UsageError("give either --card, or --customer with --payment-method")
    if card_number is None and not (customer_id and payment_method_id):
        raise click.UsageError("--customer and --payment-method go together")
    # Everything is checked before FastStar is called: a refused subscription leaves no
    # customer or card behind. Failures are explained by the root group (cli/errors.py).
    check_subscription_input(
        settings=settings,
        email=email,
        amount=amount,
        currency=currency,
        interval=interval,
        interval_count=interval_count,
        renews_at=renews_at,
        price_id=price_id,
    )
    engine = read_engine(settings)
    with unit_of_work(engine) as session:
        # A database that is missing, unreachable or not migrated is reported now, before
        # FastStar holds a customer that nothing of ours would point at.
        session.execute(select(Subscription.id).limit(1))
    if card_number is not None:
        card = save_sandbox_card(settings, email, name, card_number)
    else:
        assert customer_id is not None and payment_method_id is not None
        card = _lookup_card(settings, customer_id, payment_method_id)
    with unit_of_work(engine) as session:
        sub = create_subscription(
            session,
            now=datetime.now(UTC),
            settings=settings,
            email=email,
            name=name,
            card=card,
            amount=amount,
            currency=currency,
            interval=interval,
            interval_count=interval_count,
            renews_at=renews_at,
            price_id=price_id,
        )
        view = subscription_views(session, [sub])[0]
    if as_json:
        emit(view, True, str)
    else:
        click.echo(view["id"])


@subscriptions.command("show")
@click.argument("subscription_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show(subscription_id: int, as_json: bool) -> None:
    """Show one subscription: amount, next action, and its history in time order."""
    settings = settings_or_exit()
    with unit_of_work(read_engine(settings)) as session:
        show_halt(session)
        sub = session.get(Subscription, subscription_id)
        if sub is None:
            raise click.ClickException(f"no subscription {subscription_id}")
        view = {**subscription_views(session, [sub])[0], "timeline": timeline(session, sub.id)}
    emit(view, as_json, _show_text)


@subscriptions.command("list")
@click.option("--status", type=click.Choice([s.value for s in SubscriptionStatus]))
@click.option("--json", "as_json", is_flag=True)
def list_(status: str | None, as_json: bool) -> None:
    """List subscriptions (optionally in one status) with their next action."""
    settings = settings_or_exit()
    with unit_of_work(read_engine(settings)) as session:
        show_halt(session)
        views = subscription_views(session, list_subscriptions(session, status))
    if not views and not as_json:
        click.echo(f"no subscriptions{f' with status {status}' if status else ''}")
        return
    emit(views, as_json, _list_table)
