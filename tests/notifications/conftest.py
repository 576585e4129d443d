"""A real SMTP server for the notification tests, and settings that send through it."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from renewals.config import Settings
from tests.support.smtp import Mailbox, smtp_server


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def smtp_settings(settings: Settings, mailbox: Mailbox) -> Iterator[Settings]:
    with smtp_server(mailbox) as port:
        yield settings.model_copy(update={"mail_url": f"smtp://127.0.0.1:{port}"})


def plain_text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())
