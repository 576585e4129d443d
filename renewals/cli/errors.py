"""One place that turns the failures people meet into one or two plain lines.

:class:`FriendlyGroup` (the root ``renewals`` group) catches whatever a command raises and
prints :func:`explain`'s message with exit status 1, instead of a traceback. Commands do not
catch these errors themselves. ``--debug`` or ``RENEWALS_LOG_LEVEL=DEBUG`` lets the exception
through, traceback and all, for whoever wants to see it.

Messages name the variable to fix (``RENEWALS_DATABASE_URL`` ...) and show URLs without their
password; every message passes the log redactor last, so a secret, a card number or a full
email address echoed by a server never reaches the terminal either.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import click

from renewals.config import ENV_PREFIX, ConfigError, Settings, load_settings

DB_VAR = f"{ENV_PREFIX}DATABASE_URL"
BROKER_VAR = f"{ENV_PREFIX}BROKER_URL"
KEY_VAR = f"{ENV_PREFIX}FASTSTAR_API_KEY"
BASE_VAR = f"{ENV_PREFIX}FASTSTAR_BASE_URL"
UPGRADE = "run `renewals db upgrade`"


class DatabaseMissing(Exception):
    """The configured SQLite file does not exist (read commands do not create it)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def wants_traceback(ctx: click.Context) -> bool:
    root = ctx.find_root()
    if root.params.get("debug"):
        return True
    return os.environ.get(f"{ENV_PREFIX}LOG_LEVEL", "").strip().upper() == "DEBUG"


class FriendlyGroup(click.Group):
    """A click group whose subcommands end in a clear message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if wants_traceback(ctx):
                raise
            raise click.ClickException(explain(exc)) from None


def _settings() -> Settings | None:
    try:
        return load_settings()
    except ConfigError:
        return None


def safe_url(url: str) -> str:
    """``url`` without its password (database and broker URLs may carry one)."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _database(exc: Exception, settings: Settings | None) -> str | None:
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError

    url = safe_url(settings.database_url) if settings else DB_VAR
    if isinstance(exc, DatabaseMissing):
        return f"no database at {exc.path} ({DB_VAR}): {UPGRADE} to create it"
    if isinstance(exc, NoSuchModuleError) or (
        isinstance(exc, ModuleNotFoundError) and exc.name in ("psycopg2", "psycopg")
    ):
        return (
            f"{DB_VAR} names a database driver that is not installed ({_first_line(exc)}); "
            "write postgresql+psycopg://…"
        )
    if not isinstance(exc, DBAPIError):
        return None
    detail = _first_line(exc.orig) if exc.orig is not None else _first_line(exc)
    lowered = detail.lower()
    code = type(exc.orig).__name__ if exc.orig is not None else ""
    if "no such table" in lowered or code == "UndefinedTable":
        return f"the database at {url} is not migrated ({detail})\n{UPGRADE}"
    if "no such column" in lowered or code == "UndefinedColumn":
        return f"the database at {url} is behind the migrations ({detail})\n{UPGRADE}"
    if "does not exist" in lowered and "database" in lowered:
        return f"the database in {DB_VAR} does not exist ({detail})\ncreate it, then {UPGRADE}"
    if "password authentication failed" in lowered or ("role" in lowered and "exist" in lowered):
        return f"the database refused the login ({detail}); check the user and password in {DB_VAR}"
    if "unable to open database file" in lowered:
        return f"cannot open the SQLite file of {DB_VAR} ({url}): {detail}"
    if exc.connection_invalidated or _looks_unreachable(lowered):
        return f"cannot reach the database at {url} ({DB_VAR}): {detail}"
    return f"database error at {url}: {detail}"


def _looks_unreachable(lowered: str) -> bool:
    return any(
        word in lowered
        for word in ("connection refused", "could not connect", "timeout", "timed out", "host")
    )


def _broker(exc: Exception, settings: Settings | None) -> str | None:
    import kombu.exceptions

    broker_errors: tuple[type[BaseException], ...] = (kombu.exceptions.OperationalError,)
    try:
        import redis.exceptions

        broker_errors += (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    if not isinstance(exc, broker_errors):
        return None
    url = safe_url(settings.broker_url) if settings else BROKER_VAR
    return f"cannot reach the broker at {url} ({BROKER_VAR}): {_first_line(exc)}"


def _faststar(exc: Exception, settings: Settings | None) -> str | None:
    import httpx

    from renewals.faststar import (
        FastStarConfigurationError,
        FastStarError,
        FastStarNotSentError,
        FastStarRequestRejected,
    )
    from renewals.sandbox.client import SandboxError

    base = settings.faststar_base_url if settings else BASE_VAR
    status = getattr(exc, "status_code", None)
    if isinstance(exc, FastStarError | SandboxError) and status in (401, 403):
        return f"FastStar refused the API key (HTTP {status}): check {KEY_VAR}"
    if isinstance(exc, httpx.TransportError) or (
        isinstance(exc, FastStarNotSentError) and status is None
    ):
        return f"cannot reach FastStar at {base} ({BASE_VAR}): {_first_line(exc)}"
    if isinstance(exc, FastStarConfigurationError):
        return f"FastStar at {base}: {_first_line(exc)}; check {BASE_VAR} and {KEY_VAR}"
    if isinstance(exc, FastStarNotSentError):
        wait = f"; try again in {exc.retry_after:g} s" if exc.retry_after else ""
        return f"FastStar did not take the request (HTTP {status}){wait}"
    if isinstance(exc, FastStarRequestRejected):
        return f"FastStar refused {exc.endpoint}: {exc.server_message or _first_line(exc)}"
    if isinstance(exc, FastStarError):
        return (
            f"FastStar's answer is unclear ({_first_line(exc)}); nothing was assumed, "
            "look before trying again"
        )
    if isinstance(exc, SandboxError):
        return f"the FastStar sandbox refused: {_first_line(exc)}"
    return None


def _input(exc: Exception, settings: Settings | None) -> str | None:
    from renewals.domain.money import InvalidChargeError
    from renewals.domain.subscription_input import SubscriptionInputError

    if isinstance(exc, ConfigError | InvalidChargeError | SubscriptionInputError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return None


_EXPLAINERS: tuple[Callable[[Exception, Settings | None], str | None], ...] = (
    _database,
    _broker,
    _faststar,
    _input,
)


def explain(exc: Exception) -> str:
    """The message for ``exc``: what went wrong and, where one exists, what to do."""
    from renewals.logs import Redactor

    settings = _settings()
    message = next(
        (text for explainer in _EXPLAINERS if (text := explainer(exc, settings)) is not None),
        None,
    )
    if message is None:
        message = (
            f"unexpected error: {type(exc).__name__}: {_first_line(exc)}\n"
            "run again with --debug for the traceback"
        )
    return Redactor(settings.secrets() if settings else ()).text(message)
