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


# --------------------------------------------------------------------- commands in docs

COMMAND_PAGES = ["README.md", "docs/operations.md"]
_CODE_BLOCK = re.compile(r"```[^\n]*\n(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`]+)`")  # inline code may wrap onto the next line
_WORD = re.compile(r"[a-z][a-z-]*")
_OPTION = re.compile(r"--[a-z][a-z0-9-]*")


def _command_texts(page: str) -> list[str]:
    """Every ``renewals …`` the page shows, in code blocks and inline code (a line with
    several, such as ``renewals pause SUB | renewals resume SUB``, yields each)."""
    text = (ROOT / page).read_text(encoding="utf-8")
    snippets = [line for block in _CODE_BLOCK.findall(text) for line in block.splitlines()]
    snippets += [" ".join(code.split()) for code in _INLINE_CODE.findall(_CODE_BLOCK.sub("", text))]
    found = []
    for snippet in snippets:
        code = snippet.split(" # ")[0]
        if code.lstrip().startswith("#"):
            continue
        for part in re.split(r"(?:^|(?<=[\s(/]))renewals ", code)[1:]:
            found.append(part.strip())
    return found


def _problems(text: str) -> list[str]:
    """What in ``renewals TEXT`` is not a subcommand or an option of the command it names."""
    import click

    from renewals.cli import main

    command: click.Command = main
    tokens = text.split()
    path = ["renewals"]
    problems = []
    for token in tokens:
        if isinstance(command, click.Group) and _WORD.fullmatch(token):
            sub = command.get_command(click.Context(command), token)
            if sub is None:
                problems.append(f"{' '.join(path)} has no command {token!r}")
                break
            command, path = sub, [*path, token]
            continue
        break
    if command.context_settings.get("allow_extra_args"):  # worker, scheduler: Celery's own
        return problems
    known = {name for p in command.params for name in (*p.opts, *p.secondary_opts)}
    known |= {"--help", "--debug"}  # --debug: the root option, written before the subcommand
    problems += [
        f"{' '.join(path)} has no option {option}"
        for option in _OPTION.findall(text)
        if option not in known
    ]
    return problems


@pytest.mark.parametrize("page", COMMAND_PAGES)
def test_every_command_the_docs_show_exists(page: str) -> None:
    commands = _command_texts(page)
    assert len(commands) >= 10, f"the scan found too few commands in {page}: {commands}"
    problems = [f"`renewals {c}`: {p}" for c in commands for p in _problems(c)]
    assert problems == [], "\n".join(problems)


def test_the_check_catches_a_wrong_command() -> None:
    assert _problems("reconcile 12 --paid pi_1") == []
    assert _problems("subscriptions list --status past_due") == []
    assert _problems("reviews resolve 3 --refunded --reason x") == []
    assert _problems("reconsile 12") == ["renewals has no command 'reconsile'"]
    assert _problems("reviews resolve 3 --refund") == [
        "renewals reviews resolve has no option --refund"
    ]


def test_the_flower_app_path_in_the_docs_is_the_celery_app() -> None:
    import importlib

    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    [module] = re.findall(r"celery -A ([\w.]+) flower", text)
    assert hasattr(importlib.import_module(module), "app")
