"""bench-report.json and the short table printed at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

REPORT = Path("bench-report.json")


def machine() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {"cpus": os.cpu_count(), "loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)]}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def headline(
    *,
    e2e: dict[str, Any],
    bare_per_s: float,
    cost: dict[str, Any],
    all_runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """The top-level figures, each with the C, L, N and backend it was taken at."""
    ideal = e2e["concurrency"] / (e2e["latency_ms"] / 1000)
    at_e2e = {k: e2e[k] for k in ("backend", "pool", "concurrency", "latency_ms", "n")}
    figures: dict[str, Any] = {
        "e2e_renewals_per_s": e2e["renewals_per_s"],
        "bare_httpx_per_s": round(bare_per_s, 1),
        "ideal_per_s": round(ideal, 1),
        "e2e_vs_bare": _ratio(e2e["renewals_per_s"], bare_per_s),
        "e2e_vs_ideal": _ratio(e2e["renewals_per_s"], ideal),
        "due_to_first_claim_s": e2e["due_to_first_claim_s"],
        "statements_per_renewal": cost["statements_per_renewal"],
        "transactions_per_renewal": cost["transactions_per_renewal"],
        "cpu_ms_per_renewal": e2e["cpu_ms_per_renewal"],
        "worker_peak_rss_mb": e2e["worker_peak_rss_mb"],
        "worker_peak_pss_mb": e2e["worker_peak_pss_mb"],
        "sweep_claim_rows_per_s": cost["sweep_claim_rows_per_s"],
        "duplicate_charges": sum(run["duplicate_charges"] for run in all_runs),
    }
    at_cost = {"backend": cost["backend"], "n": cost["claimed_by_one_sweep"], "latency_ms": 0}
    figures["figure_context"] = {
        **{key: at_e2e for key in figures if key not in ("statements_per_renewal",)},
        "bare_httpx_per_s": {
            "concurrency": e2e["concurrency"],
            "latency_ms": e2e["latency_ms"],
            "n": e2e["n"],
            "backend": "sandbox only",
        },
        "statements_per_renewal": {**at_cost, "sample": cost["sample"]},
        "transactions_per_renewal": {**at_cost, "sample": cost["sample"]},
        "sweep_claim_rows_per_s": at_cost,
        "duplicate_charges": {"runs": len(all_runs), "note": "sum over every e2e run"},
    }
    return figures


def write(report: dict[str, Any], path: Path = REPORT) -> None:
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    header = [title for _, title in columns]
    body = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


RUN_COLUMNS = [
    ("label", "run"),
    ("backend", "backend"),
    ("pool", "pool"),
    ("concurrency", "C"),
    ("latency_ms", "L ms"),
    ("n", "N"),
    ("completed", "done"),
    ("renewals_per_s", "renewals/s"),
    ("ideal_per_s", "C/L"),
    ("bare_per_s", "bare/s"),
    ("window_s", "window s"),
    ("due_to_first_claim_s", "due->claim s"),
    ("cpu_ms_per_renewal", "CPU ms/r"),
    ("worker_peak_pss_mb", "PSS MB"),
    ("sweeps_expired_in_queue", "lost ticks"),
    ("http_429", "429s"),
    ("duplicate_charges", "dups"),
]


def summary(report: dict[str, Any]) -> str:
    lines = [table(report["runs"], RUN_COLUMNS), ""]
    head = report.get("headline") or {}
    for key in (
        "e2e_renewals_per_s",
        "bare_httpx_per_s",
        "ideal_per_s",
        "e2e_vs_bare",
        "e2e_vs_ideal",
        "statements_per_renewal",
        "transactions_per_renewal",
        "cpu_ms_per_renewal",
        "worker_peak_rss_mb",
        "worker_peak_pss_mb",
        "sweep_claim_rows_per_s",
        "import_rows",
        "import_rows_per_s_postgres",
        "import_second_s_postgres",
        "import_rows_per_s_sqlite",
        "import_second_s_sqlite",
        "duplicate_charges",
    ):
        lines.append(f"{key:28} {_cell(head.get(key))}")
    ceiling = report.get("sandbox_ceiling") or {}
    lines.append(f"{'sandbox_ceiling_rps':28} {_cell(ceiling.get('requests_per_s'))}")
    rate = report.get("rate_limit") or {}
    if rate:
        lines.append(
            f"{'rate_limit':28} sent {_cell(rate.get('sent_per_busy_s'))}/s (peak "
            f"{_cell(rate.get('sent_peak_per_s'))}) with the client at "
            f"{_cell(rate.get('client_rate_limit_per_s'))}/s and the sandbox at "
            f"{_cell(rate.get('sandbox_rate_limit_per_s'))}/s: "
            f"{_cell(rate.get('achieved_over_configured'))} x configured, "
            f"{rate.get('http_429')} x 429"
        )
    lines.append(f"machine: {report['machine']}")
    return "\n".join(lines)
