"""Catalog products and prices (fields from Part A).

Part B, ours: GET returns every object as a list (FastStar documents no pagination);
``unit_amount`` may be 0; ``type`` defaults to ``one_time``; ``recurring_interval_count``
defaults to 1; recurring fields on a one-time price are rejected rather than ignored.
"""

from __future__ import annotations

from renewals.sandbox.ids import new_id
from renewals.sandbox.models import Price, Product
from renewals.sandbox.request import ApiRequest
from renewals.sandbox.responses import Reply, bad_request, ok
from renewals.sandbox.state import SandboxState, now
from renewals.sandbox.validation import (
    optional_int,
    optional_str,
    optional_str_dict,
    optional_str_list,
    require_choice,
    require_currency,
    require_int,
    require_str,
)

PRICE_TYPES = ("one_time", "recurring")
INTERVALS = ("day", "week", "month", "year")
_RECURRING_FIELDS = ("recurring_interval", "recurring_interval_count", "trial_period_days")


def create_product(state: SandboxState, request: ApiRequest) -> Reply:
    body = request.body
    product = Product(
        id=new_id("prod"),
        name=require_str(body, "name"),
        description=optional_str(body, "description"),
        tax_category=optional_str(body, "tax_category"),
        images=optional_str_list(body, "images"),
        metadata=optional_str_dict(body, "metadata"),
        created=now(),
    )
    state.save("product", product)
    return ok(product.public(), "Product created")


def list_products(state: SandboxState, request: ApiRequest) -> Reply:
    return ok([product.public() for product in state.products.values()])


def create_price(state: SandboxState, request: ApiRequest) -> Reply:
    body = request.body
    product_id = require_str(body, "product_id")
    if product_id not in state.products:
        raise bad_request(f"No such product: {product_id}")
    currency = require_currency(body, "currency")
    unit_amount = require_int(body, "unit_amount", minimum=0)
    price_type = require_choice(body, "type", PRICE_TYPES, default="one_time")
    interval: str | None = None
    interval_count: int | None = None
    trial_days: int | None = None
    if price_type == "recurring":
        interval = require_choice(body, "recurring_interval", INTERVALS, default=None)
        interval_count = optional_int(body, "recurring_interval_count", minimum=1) or 1
        trial_days = optional_int(body, "trial_period_days", minimum=0)
    elif any(body.get(name) is not None for name in _RECURRING_FIELDS):
        raise bad_request("recurring_* and trial_period_days need type recurring")
    price = Price(
        id=new_id("price"),
        product_id=product_id,
        currency=currency,
        unit_amount=unit_amount,
        type=price_type,
        recurring_interval=interval,
        recurring_interval_count=interval_count,
        trial_period_days=trial_days,
        created=now(),
    )
    state.save("price", price)
    return ok(price.public(), "Price created")


def list_prices(state: SandboxState, request: ApiRequest) -> Reply:
    return ok([price.public() for price in state.prices.values()])
