"""The committed examples under docs/emails match the templates, and every HTML part is
well-formed markup with its link; the HTML escapes what it is given."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from renewals.config import Settings
from renewals.notifications.examples import LINK_KINDS, SAMPLES, render_examples, write_examples
from renewals.notifications.rendering import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "emails"
VOID = {"meta", "br", "img", "hr", "link", "input"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.links: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links += [value or "" for name, value in attrs if name == "href"]
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
            return
        self.open.pop()


def test_committed_examples_are_up_to_date(tmp_path: Path) -> None:
    written = write_examples(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in DOCS.iterdir())
    for path in written:
        assert path.read_text() == (DOCS / path.name).read_text(), (
            f"docs/emails/{path.name} is stale: run python -m renewals.notifications.examples"
        )


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_html_is_well_formed_and_carries_its_link(kind: str) -> None:
    email = render_examples()[kind]
    checker = _Checker()
    checker.feed(email.html)
    checker.close()
    assert checker.errors == []
    assert checker.open == []
    assert "mailto:support@example.com" in checker.links
    if kind in LINK_KINDS:
        assert SAMPLES[kind]["checkout_url"] in checker.links
        assert SAMPLES[kind]["checkout_url"] in email.text


def test_html_part_escapes_what_it_renders() -> None:
    context = {**SAMPLES["payment_failed"], "reason": "<script>alert(1)</script>"}
    email = render("payment_failed", context, Settings(merchant_name="A & B <Shop>"))
    assert "<script>" not in email.html
    assert "&lt;script&gt;" in email.html
    assert "A &amp; B &lt;Shop&gt;" in email.html
    assert "<script>alert(1)</script>" in email.text  # plain text is not HTML
