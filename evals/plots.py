"""PNG plots of a run, of several runs and of an analysis: the accuracy/length trade-off, where the tokens
go, and the reasoning rounds.

Drawn with matplotlib's Agg backend (no display needed), written atomically. Every plot says how much
it knows: coverage (problems with responses / asked for) beside incomplete accuracies, ``n`` beside every
group, error bars only where there are two or more samples to spread, integer ticks on counts, and an
accuracy axis that stays within 0-100 % (an all-zero run draws at 0, not on a -0.04..0.04 axis).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from evals.layout import AnalysisFiles, RunFiles
from evals.metrics import level_name, level_sort_key
from evals.report import coverage, display_name
from tops_plugin.jsonl import atomic_writer
from tops_plugin.prompts import effort_sort_key

__all__ = [
    "accuracy_axis",
    "panels",
    "runs_accuracy_vs_tokens",
    "save_figure",
    "write_analysis_plots",
    "write_plots",
]

PANEL_SIZE = (4.4, 3.6)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panels(count: int, height: float = PANEL_SIZE[1], width: float = PANEL_SIZE[0]):
    """(pyplot, figure, axes): a row of `count` panels with constrained layout, so that panel titles and
    a figure title never overlap."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(count, 1), figsize=(width * max(count, 1), height), squeeze=False,
                             layout="constrained")
    return plt, fig, list(axes[0])


