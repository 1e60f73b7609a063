"""PNG plots of a run: the accuracy/length trade-off and where the tokens go.

Drawn with matplotlib's Agg backend (no display needed), written atomically next to summary.json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from evals.report import display_name
from tops_plugin.jsonl import atomic_writer

__all__ = ["write_plots"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    with atomic_writer(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return str(path)


def accuracy_vs_tokens(summary: Mapping, path: Path) -> str:
    """One panel per benchmark: accuracy (mean ± std) against mean tokens, one point per effort."""
    plt = _pyplot()
    results = summary["results"]
    benches = [bench for bench in results if results[bench]]
    fig, axes = plt.subplots(1, max(len(benches), 1), figsize=(4.2 * max(len(benches), 1), 3.6), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        for effort, cell in results[bench].items():
            x, y = cell.get("tokens_mean") or 0.0, 100 * cell["accuracy_mean"]
            ax.errorbar(x, y, yerr=100 * cell["accuracy_std"], fmt="o", capsize=3, label=effort)
            ax.annotate(effort, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_title(display_name(bench))
        ax.set_xlabel("mean response tokens (Qwen2.5)")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary.get('model', '')}: accuracy vs tokens")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def _histograms(ax, series: Mapping[str, Sequence[int]], title: str) -> None:
    """Step histograms on shared bins; a long tail beyond the 99th percentile is folded into the last bin."""
    import numpy as np

    values = np.asarray([v for tokens in series.values() for v in tokens], dtype=float)
    if values.size == 0:
        return
    low, high = float(values.min()), float(np.percentile(values, 99))
    folded = float(values.max()) > 1.5 * high
    if not folded:
        high = float(values.max())
    high = max(high, low + 1)
    for label, tokens in series.items():
        if len(tokens):
            ax.hist(np.clip(tokens, low, high), bins=30, range=(low, high), histtype="step", linewidth=1.4,
                    label=f"{label} (n={len(tokens)})")
    ax.set_title(title)
    ax.set_xlabel("response tokens (Qwen2.5)" + (", last bin: >= 99th percentile" if folded else ""))
    ax.set_ylabel("responses")
    ax.legend(fontsize=7)


def tokens_by_effort(summary: Mapping, groups: Mapping[str, Mapping[str, Sequence[Mapping]]], path: Path) -> str:
    """One panel per benchmark: the token-length histogram of each effort."""
    plt = _pyplot()
    benches = [bench for bench in summary["results"] if groups.get(bench)]
    fig, axes = plt.subplots(1, max(len(benches), 1), figsize=(4.2 * max(len(benches), 1), 3.4), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        series = {effort: [row["tokens"] for row in rows] for effort, rows in groups[bench].items()}
        _histograms(ax, series, display_name(bench))
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def tokens_by_level(bench: str, rows_by_effort: Mapping[str, Sequence[Mapping]], path: Path) -> str | None:
    """One panel per effort: token-length histograms per difficulty level (MATH500's 1-5)."""
    efforts = [effort for effort, rows in rows_by_effort.items() if any(r.get("level") is not None for r in rows)]
    if not efforts:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(efforts), figsize=(4.2 * len(efforts), 3.4), squeeze=False)
    for ax, effort in zip(axes[0], efforts):
        series: dict[str, list[int]] = {}
        for row in rows_by_effort[effort]:
            if row.get("level") is not None:
                series.setdefault(f"level {row['level']}", []).append(row["tokens"])
        _histograms(ax, dict(sorted(series.items())), f"{display_name(bench)} ({effort})")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def write_plots(summary: Mapping, groups: Mapping[str, Mapping[str, Sequence[Mapping]]], out: str | Path) -> dict[str, str]:
    """All plots of a run; returns {name: path}. Nothing is drawn for a run without results."""
    out = Path(out)
    if not any(summary["results"].values()):
        return {}
    files = {
        "plot_accuracy_vs_tokens": accuracy_vs_tokens(summary, out / "accuracy_vs_tokens.png"),
        "plot_tokens_by_effort": tokens_by_effort(summary, groups, out / "tokens_by_effort.png"),
    }
    for bench, rows_by_effort in groups.items():
        path = tokens_by_level(bench, rows_by_effort, out / f"tokens_by_level_{bench}.png")
        if path is not None:
            files[f"plot_tokens_by_level_{bench}"] = path
    return files
