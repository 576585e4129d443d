"""docs/metrics.md describes every metric, and docs/alerts.yml is a rules file that names
only metrics (and labels) that exist. No promtool here: the check is structural, and its
name and label checks are what a renamed metric would break."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from renewals.metrics import names

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "docs" / "alerts.yml"
DOC = ROOT / "docs" / "metrics.md"

_SELECTOR = re.compile(r"\b(renewals_[a-z_]+)\b(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-z_]+)\s*(?:=~|!~|!=|=)\s*"')


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def _known() -> dict[str, names.Metric]:
    return {series: m for m in names.CATALOGUE for series in names.series_names(m)}


def test_docs_describe_every_metric() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [m.name for m in names.CATALOGUE if f"`{m.name}`" not in text]
    assert missing == []


def test_the_alert_rules_are_well_formed() -> None:
    rules = _rules()
    assert len(rules) >= 8
    alerts = [rule["alert"] for rule in rules]
    assert len(set(alerts)) == len(alerts)
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
        assert f"`{rule['alert']}`" in DOC.read_text(encoding="utf-8"), rule["alert"]


def test_the_alert_rules_name_only_metrics_and_labels_that_exist() -> None:
    known = _known()
    used: set[str] = set()
    for rule in _rules():
        for name, selector in _SELECTOR.findall(rule["expr"]):
            assert name in known, f"{rule['alert']}: no metric {name}"
            used.add(known[name].name)
            labels = set(_MATCHER.findall(selector))
            allowed = set(known[name].labels) | ({"le"} if name.endswith("_bucket") else set())
            assert labels <= allowed, f"{rule['alert']}: {name} has no label {labels - allowed}"
    # What the issue asks an operator to watch is watched.
    for metric in (
        names.SWEEP_LAG,
        names.UNKNOWN_BACKLOG,
        names.OPEN_REVIEWS,
        names.OUTBOX_WAITING,
        names.FASTSTAR_ERRORS,
        names.CHARGES,
        names.HALTED,
        names.SWEEP_LAST_RUN,
    ):
        assert metric.name in used, metric.name


def test_the_charge_endpoint_in_the_rules_is_the_one_the_metrics_use() -> None:
    from renewals.metrics import faststar_endpoint

    endpoint = faststar_endpoint("POST", "/public/customers/cus_1/charge")
    assert f'endpoint="{endpoint}"' in ALERTS.read_text(encoding="utf-8")
