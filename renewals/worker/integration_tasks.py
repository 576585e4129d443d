"""The integration API as Celery tasks (stable names in :mod:`renewals.worker.names`,
documented in docs/integration.md), and the card-details fetch.

Each API task takes JSON keyword arguments (ids and amounts, never card data), runs the same
:class:`renewals.api.RenewalsAPI` method a backend would call in-process, and returns its
result as a dict: ``{"ok": true, ...}`` or ``{"ok": false, "code", "field", "error"}``. A
refusal is an answer, not a failure: the task is not retried (a create is idempotent on its
``external_id`` anyway, so a message delivered twice changes nothing the second time).
"""

from __future__ import annotations

import inspect
from typing import Any

import structlog
from celery import Task

from renewals.api import RenewalsAPI, RenewalsAPIError
from renewals.runtime import get_runtime
from renewals.services.cards import fetch_batch
from renewals.worker.celery_app import app
from renewals.worker.names import API_TASK_NAMES, CARD_DETAILS_TASK
from renewals.worker.publish import publish
from renewals.worker.tasks import enqueue

log = structlog.get_logger(__name__)


@app.task(name=CARD_DETAILS_TASK)
def fetch_details_task(holder: str | None = None) -> dict[str, int]:
    """One batch of card details; hands on to the next batch while cards wait."""
    runtime = get_runtime()
    done = fetch_batch(runtime.engine, runtime.faststar, runtime.clock, holder=holder)
    if done.more:
        publish(fetch_details_task, done.holder)
    return {"customers": done.customers, "filled": done.filled, "not_found": done.not_found}


def _cards_waiting() -> None:
    publish(fetch_details_task)


def _api() -> RenewalsAPI:
    runtime = get_runtime()
    return RenewalsAPI(
        runtime.engine,
        runtime.settings,
        faststar=runtime.faststar,
        clock=runtime.clock,
        actor="api:task",
        hand_out=enqueue,
        cards_waiting=_cards_waiting,
    )


def _api_task(operation: str) -> Task:  # type: ignore[type-arg]
    def run(**arguments: Any) -> dict[str, Any]:
        method = getattr(_api(), operation)
        args = () if operation == "create_subscription" else (arguments.pop("subscription", None),)
        try:
            inspect.signature(method).bind(*args, **arguments)
        except TypeError as exc:
            # Arguments the operation does not take: the caller's mistake, said plainly.
            return RenewalsAPIError("invalid", f"{operation}: {exc}").as_dict()
        try:
            result = method(*args, **arguments)
        except RenewalsAPIError as exc:
            log.info(
                "api_refused",
                operation=operation,
                code=exc.code,
                field=exc.field,
                error=exc.message,
            )
            return exc.as_dict()
        answer: dict[str, Any] = result.as_dict()
        return answer

    run.__name__ = run.__qualname__ = f"api_{operation}"
    return app.task(name=API_TASK_NAMES[operation])(run)


API_TASKS = {operation: _api_task(operation) for operation in API_TASK_NAMES}
