"""Where a real worker spends its CPU: one end-to-end run (bench/e2e.py) with py-spy
sampling the worker and its pool children, then the hottest frames.

    pip install py-spy
    python -m bench.profile_worker --n 500 --out /tmp/worker.txt
    python -m bench.profile_worker --top /tmp/worker.txt      # the table again, no run

py-spy records only stacks that are running (not idle), so a frame's share of samples is
roughly its share of the worker's CPU; on a loaded machine a thread back from a socket wait
but not yet scheduled counts as running, so ``--gil`` (only threads holding the GIL) is the
closer measure of Python CPU. It samples without pausing the processes (--nonblocking) at a
modest rate so that the profiler costs the worker little; the run's own
``cpu_ms_per_renewal`` is printed beside the table. Output is py-spy's "raw" (collapsed
stacks) format, which ``--top`` summarises: self time per frame, and inclusive time for
frames named with ``--focus``.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import backends, e2e, processes
from bench.sandbox import Sandbox
from renewals.config import Settings
from renewals.logs import configure_logging

# Frames whose inclusive share tells where the time goes (substrings of py-spy's frame text).
FOCUS = (
    "charge_renewal (renewals/services/charging.py",
    "deliver (renewals/notifications/delivery.py",
    "deliver_batch (renewals/notifications/batch.py",
    "render (renewals/notifications/rendering.py",
    "build_message (renewals/notifications/rendering.py",
    "publish (renewals/worker/publish.py",
    "__call__ (renewals/logs.py",
    "send (renewals/notifications/senders.py",
    "execute (sqlalchemy/orm/session.py",
    "flush (sqlalchemy/orm/session.py",
    "commit (sqlalchemy/orm/session.py",
    "_send_request (renewals/faststar/_client.py",
    "send (httpx/_client.py",
    "trace_task (celery/app/trace.py",
    "on_message (celery/worker/consumer/consumer.py",
    "handle (logging/__init__.py",
)


@contextmanager
def spying(out: Path, rate: int, *, gil: bool = False) -> Iterator[None]:
    """Attach py-spy to every worker the run starts; stop it (SIGINT writes the file)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    started: list[subprocess.Popen[bytes]] = []
    original = processes.start_worker

    def start_worker(*args: Any, **kwargs: Any) -> processes.Process:
        worker = original(*args, **kwargs)
        started.append(
            subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(worker.pid),
                    "--subprocesses",
                    "--nonblocking",
                    "--rate",
                    str(rate),
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    *(["--gil"] if gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        return worker

    setattr(e2e, "start_worker", start_worker)  # noqa: B010 (a module attribute)
    try:
        yield
    finally:
        setattr(e2e, "start_worker", original)  # noqa: B010
        for spy_process in started:
            if spy_process.poll() is None:
                spy_process.send_signal(signal.SIGINT)
            spy_process.wait(60)


def _frames(stack: str) -> list[str]:
    # A raw line is "process;thread;frame;frame;... count"; frames are "name (file:line)".
    return [frame.rsplit(":", 1)[0] for frame in stack.split(";")[1:]]


def top(raw: Path, limit: int = 30) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)
        if frames:
            own[frames[-1]] += count
        for focus in FOCUS:
            if any(focus in frame for frame in frames):
                inclusive[focus] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "self time (top frames):"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(limit)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * n / total:5.1f}%  {focus}" for focus, n in inclusive.most_common()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument(
        "--backend", default=backends.POSTGRES, choices=(backends.POSTGRES, backends.EMBEDDED)
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--pool", default="prefork")
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path("worker-profile.txt"))
    parser.add_argument("--no-spy", action="store_true", help="the run's figures only")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only stacks holding the GIL: Python CPU, without waits on sockets",
    )
    parser.add_argument("--top", type=Path, default=None, help="summarise a raw file; no run")
    args = parser.parse_args(argv)
    if args.top is not None:
        print(top(args.top))
        return
    configure_logging(Settings(log_level="WARNING", log_format="console"))
    spec = e2e.RunSpec(
        args.backend,
        n=args.n,
        concurrency=args.concurrency,
        latency_ms=args.latency_ms,
        pool=args.pool,
    )
    sandbox = Sandbox.start()
    try:
        if args.no_spy:
            result = e2e.run(sandbox, spec)
        else:
            with spying(args.out, args.rate, gil=args.gil):
                result = e2e.run(sandbox, spec)
    finally:
        sandbox.stop()
    keys = (
        "completed",
        "renewals_per_s",
        "worker_cpu_s",
        "cpu_ms_per_renewal",
        "emails_sent",
        "tasks_per_renewal",
        "main_cpu_ms_per_task",
        "worker_processes",
    )
    print({key: result.get(key) for key in keys})
    if not args.no_spy:
        print(top(args.out))


if __name__ == "__main__":
    main()
