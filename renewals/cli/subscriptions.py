"""``renewals subscriptions add|show|list``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from renewals.cli.commands import show_halt
from renewals.cli.root import main, settings_or_exit
from renewals.config import Settings
from renewals.domain.money import InvalidChargeError
from renewals.domain.periods import Interval
from renewals.domain.states import SubscriptionStatus
from renewals.faststar import FastStarClient, FastStarError
from renewals.models import Subscription
from renewals.models.db import get_engine, unit_of_work
from renewals.services.subscriptions import (
    SavedCard,
    SubscriptionInputError,
    create_subscription,
    list_subscriptions,
    subscription_views,
)


def _renews_at(value: str) -> datetime:
    if value == "now":
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("expected ISO-8601 (e.g. 2026-12-01T09:00:00Z) or 'now'") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2026-12-01T09:00:00Z")
    return parsed.astimezone(UTC)


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


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    for sub in rows:
        click.echo(
            f"{sub['id']}\t{sub['status']}\t{sub['amount']} {sub['currency']}\t"
            f"every {sub['interval_count']} {sub['interval']}\tnext {sub['next_renewal_at']}"
        )
        for r in sub["renewals"]:
            click.echo(
                f"  {r['period_start']}\t{r['status']}\t{r['payment_intent_id'] or ''}"
                f"{r['checkout_url'] or ''}\t{len(r['attempts'])} attempt(s)"
            )


@main.group()
def subscriptions() -> None:
    """Create and inspect subscriptions."""


@subscriptions.command("add")
@click.option("--email", required=True)
@click.option("--name", default=None)
@click.option("--card", "card_number", default=None, help="Sandbox only: a test card number.")
@click.option("--customer", "customer_id", default=None, help="An existing FastStar cus_ id.")
@click.option("--payment-method", "payment_method_id", default=None, help="Its saved pm_ id.")
@click.option("--amount", required=True, type=int, help="In minor units (1999 = 19.99 USD).")
@click.option("--currency", required=True)
@click.option("--interval", required=True, type=click.Choice([i.value for i in Interval]))
@click.option("--interval-count", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--renews-at", default="now", show_default=True, help="ISO-8601 instant or 'now'.")
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
    renews_at: str,
    price_id: str | None,
    as_json: bool,
) -> None:
    """Add a subscription; prints its id (or the object with --json)."""
    settings = settings_or_exit()
    first = _renews_at(renews_at)
    if (card_number is None) == (customer_id is None and payment_method_id is None):
        raise click.UsageError("give either --card, or --customer with --payment-method")
    if card_number is None and not (customer_id and payment_method_id):
        raise click.UsageError("--customer and --payment-method go together")
    try:
        if card_number is not None:
            card = save_sandbox_card(settings, email, name, card_number)
        else:
            assert customer_id is not None and payment_method_id is not None
            card = _lookup_card(settings, customer_id, payment_method_id)
    except FastStarError as exc:
        raise click.ClickException(f"FastStar: {exc}") from None
    engine = get_engine(settings.database_url)
    try:
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
                renews_at=first,
                price_id=price_id,
            )
            view = subscription_views(session, [sub])[0]
    except (InvalidChargeError, SubscriptionInputError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _print(view, True)
    else:
        click.echo(view["id"])


@subscriptions.command("show")
@click.argument("subscription_id", type=int)
@click.option("--json", "as_json", is_flag=True)
def show(subscription_id: int, as_json: bool) -> None:
    """Show one subscription with its renewals and attempts."""
    settings = settings_or_exit()
    with unit_of_work(get_engine(settings.database_url)) as session:
        show_halt(session)
        sub = session.get(Subscription, subscription_id)
        if sub is None:
            raise click.ClickException(f"no subscription {subscription_id}")
        _print(subscription_views(session, [sub])[0], as_json)


@subscriptions.command("list")
@click.option("--status", type=click.Choice([s.value for s in SubscriptionStatus]))
@click.option("--json", "as_json", is_flag=True)
def list_(status: str | None, as_json: bool) -> None:
    """List subscriptions, optionally only those in one status."""
    settings = settings_or_exit()
    with unit_of_work(get_engine(settings.database_url)) as session:
        show_halt(session)
        views = subscription_views(session, list_subscriptions(session, status))
    _print(views, as_json)
