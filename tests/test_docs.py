"""The repository stands alone: its docs point only inside it, and states.md keeps up.

README.md, docs/ and the package must not send a maintainer to files outside the
repository (the design notes it started from lived beside it, not in it). And docs/states.md
must name every status the state machines have, so adding a status without documenting it
fails here instead of leaving the page silently stale.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path

import pytest

from renewals.domain.states import AttemptStatus, RenewalStatus, SubscriptionStatus

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OUTSIDE_REFERENCES = ("../shared", "shared/design.md", "faststar-api.md", "/work/")


def _text_files() -> list[Path]:
    candidates = [ROOT / "README.md", *DOCS.rglob("*"), *(ROOT / "renewals").rglob("*")]
    return [
        path
        for path in candidates
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]


def test_the_scan_covers_readme_docs_and_package() -> None:
    scanned = {path.relative_to(ROOT).as_posix() for path in _text_files()}
    for expected in ("README.md", "docs/design.md", "renewals/config.py"):
        assert expected in scanned


def test_nothing_points_outside_the_repository() -> None:
    offenders = []
    for path in _text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            for reference in OUTSIDE_REFERENCES:
                if reference in line:
                    where = path.relative_to(ROOT).as_posix()
                    offenders.append(f"{where}:{number}: {reference!r}")
    assert offenders == [], "\n".join(offenders)


@pytest.mark.parametrize("machine", [SubscriptionStatus, RenewalStatus, AttemptStatus])
def test_states_md_names_every_status(machine: type[StrEnum]) -> None:
    text = (DOCS / "states.md").read_text(encoding="utf-8")
    missing = [status.value for status in machine if f"`{status.value}`" not in text]
    assert missing == [], f"docs/states.md does not document {machine.__name__}: {missing}"


@pytest.mark.parametrize(
    "page", ["README.md", "docs/design.md", "docs/states.md", "docs/faststar.md"]
)
def test_local_links_resolve(page: str) -> None:
    path = ROOT / page
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8"))
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    broken = [t for t in local if not (path.parent / t).exists()]
    assert broken == [], f"{page} links to missing files: {broken}"
