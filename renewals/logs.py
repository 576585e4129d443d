"""Logging: structlog for our code, the same processors for stdlib loggers (Celery, httpx,
SQLAlchemy), console output in development and JSON in production.

Every line passes :func:`redact` last before rendering, so API keys, webhook secrets, card
numbers (Luhn-checked digit runs) and email addresses never reach a log, whatever the level
and whoever logged them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from typing import IO, Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from renewals.config import Settings

# 13 to 19 digits, optionally grouped by spaces or dashes; not the fraction of a decimal
# number (durations in Celery's log lines are long digit runs after a dot).
# A run of 13-19 digits (spaces or dashes allowed between them) that stands alone: not glued
# to letters, digits, '_', '.' or '-' on either side, so that digit runs inside UUIDs, task
# ids, idempotency keys and decimal fractions are left alone.
_CARD_RUN = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)")
# FastStar-style keys and secrets; configured secrets are matched verbatim as well, since
# FastStar does not document a key format.
_KEYS = re.compile(
    r"\b((?:sk|pk|rk)_(?:test|live)_|whsec_)[A-Za-z0-9]+"
    r"|\b(seti_[A-Za-z0-9]+_secret_)[A-Za-z0-9]+"
)


# Cheap tests that let most strings skip a pattern: each pattern needs these to match at all.
_KEY_MARKERS = ("sk_", "pk_", "rk_", "whsec_", "seti_")
_CARD_DIGITS = 13
_WITHOUT_DIGITS = str.maketrans("", "", "0123456789")
_SHORTEST = 5  # "a@b.c"; secrets, keys and card numbers are longer
# Fields our own processors write (they replace whatever a caller passed under these names).
_OURS = frozenset({"timestamp", "level", "logger"})


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if luhn_valid(digits) else match.group(0)


class Redactor:
    """Scrubs secrets, card numbers and emails out of any string it is given."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def text(self, value: str) -> str:
        if len(value) < _SHORTEST:
            return value
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, "[secret]")
        if any(marker in value for marker in _KEY_MARKERS):
            value = _KEYS.sub(lambda m: (m.group(1) or m.group(2)) + "***", value)
        if "@" in value:
            value = _EMAIL.sub(r"***@\1", value)
        if len(value) - len(value.translate(_WITHOUT_DIGITS)) >= _CARD_DIGITS:
            value = _CARD_RUN.sub(_mask_card, value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        # Anything else (exceptions, URLs, ids) is rendered as text anyway: scrub that text.
        return self.text(str(value))

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        return {key: v if key in _OURS else self.value(v) for key, v in event_dict.items()}


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours under this key.
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging through one processor chain ending in redaction."""
    redactor = Redactor(settings.secrets())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
    ]
    renderer: Processor
    if settings.effective_log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # Celery installs its own handlers unless told not to; keep ours.
    for name in ("celery", "httpx", "httpcore", "sqlalchemy", "uvicorn", "kombu"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # httpx logs every request at INFO; our client logs each call itself (faststar.request,
    # at DEBUG), so httpx's lines only show when DEBUG is asked for.
    logging.getLogger("httpx").setLevel(
        logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING
    )


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact free text outside logging (e.g. an SMTP error stored on an outbox row)."""
    return Redactor(secrets).text(text)