def save_figure(plt, fig, path: Path) -> str:
    """Write `fig` as PNG atomically and close it; returns the path."""
    try:
        with atomic_writer(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(fig)
    return str(path)


def accuracy_axis(ax, values: Sequence[float], label: str = "accuracy (%)") -> None:
    """A y axis in % that shows the points with some room, whole tens at the ends, within 0-100."""
    finite = [v for v in values if v is not None and math.isfinite(v)] or [0.0]
    low = max(0.0, math.floor((min(finite) - 5) / 10) * 10)
    high = min(100.0, math.ceil((max(finite) + 5) / 10) * 10)
    high = max(high, low + 10)
    margin = 0.03 * (high - low)  # a point at 0 or 100 % is drawn whole, not cut by the frame
    ax.set_ylim(low - margin, high + margin)
    ax.set_ylabel(label)


def _tokens_axis(ax, xs: Sequence[float], label: str = "mean response tokens (Qwen2.5)") -> None:
    ax.set_xlim(0, max([x for x in xs if x is not None] + [1.0]) * 1.25)
    ax.set_xlabel(label)


def _counts_axis(ax, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(label)


def _annotate(ax, points: Sequence[tuple[float, float, str]], color: str | None = None) -> None:
    """Label points; points drawn at the same place get one joined label instead of overprinted ones."""
    places: dict[tuple[float, float], list[str]] = {}
    for x, y, name in points:
        if name:
            places.setdefault((round(x, 6), round(y, 6)), []).append(name)
    for (x, y), names in places.items():
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8, color=color)


def _point_label(name: str, cell: Mapping) -> str:
    covered = coverage(cell)
    return name if covered is None else f"{name} ({covered[0]}/{covered[1]})"


def accuracy_vs_tokens(summary: Mapping, path: Path) -> str:
    """One panel per benchmark: accuracy against mean tokens, one point per effort (± std over samples
    when there are two or more per problem; coverage beside incomplete points)."""
    results = summary["results"]
    benches = [bench for bench in results if results[bench]]
    plt, fig, axes = panels(len(benches))
    for ax, bench in zip(axes, benches):
        xs, ys, labels = [], [], []
        for effort, cell in results[bench].items():
            x, y = cell.get("tokens_mean") or 0.0, 100 * cell["accuracy_mean"]
            spread = 100 * cell["accuracy_std"] if cell.get("samples_per_problem_max", 1) >= 2 else None
            ax.errorbar(x, y, yerr=spread, fmt="o", capsize=3)
            xs.append(x)
            ys.append(y)
            labels.append(_point_label(effort, cell))
        _annotate(ax, list(zip(xs, ys, labels)))
        ax.set_title(display_name(bench))
        accuracy_axis(ax, ys)
        _tokens_axis(ax, xs)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{summary.get('model', '')}: accuracy vs tokens")
    return save_figure(plt, fig, path)


def _histograms(ax, series: Mapping[str, Sequence[int]], title: str) -> None:
    """Step histograms on shared bins; a long tail beyond the 99th percentile is folded into the last bin."""
    import numpy as np

    values = np.asarray([v for tokens in series.values() for v in tokens], dtype=float)
    ax.set_title(title)
    _counts_axis(ax, "responses")
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
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("response tokens (Qwen2.5)" + ("; last bin ≥ 99th pct" if folded else ""))
    ax.legend(fontsize=7)


def tokens_by_effort(summary: Mapping, groups: Mapping[str, Mapping[str, Sequence[Mapping]]], path: Path) -> str:
    """One panel per benchmark: the token-length histogram of each effort."""
    benches = [bench for bench in summary["results"] if groups.get(bench)]
    plt, fig, axes = panels(len(benches))
    for ax, bench in zip(axes, benches):
        series = {effort: [row["tokens"] for row in rows] for effort, rows in groups[bench].items()}
        _histograms(ax, series, display_name(bench))
    return save_figure(plt, fig, path)


def tokens_by_level(bench: str, rows_by_effort: Mapping[str, Sequence[Mapping]], path: Path) -> str | None:
    """One panel per effort: a box per difficulty level (MATH500's 1-5) of response tokens, n under each,
    the mean as a dot; boxes side by side can be told apart where overlaid histograms cannot."""
    efforts = [effort for effort, rows in rows_by_effort.items()
               if any(level_name(r.get("level")) is not None for r in rows)]
    if not efforts:
        return None
    plt, fig, axes = panels(len(efforts), height=3.8)
    for ax, effort in zip(axes, efforts):
        series: dict[str, list[int]] = {}
        for row in rows_by_effort[effort]:
            level = level_name(row.get("level"))
            if level is not None:
                series.setdefault(level, []).append(row["tokens"])
        levels = sorted(series, key=level_sort_key)
        ax.boxplot([series[level] for level in levels], showmeans=True, widths=0.6,
                   meanprops={"marker": "o", "markerfacecolor": "white", "markeredgecolor": "black",
                              "markersize": 5},
                   flierprops={"marker": ".", "markersize": 4, "alpha": 0.5})
        ax.set_xticks(range(1, len(levels) + 1), [f"{level}\nn={len(series[level])}" for level in levels])
        ax.set_xlabel("level")
        ax.set_ylabel("response tokens (Qwen2.5)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{display_name(bench)} ({effort})")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("tokens by difficulty level (box: quartiles; dot: mean)", fontsize=10)
    return save_figure(plt, fig, path)


def write_plots(
    summary: Mapping, groups: Mapping[str, Mapping[str, Sequence[Mapping]]], files: RunFiles
) -> dict[str, str]:
    """All plots of a run; returns {name: path}. Nothing is drawn for a run without results."""
    if not any(summary["results"].values()):
        return {}
    written = {
        "plot_accuracy_vs_tokens": accuracy_vs_tokens(summary, files.accuracy_vs_tokens_plot),
        "plot_tokens_by_effort": tokens_by_effort(summary, groups, files.tokens_by_effort_plot),
    }
    for bench, rows_by_effort in groups.items():
        path = tokens_by_level(bench, rows_by_effort, files.tokens_by_level_plot(bench))
        if path is not None:
            written[f"plot_tokens_by_level_{bench}"] = path
    return written


def runs_accuracy_vs_tokens(
    runs: Sequence[tuple[str, Mapping]], path: str | Path, title: str = "accuracy vs mean response tokens, per run"
) -> str | None:
    """The paper's Figure 1 view of several runs: per benchmark, accuracy against mean tokens, one point
    per run (and effort), a run's efforts joined in token order. None when no run has results."""
    benches: list[str] = []
    for _, summary in runs:
        benches += [b for b, cells in summary["results"].items() if cells and b not in benches]
    if not benches:
        return None
    plt, fig, axes = panels(len(benches), height=3.9)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, bench in zip(axes, benches):
        xs_all, ys_all = [], []
        for index, (label, summary) in enumerate(runs):
            cells = summary["results"].get(bench) or {}
            if not cells:
                continue
            color = colors[index % len(colors)]
            points = sorted(((c.get("tokens_mean") or 0.0, 100 * c["accuracy_mean"], e, c) for e, c in cells.items()),
                            key=lambda point: point[0])
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            ax.plot(xs, ys, marker="o", color=color, label=label, linewidth=1 if len(points) > 1 else 0)
            labels = []
            for x, y, effort, cell in points:
                name = "" if effort == "default" else effort
                covered = coverage(cell)
                if covered is not None:
                    name = f"{name} ({covered[0]}/{covered[1]} problems)".strip()
                labels.append((x, y, name))
            _annotate(ax, labels, color)
            xs_all += xs
            ys_all += ys
        ax.set_title(display_name(bench))
        accuracy_axis(ax, ys_all)
        _tokens_axis(ax, xs_all)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    return save_figure(plt, fig, Path(path))


def write_analysis_plots(analysis: Mapping, files: AnalysisFiles) -> list[Path]:
    """PNG plots of an analysis (analysis.json, `evals.analysis`): rounds by effort, accuracy by effort, by
    length (with n and Wilson 95% intervals) and by level; one panel per benchmark; returns the files."""
    written: list[Path] = []
    benches = list(analysis["length_accuracy"])
    if not benches:
        return written

    def save(plt, fig, path: Path) -> None:
        written.append(Path(save_figure(plt, fig, path)))

    # Rounds and erroneous rounds per effort (correct final answers), one panel per benchmark.
    plt, fig, axes = panels(len(benches))
    for ax, bench in zip(axes, benches):
        groups = analysis["by_benchmark"][bench]
        efforts = list(groups)
        xs = range(len(efforts))
        ax.bar([x - 0.2 for x in xs], [groups[e]["rounds_mean"] or 0 for e in efforts], 0.4, label="rounds")
        ax.bar([x + 0.2 for x in xs], [groups[e]["erroneous_rounds_mean"] or 0 for e in efforts], 0.4,
               label="erroneous rounds")
        ax.set_xticks(list(xs), [f"{e}\nn={groups[e]['responses']}" for e in efforts])
        ax.set_title(f"{display_name(bench)}: correct answers")
        ax.set_ylabel("mean per response")
        ax.legend(fontsize=8)
    save(plt, fig, files.rounds_by_effort_plot)

    # Accuracy vs mean length, one point per effort.
    plt, fig, axes = panels(len(benches))
    for ax, bench in zip(axes, benches):
        table = analysis["length_accuracy"][bench]["by_effort"]
        xs = [cell["tokens_mean"] for cell in table.values()]
        ys = [100 * cell["accuracy"] for cell in table.values()]
        ax.plot(xs, ys, marker="o", linewidth=1 if len(xs) > 1 else 0)
        for effort, x, y in zip(table, xs, ys):
            ax.annotate(f"{effort} (n={table[effort]['n']})", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        ax.set_xlim(0, max(xs) * 1.3 if xs and max(xs) > 0 else 1)
        ax.set_xlabel("mean tokens (Qwen2.5)")
        accuracy_axis(ax, ys)
        ax.set_title(display_name(bench))
        ax.grid(alpha=0.3)
    save(plt, fig, files.accuracy_by_effort_plot)

    # Accuracy per length bin, with the bin's n and its Wilson 95% interval. Bins sit side by side (their
    # token ranges as labels): quantile bins of a long tail would crowd together on a token axis.
    plt, fig, axes = panels(len(benches), height=3.9, width=5.6)
    for ax, bench in zip(axes, benches):
        cells = [c for c in analysis["length_accuracy"][bench]["bins"] if c["n"]]
        xs = list(range(len(cells)))
        ys = [100 * c["accuracy"] for c in cells]
        below = [max(0.0, y - 100 * c["ci95"][0]) for c, y in zip(cells, ys)]  # >= 0 despite rounding
        above = [max(0.0, 100 * c["ci95"][1] - y) for c, y in zip(cells, ys)]
        ax.errorbar(xs, ys, yerr=[below, above], marker="o", capsize=3, linewidth=1)
        ax.set_xticks(xs, [f"{c['lo']:.0f}–{c['hi']:.0f}\nn={c['n']}" for c in cells], fontsize=7)
        ax.set_xlabel("response tokens (Qwen2.5), quantile bins; n = responses")
        ax.set_ylim(-3, 103)
        ax.set_ylabel("accuracy (%), Wilson 95% interval")
        ax.set_title(display_name(bench))
        ax.grid(alpha=0.3)
    save(plt, fig, files.accuracy_by_length_plot)

    # Accuracy per difficulty level and effort (benchmarks with levels): where each effort is optimal.
    leveled = {}
    for bench, levels in analysis["optimal_effort"].items():
        if len(levels) > 1:
            leveled[bench] = {level: cell for level, cell in levels.items() if level != "all"}
    if leveled:
        plt, fig, axes = panels(len(leveled))
        for ax, (bench, levels) in zip(axes, leveled.items()):
            efforts = sorted({e for cell in levels.values() for e in cell["accuracy"]}, key=effort_sort_key)
            names = list(levels)
            values = []
            for effort in efforts:
                ys = [100 * levels[lv]["accuracy"][effort] if effort in levels[lv]["accuracy"] else float("nan")
                      for lv in names]
                ax.plot(names, ys, marker="o", label=effort)
                values += ys
            counts = [sum(levels[lv]["n"].values()) for lv in names]
            ax.set_xticks(range(len(names)), [f"{lv}\nn={n}" for lv, n in zip(names, counts)])
            ax.set_xlabel("level (responses)")
            accuracy_axis(ax, values)
            ax.set_title(display_name(bench))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        save(plt, fig, files.accuracy_by_level_plot)
    return written
