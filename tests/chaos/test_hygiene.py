"""The hygiene scan finds every kind of leak it looks for, and not what the redactor leaves."""

from __future__ import annotations

from pathlib import Path

from chaos.hygiene import Scanner, needles
from chaos.procs import pool_of, procfile_worker_args
from renewals.logs import Redactor

KEY, SECRET = "sk_test_chaosabc123", "whsec_chaosdef456"
EMAIL = "chaos7.run@example.com"


def scanner() -> Scanner:
    return Scanner(needles(KEY, [SECRET]), [EMAIL, "chaos8.run@example.com"])


def test_each_kind_of_leak_is_counted_per_source(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(
        f'{{"event": "charge", "key": "{KEY}"}}\n'
        f'{{"event": "mail", "to": "{EMAIL}"}}\n'
        '{"event": "card", "number": "4000 0027 6000 3184"}\n'
        f'{{"event": "hook", "secret": "{SECRET}"}}\n'
        '{"event": "fine", "renewal_id": 4242}\n'
    )
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"task": "renewals.charge_renewal", "args": [4242424242424242]}\n')
    scan = scanner()
    scan.scan_logs([log])
    scan.scan_task_log(tasks)
    assert dict(scan.report.leaks) == {
        "log/api_key": 1,
        "log/email": 1,
        "log/card_number": 1,
        "log/webhook_secret": 1,
        "task_args/card_number": 1,
    }
    assert scan.report.scanned == {"log": 5, "task_args": 1}
    assert not any(KEY in e or EMAIL in e for e in scan.report.examples)


def test_what_the_redactor_leaves_is_clean() -> None:
    line = f"charge for {EMAIL} with {KEY} on 4242 4242 4242 4242, signed {SECRET}"
    scan = scanner()
    scan.scan("log", Redactor([KEY, SECRET]).text(line))
    assert scan.report.ok, scan.report.leaks
    scan.scan("log", line)
    assert scan.report.total == 4


def test_the_worker_pool_comes_from_the_procfile(tmp_path: Path) -> None:
    procfile = tmp_path / "Procfile"
    procfile.write_text("worker: renewals worker --pool threads --concurrency 16\nweb: x\n")
    args = procfile_worker_args(procfile)
    assert args == ["--pool", "threads", "--concurrency", "16"]
    assert pool_of(args) == "threads"
    assert pool_of(["--concurrency", "4"]) == "prefork"
