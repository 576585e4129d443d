"""docs/bench-concurrency.png: renewals/s against concurrency, engine and bare baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT = Path("docs/bench-concurrency.png")


def concurrency_plot(points: list[dict[str, Any]], path: Path = PLOT, note: str = "") -> Path:
    """``points``: one per C with ``concurrency``, ``renewals_per_s``, ``bare_per_s``,
    ``ideal_per_s``, ``latency_ms`` and ``backend``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = sorted(points, key=lambda p: p["concurrency"])
    c = [p["concurrency"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(c, [p["ideal_per_s"] for p in points], ":", color="grey", label="ideal C / L")
    ax.plot(c, [p["bare_per_s"] for p in points], "s-", label="bare httpx loop")
    ax.plot(
        c,
        [p["renewals_per_s"] for p in points],
        "o-",
        label=f"engine e2e ({points[0]['backend']}, prefork worker)",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(c, [str(x) for x in c])
    ax.set_xlabel("concurrency C")
    ax.set_ylabel("renewals / s")
    ax.set_title(f"Renewals/s against concurrency, sandbox latency {points[0]['latency_ms']:g} ms")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgrey")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
