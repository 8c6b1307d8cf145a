"""Plots of the benchmark results: bench/results/*.json to PNGs.

Reads whichever result files exist (written by bench/http.py, bench/stampede.py,
bench/peers.py, bench/core.py, bench/metrics.py and bench/propagation.py) and writes,
next to them:

- `http.png`: requests/s of each variant as a ratio of its framework's bare ASGI
  callable, horizontal bars grouped by framework, with the run's spread (min/max over
  the rounds), its p99 latency, a tick at each throughput goal the variant has and, for
  a hit behind a dependency or guard, its ratio to the same route uncached;
- `stampede.png`: computations and p50/p99 latency, naive versus atomcache;
- `stampede_peers.png`: every caller's latency as a distribution (CDF) per contender,
  with the computations and Redis commands of each;
- `core.png`: time per `get` on a hit against redis-py's GET + json.loads, per value size;
- `metrics.png`: a stampede as atomcache's Prometheus counters show it over time,
  summed over the fleet (bench/metrics.py);
- `propagation.png`: how soon an invalidation in one process reached the other
  processes' local tiers, as a distribution (CDF) per kind of invalidation, with the goal.

With `--docs`, the plots are also copied to docs/assets/benchmarks/, where
docs/benchmarks.md shows them.

    python bench/report.py [--docs]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

BENCH = Path(__file__).resolve().parent
# bench/http.py would stand in for the standard library's `http` (see its header).
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH]

import matplotlib as mpl  # noqa: E402

mpl.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

RESULTS = BENCH / "results"
DOCS_ASSETS = BENCH.parent / "docs" / "assets" / "benchmarks"


def load(name: str) -> Any:
    """Return the parsed `bench/results/<name>.json` (rows, or one object), or None."""
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def target_ratio(target: dict[str, Any], ratios: dict[str, float]) -> float:
    """Return a throughput goal's minimum as a ratio to the bare ASGI callable.

    A goal against another variant (the 200 hit, the uncached route, Litestar's own
    cache) is that variant's ratio to the bare callable times the minimum.
    """
    return float(target["minimum"]) * ratios.get(str(target["versus"]), 1.0)


def plot_http(rows: list[dict[str, Any]], out: Path) -> None:
    """Write requests/s as ratios to the bare ASGI callable, by framework, to `out`."""
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
        bare = next(
            (float(r["requests_per_second"]) for r in group if r["ratio_to_bare_asgi"] == 1.0),
            float(group[0]["requests_per_second"]),
        )
        ratios = {str(r["variant"]): float(r["ratio_to_bare_asgi"]) for r in group}
        labels = [str(r["variant"]) for r in group][::-1]
        values = [float(r["ratio_to_bare_asgi"]) for r in group][::-1]
        low = [v - float(r["min"]) / bare for v, r in zip(values, group[::-1], strict=True)]
        high = [float(r["max"]) / bare - v for v, r in zip(values, group[::-1], strict=True)]
        positions = list(range(len(group)))
        colors = ["tab:blue" if "atomcache" in label else "tab:gray" for label in labels]
        ax.barh(positions, values, color=colors, xerr=[low, high], capsize=3)
        for y, value, row in zip(positions, values, group[::-1], strict=True):
            text = f"{value:.2f} ({float(row['requests_per_second']):,.0f}/s"
            if row.get("p99_ms") is not None:
                text += f", p99 {float(row['p99_ms']):.1f} ms"
            text += ")"
            if row.get("ratio_to_uncached") is not None:
                text += f", {float(row['ratio_to_uncached']):.2f} x uncached"
            ax.text(value + 0.02, y + 0.25, text, fontsize=8)
            for target in row.get("targets", []):
                if target.get("minimum") is None:  # a latency goal: in the table only
                    continue
                x = target_ratio(target, ratios)
                ax.plot([x, x], [y - 0.4, y + 0.4], color="tab:red", linewidth=2)
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(positions, labels)
        ax.set_title(f"{framework} (bare ASGI {bare:,.0f} requests/s)", fontsize=10)
    axes[-1, 0].set_xlabel("requests/s as a ratio of the bare ASGI callable (the ceiling)")
    fig.legend(
        handles=[Line2D([], [], color="tab:red", linewidth=2, label="goal (minimum)")],
        loc="upper right",
    )
    fig.suptitle("HTTP benchmark (median of the rounds; bars: min-max)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_metrics(data: dict[str, Any], out: Path) -> None:
    """Write the fleet's counters over the stampede to `out`: reads, then the rare events."""
    series = data["series"]
    moments = [float(row["t"]) * 1000 for row in series]
    fig, (reads, rare) = plt.subplots(1, 2, figsize=(11, 4))
    for name in ("reads: miss", "reads: hit"):
        reads.step(moments, [float(row[name]) for row in series], where="post", label=name)
    reads.set_title("reads (atomcache_lookups_total)")
    reads.set_ylabel("count, fleet-wide")
    for name in ("computations", "waits ended (notified)"):
        rare.step(moments, [float(row[name]) for row in series], where="post", label=name)
    rare.set_title("computations and waits (histogram counts)")
    for ax in (reads, rare):
        ax.set_xlabel("ms since the callers started")
        ax.axvline(0, color="black", linewidth=0.8, linestyle="--")
        ax.legend(loc="upper left")
    fig.suptitle(
        f"a stampede through the metrics: {data['processes']} processes x {data['callers']} "
        f"callers, one cold key, a {float(data['compute_s']) * 1000:.0f} ms computation"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_stampede(rows: list[dict[str, Any]], out: Path) -> None:
    """Write computations and p50/p99 latency per strategy to `out`."""
    strategies = [str(row["strategy"]) for row in rows]
    colors = ["tab:blue" if s.startswith("atomcache") else "tab:gray" for s in strategies]
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


def draw_cdf(ax: Any, rows: list[dict[str, Any]], colors: dict[str, Any]) -> None:
    """Draw each row's caller latencies as a step CDF on `ax`; atomcache solid, others dashed."""
    for row in rows:
        latencies = sorted(float(value) for value in row["latencies_ms"])
        shares = [(index + 1) / len(latencies) for index in range(len(latencies))]
        name = str(row["strategy"])
        style = "-" if "atomcache" in name else "--"
        ax.step(latencies, shares, where="post", linestyle=style, linewidth=1.8,
                color=colors[name], label=name)  # fmt: skip
    compute_ms = float(rows[0]["compute_s"]) * 1000
    ax.axvline(compute_ms, color="black", linewidth=0.8, linestyle=":", label="computation")
    ax.set_xlabel("caller latency (ms)")
    ax.set_ylabel("share of the callers answered")


def plot_peers(rows: list[dict[str, Any]], out: Path) -> None:
    """Write each contender's latency CDF, computations and Redis commands to `out`."""
    first = rows[0]
    compute_ms = float(first["compute_s"]) * 1000
    names = [str(row["strategy"]) for row in rows]
    palette = plt.get_cmap("tab10")
    colors = {name: palette(index) for index, name in enumerate(names)}
    fig, ((whole, zoom), (computed, commands)) = plt.subplots(
        2, 2, figsize=(14, 9), gridspec_kw={"height_ratios": [3, 2]}
    )
    draw_cdf(whole, rows, colors)
    whole.set_xlim(left=0)
    whole.set_title("latency distribution (CDF), every caller")
    whole.legend(fontsize=8, loc="lower right")
    draw_cdf(zoom, rows, colors)
    zoom.set_xlim(compute_ms - 5, compute_ms + 60)
    zoom.set_title(f"the same, {compute_ms - 5:.0f} to {compute_ms + 60:.0f} ms")

    positions = list(range(len(rows)))[::-1]
    for ax, key, title in (
        (computed, "computations", "computations of the cold key"),
        (commands, "redis_commands", "Redis commands"),
    ):
        values = [int(row[key]) for row in rows]
        ax.barh(positions, values, color=[colors[name] for name in names])
        ax.set_xscale("log")
        ax.set_title(f"{title} (log scale)", fontsize=10)
        for y, value in zip(positions, values, strict=True):
            ax.text(value, y, f" {value:,}", va="center", fontsize=8)
        ax.set_yticks(positions, names)
        ax.set_xlim(right=max(values) * 8)

    fig.suptitle(
        f"Stampede against other caches: {first['processes']} processes x "
        f"{first['callers']} callers, {compute_ms:.0f} ms factory, each on a fresh Redis"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_core(rows: list[dict[str, Any]], out: Path) -> None:
    """Write the time per `get` of each variant, grouped by value size, to `out`."""
    payloads = list(dict.fromkeys(str(row["payload"]) for row in rows))
    variants = list(dict.fromkeys(str(row["variant"]) for row in rows))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(variants)
    for index, variant in enumerate(variants):
        group = [
            next(r for r in rows if r["payload"] == p and r["variant"] == variant) for p in payloads
        ]
        medians = [float(row["median_us"]) for row in group]
        spread = [
            [m - float(row["min_us"]) for m, row in zip(medians, group, strict=True)],
            [float(row["max_us"]) - m for m, row in zip(medians, group, strict=True)],
        ]
        positions = [x + (index - (len(variants) - 1) / 2) * width for x in range(len(payloads))]
        color = "tab:blue" if "atomcache" in variant else "tab:gray"
        bars = ax.bar(positions, medians, width, yerr=spread, capsize=3, color=color, label=variant)
        labels = [
            f"{m:.0f} us (x{float(row['ratio_to_baseline']):.2f})"
            for m, row in zip(medians, group, strict=True)
        ]
        ax.bar_label(bars, labels, fontsize=8, padding=2)
    ax.set_xticks(
        range(len(payloads)),
        [
            f"{p} ({next(int(r['bytes']) for r in rows if r['payload'] == p):,} bytes)"
            for p in payloads
        ],
    )
    ax.set_ylabel("time per call (us, median of the rounds; bars: min-max)")
    ax.legend(loc="upper left")
    first = rows[0]
    ax.set_title(
        f"Core get on a hit: {first['rounds']} rounds x {first['calls_per_round']} sequential calls"
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_propagation(data: dict[str, Any], out: Path) -> None:
    """Write the invalidations' delays as a CDF per kind, with the p99 goal, to `out`."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for kind, delays in data["delays_ms"].items():
        ordered = sorted(float(delay) for delay in delays)
        shares = [(index + 1) / len(ordered) for index in range(len(ordered))]
        figures = data["kinds"][kind]
        label = (
            f"{kind}: p50 {float(figures['p50_ms']):.1f} ms, p99 {float(figures['p99_ms']):.1f} ms"
        )
        ax.step(ordered, shares, where="post", linewidth=1.8, label=label)
    goal = float(data["goal_ms"])
    ax.axvline(goal, color="tab:red", linewidth=1.5, label=f"goal: p99 <= {goal:.0f} ms")
    ax.axhline(0.99, color="black", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ticks = [tick for tick in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if tick <= 2 * goal]
    ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("ms from the start of the writer's call to the reader's first fresh read")
    ax.set_ylabel("share of the samples")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"Invalidation reaching the local tiers: {data['processes']} processes, "
        f"{data['rounds']} rounds, {data['samples']} samples; p99 "
        f"{float(data['p99_ms']):.1f} ms",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


PLOTS: dict[str, Callable[[Any, Path], None]] = {
    "http": plot_http,
    "stampede": plot_stampede,
    "stampede_peers": plot_peers,
    "core": plot_core,
    "metrics": plot_metrics,
    "propagation": plot_propagation,
}


def main() -> None:
    """Plot whichever results exist and print where the plots went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", action="store_true", help=f"also copy them to {DOCS_ASSETS}")
    args = parser.parse_args()
    written: list[Path] = []
    for name, plot in PLOTS.items():
        rows = load(name)
        if rows:
            plot(rows, RESULTS / f"{name}.png")
            written.append(RESULTS / f"{name}.png")
    if not written:
        print(f"no results in {RESULTS}: run the benchmarks first (make bench)")
        return
    if args.docs:
        DOCS_ASSETS.mkdir(parents=True, exist_ok=True)
        written += [Path(shutil.copy(path, DOCS_ASSETS)) for path in list(written)]
    for path in written:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
