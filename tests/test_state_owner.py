"""One owner for state: only ``renewals.transitions`` assigns a status.

Every module of the package is parsed; an assignment to ``.status``, a ``status=`` keyword
in a call (an ORM constructor, ``insert().values()``, ``update().values()``) or a
``"status"`` key in a ``.values({...})`` mapping anywhere else fails this test. The sandbox
(a stand-in for FastStar with its own state) and the FastStar client (which parses
FastStar's ``status`` fields into its own types) are not ours to own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import renewals

PACKAGE = Path(renewals.__file__).parent
OWNER = PACKAGE / "transitions"
NOT_OURS = (PACKAGE / "sandbox", PACKAGE / "faststar", PACKAGE / "models" / "migrations")


def _modules() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not path.is_relative_to(OWNER) and not any(path.is_relative_to(p) for p in NOT_OURS)
    ]


def status_writes(source: str) -> list[int]:
    """Line numbers that write a status: the rule this test enforces, as a function so that
    it can be tested on its own."""
    lines: list[int] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            lines += [
                e.lineno for e in elements if isinstance(e, ast.Attribute) and e.attr == "status"
            ]
        if isinstance(node, ast.Call):
            lines += [k.value.lineno for k in node.keywords if k.arg == "status"]
            if isinstance(node.func, ast.Attribute) and node.func.attr == "values":
                for arg in node.args:
                    if isinstance(arg, ast.Dict):
                        lines += [key.lineno for key in arg.keys if _names_status(key)]
    return lines


def _names_status(key: ast.expr | None) -> bool:
    """A mapping key that is the status column: ``"status"``, ``Model.status`` or
    ``table.c.status``."""
    if isinstance(key, ast.Constant):
        return key.value == "status"
    return isinstance(key, ast.Attribute) and key.attr == "status"


def test_the_rule_finds_every_kind_of_status_write() -> None:
    source = """
row.status = "sent"
a.status, b = 1, 2
Model(status="pending")
session.execute(update(M).values(status="x"))
session.execute(insert(M).values({"status": "x"}))
update(t).values({t.c.status: "x", M.status: "y"})
ok = row.status == "sent"
view = {"status": row.status}
query.where(t.c.status == "x").values(amount=1)
"""
    assert sorted(status_writes(source)) == [2, 3, 4, 5, 6, 7, 7]


def test_the_one_statement_charge_writes_are_status_writes_the_rule_sees() -> None:
    # transitions/fast_path.py writes statuses with SQLAlchemy Core inside CTEs; the same
    # code anywhere else would fail the test below.
    source = (OWNER / "fast_path.py").read_text()
    assert len(status_writes(source)) >= 4  # attempt insert; renewal, attempt, sub updates


def test_no_module_outside_the_state_owner_writes_a_status() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in _modules()
        for line in status_writes(path.read_text())
    ]
    assert offenders == [], "status written outside renewals.transitions"
    assert len(_modules()) > 40  # the walk really saw the package
