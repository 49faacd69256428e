"""The PNG written at the end: workers and tasks in flight over time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def plot(samples: Sequence[tuple[float, dict[str, Any]]], marks: dict[str, float], path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")  # files only; works without a display
    import matplotlib.pyplot as plt

    t = [s[0] for s in samples]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.step(
        t, [s[1]["requested"] for s in samples], where="post", label="workers requested", color="tab:orange"
    )
    ax.step(
        t, [s[1]["running"] for s in samples], where="post", label="workers running", color="tab:blue", lw=2
    )
    ax.set_xlabel("seconds since the workload was submitted")
    ax.set_ylabel("workers")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.fill_between(t, [s[1]["in_flight"] for s in samples], step="post", alpha=0.2, color="tab:green")
    ax2.set_ylabel("tasks in flight", color="tab:green")
    ax2.set_ylim(bottom=0)
    for label, at in marks.items():
        ax.axvline(at, color="grey", ls=":", lw=1)
        ax.annotate(
            label, (at, ax.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=8, color="grey"
        )
    ax.legend(loc="lower center")
    ax.set_title("dask-adaptive: scale up fast, scale down after a delay, keep the answer")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
