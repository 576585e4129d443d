"""Rendering emails from Jinja2 templates: an autoescaped HTML part and a plain-text part.

Branding (merchant name, support address) comes from one place, the settings; amounts are
formatted by :func:`renewals.domain.money.format_amount` with each currency's minor units.
"""

from __future__ import annotations

import email.policy
import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from renewals.config import Settings
from renewals.domain.money import format_amount

SUBJECTS = {
    "action_required": "Action required: confirm your {amount} payment to {merchant}",
    "action_reminder": "Reminder: your {amount} payment to {merchant} still needs confirming",
    "upcoming_renewal": "Your {merchant} subscription renews soon: {amount}",
    "card_expiring": "Your card expires before your next {amount} payment to {merchant}",
    "receipt": "Receipt: {amount} paid to {merchant}",
    "payment_failed": "Your {amount} payment to {merchant} did not go through",
    "final_failure": "We could not collect {amount} for your {merchant} subscription",
}


class InvalidEmail(ValueError):
    """The message cannot be built as asked (header injection, malformed address)."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


class _Policy(email.policy.EmailPolicy):
    """The SMTP policy (CRLF, lines up to 998 characters), writing a header that needs no
    folding as it is.

    The standard policy re-folds every header from its parse tree when the message is
    written, which was most of the cost of writing one of our emails. A header whose value
    is ASCII, on one line, short enough and free of anything that looks like an encoded word
    comes out of that folding unchanged, so it is written directly; every other header goes
    through the standard folding. A test compares both on every email.
    """

    def fold(self, name: str, value: Any) -> str:
        plain = _unfolded(name, value, self.max_line_length)
        return plain + self.linesep if plain is not None else super().fold(name, value)

    def fold_binary(self, name: str, value: Any) -> bytes:
        plain = _unfolded(name, value, self.max_line_length)
        if plain is None:
            return super().fold_binary(name, value)
        return (plain + self.linesep).encode("ascii")


def _unfolded(name: str, value: Any, max_line_length: int | None) -> str | None:
    """``name: value`` when writing it as it is matches the standard folding, else None."""
    if not hasattr(value, "name"):  # a raw value (from a parsed source): the standard path
        return None
    text = str(value)
    line = f"{name}: {text}"
    if (
        not line.isascii()
        or (max_line_length and len(line) > max_line_length)
        or "=?" in text
        or text != text.strip()
        or any(c in text for c in "\r\n\t\x00")
        or "  " in text
    ):
        return None
    return line


SMTP_POLICY = _Policy(linesep="\r\n", max_line_length=998)


def _money(amount: int, currency: str) -> str:
    return format_amount(amount, currency)


def _when(value: str | datetime) -> str:
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    return instant.strftime("%d %B %Y, %H:%M UTC")


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("renewals.notifications", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # Templates ship with the package and never change under a running process: no stat
        # of the template file on every render.
        auto_reload=False,
    )
    env.filters["money"] = _money
    env.filters["when"] = _when
    return env


def compile_templates() -> None:
    """Compile every template now (a worker does it before forking its pool)."""
    env = _environment()
    for kind in SUBJECTS:
        env.get_template(f"{kind}.txt")
        env.get_template(f"{kind}.html")


def render(kind: str, context: dict[str, Any], settings: Settings) -> RenderedEmail:
    env = _environment()
    full = {**context, "merchant": settings.merchant_name, "support": settings.support_email}
    subject = SUBJECTS[kind].format(
        amount=format_amount(int(context["amount"]), str(context["currency"])),
        merchant=settings.merchant_name,
    )
    return RenderedEmail(
        subject=subject,
        text=env.get_template(f"{kind}.txt").render(full),
        html=env.get_template(f"{kind}.html").render(full),
    )


def _header(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise InvalidEmail(f"{what} contains a line break (header injection refused)")
    return value


def _address(value: str, what: str) -> Address:
    _header(value, what)
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, MessageError) as exc:  # the parser raises all three
        raise InvalidEmail(f"{what} is not a valid address: {exc}") from None
    if not address.username or "." not in address.domain:
        raise InvalidEmail(f"{what} is not a valid address")
    return address


def build_message(
    rendered: RenderedEmail,
    *,
    recipient: str,
    dedupe_key: str,
    queued_at: datetime,
    settings: Settings,
) -> EmailMessage:
    """The message for one outbox row (``dedupe_key``, queued at ``queued_at``), or
    :class:`InvalidEmail` when a header or an address cannot be used as it is."""
    # Long subjects are not folded: some folds start the header's value on a new line, which
    # clients then show with a leading blank. RFC 5322 allows 998 characters per line.
    message = EmailMessage(policy=SMTP_POLICY)
    message["Subject"] = _header(rendered.subject, "subject")
    message["From"] = Address(
        display_name=_header(settings.merchant_name, "merchant name"),
        addr_spec=str(_address(settings.mail_from, "sender address").addr_spec),
    )
    message["To"] = _address(recipient, "recipient")
    message["Date"] = format_datetime(datetime.now().astimezone())
    domain = settings.mail_from.rpartition("@")[2] or "renewals.local"
    # Derived from the outbox row only, so a crash-window resend carries the same Message-ID
    # and the receiving side can recognise it; the queueing instant keeps rows of a
    # recreated database (whose ids start again) from reusing an old email's id.
    stamp = queued_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%f")
    message["Message-ID"] = f"<{dedupe_key.replace(':', '.')}.{stamp}@{domain}>"
    message["X-Renewals-Key"] = dedupe_key
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message
