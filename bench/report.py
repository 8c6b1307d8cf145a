"""Plots of the benchmark results: bench/results/http.json and stampede.json to PNGs.

Reads whichever of the two result files exist (written by bench/http.py and
bench/stampede.py) and writes, next to them:

- `http.png`: requests/s of each variant as a ratio of its framework's ceiling,
  horizontal bars grouped by framework, with the run's spread (min/max over the rounds)
  and a tick at each target the variant has;
- `stampede.png`: computations and p50/p99 latency, naive versus atomcache.

    python bench/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
# bench/http.py would stand in for the standard library's `http` (see its header).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]

import matplotlib as mpl  # noqa: E402

mpl.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

RESULTS = BENCH / "results"


def load(name: str) -> list[dict[str, Any]] | None:
    """Return the rows of `bench/results/<name>.json`, or None if there is none."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    return rows


def target_ratio(target: dict[str, Any], ceilings: dict[str, float]) -> float:
    """Return a target's minimum as a ratio to the ceiling.

    A target against another variant (Litestar's own cache) is that variant's ratio to
    the ceiling times the minimum.
    """
    minimum = float(target["minimum"])
    return minimum * ceilings.get(str(target["versus"]), 1.0)


def plot_http(rows: list[dict[str, Any]], out: Path) -> None:
    """Write the requests/s ratios to the ceiling, grouped by framework, to `out`."""
    frameworks = list(dict.fromkeys(str(row["framework"]) for row in rows))
    fig, axes = plt.subplots(
        len(frameworks),
        1,
        figsize=(9, 1.2 + 0.5 * len(rows)),
        squeeze=False,
        sharex=True,
    )
    for ax, framework in zip(axes[:, 0], frameworks, strict=True):
        group = [row for row in rows if row["framework"] == framework]
        ceiling = next(
            (float(r["requests_per_second"]) for r in group if r["ratio_to_ceiling"] == 1.0),
            float(group[0]["requests_per_second"]),
        )
        ratios = {str(r["variant"]): float(r["ratio_to_ceiling"]) for r in group}
        labels = [str(r["variant"]) for r in group][::-1]
        values = [float(r["ratio_to_ceiling"]) for r in group][::-1]
        low = [v - float(r["min"]) / ceiling for v, r in zip(values, group[::-1], strict=True)]
        high = [float(r["max"]) / ceiling - v for v, r in zip(values, group[::-1], strict=True)]
        positions = list(range(len(group)))
        colors = ["tab:blue" if "atomcache" in label else "tab:gray" for label in labels]
        ax.barh(positions, values, color=colors, xerr=[low, high], capsize=3)
        for y, value, row in zip(positions, values, group[::-1], strict=True):
            ax.text(
                value + 0.02,
                y + 0.25,
                f"{value:.2f} ({float(row['requests_per_second']):,.0f}/s)",
                fontsize=8,
            )
            for target in row.get("targets", []):
                x = target_ratio(target, ratios)
                ax.plot([x, x], [y - 0.4, y + 0.4], color="tab:red", linewidth=2)
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(positions, labels)
        ax.set_title(f"{framework} (ceiling {ceiling:,.0f} requests/s)", fontsize=10)
    axes[-1, 0].set_xlabel("requests/s as a ratio of the framework's ceiling")
    fig.legend(
        handles=[Line2D([], [], color="tab:red", linewidth=2, label="target (minimum)")],
        loc="upper right",
    )
    fig.suptitle("HTTP benchmark (median of the rounds; bars: min-max)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_stampede(rows: list[dict[str, Any]], out: Path) -> None:
    """Write computations and p50/p99 latency per strategy to `out`."""
    strategies = [str(row["strategy"]) for row in rows]
    colors = ["tab:blue" if s == "atomcache" else "tab:gray" for s in strategies]
    first = rows[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))

    computations = [int(row["computations"]) for row in rows]
    left.bar(strategies, computations, color=colors)
    left.set_yscale("log")
    left.set_ylabel("computations (log scale)")
    left.set_title("computations of the cold key")
    for x, value in enumerate(computations):
        left.text(x, value, str(value), ha="center", va="bottom")

    width = 0.38
    for offset, key, label in ((-width / 2, "p50_ms", "p50"), (width / 2, "p99_ms", "p99")):
        values = [float(row[key]) for row in rows]
        positions = [x + offset for x in range(len(rows))]
        bars = right.bar(positions, values, width, label=label)
        right.bar_label(bars, fmt="%.0f", fontsize=8)
    right.axhline(
        float(first["compute_s"]) * 1000,
        color="black",
        linewidth=0.8,
        linestyle="--",
        label="computation",
    )
    right.set_xticks(range(len(rows)), strategies)
    right.set_ylabel("latency (ms)")
    right.set_title("caller latency")
    right.legend()

    fig.suptitle(
        f"Stampede: {first['processes']} processes x {first['callers']} callers, "
        f"{float(first['compute_s']) * 1000:.0f} ms factory"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main() -> None:
    """Plot whichever results exist and print where the plots went."""
    written: list[Path] = []
    http = load("http")
    if http:
        plot_http(http, RESULTS / "http.png")
        written.append(RESULTS / "http.png")
    stampede = load("stampede")
    if stampede:
        plot_stampede(stampede, RESULTS / "stampede.png")
        written.append(RESULTS / "stampede.png")
    if not written:
        print(f"no results in {RESULTS}: run bench/http.py or bench/stampede.py first")
        return
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
