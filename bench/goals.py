"""The benchmarks' goals, met or not, from the results the other benchmarks wrote.

Reads bench/results/http.json (bench/http.py: requests/s and p99 as ratios to other
variants of the same run, medians over its rounds), core.json (bench/core.py: a `get`
of an 8 KB value on Redis against redis-py's `GET` + `json.loads`) and hit_path.json
(bench/hit_path.py: the adapter's own microseconds per hit, and the bytes a local-tier
entry holds beyond its body) and propagation.json (bench/propagation.py: how soon an
invalidation in one process reaches the other processes' local tiers), and prints one
line per goal: the figure measured, the goal, and whether it is met. A missing result
file is said, not guessed. Goals are reported only: the exit status is 0 whether they
are met or not.

    python bench/goals.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("results")
CORE_GOAL = 1.10  # atomcache get of 8 KB on Redis, at most this many times the baseline


def load(name: str) -> Any:
    """The parsed `bench/results/<name>.json`, or None if that benchmark has not run."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def http_goals(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """Each HTTP goal: what it is, the ratio measured, whether it is met."""
    found = []
    for row in rows:
        for target in row["targets"]:
            what = f"{row['framework']}: {row['variant']} {target['goal']}"
            found.append((what, f"{target['ratio']:.2f}", bool(target["met"])))
    return found


def core_goals(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """The core `get` goal: 8 KB on Redis <= 1.10 x redis-py GET + json.loads."""
    return [
        (
            f"core: get of {row['bytes']:,} bytes on Redis <= {CORE_GOAL:.2f} x redis-py",
            f"{row['ratio_to_baseline']:.2f} ({row['ratio_to_same_pool']:.2f} same pool)",
            row["ratio_to_baseline"] <= CORE_GOAL,
        )
        for row in rows
        if row["payload"] == "8 KB" and row["variant"].startswith("atomcache")
    ]


def hit_path_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The in-process goals: the adapter's own work per hit, memory per local entry."""
    found = [
        (
            f"in process: {row['variant']}, adapter's own work <= {row['goal_us']:.0f} us",
            f"{row['adapter_us']:.1f} us",
            bool(row["met"]),
        )
        for row in results["hit_path"]
        if row["adapter_us"] is not None
    ]
    memory = results["memory"]
    found.append(
        (
            f"memory: local-tier entry beyond its body <= {memory['goal_bytes']:,} bytes",
            f"{memory['beyond_body_bytes']:,.0f} bytes",
            bool(memory["met"]),
        )
    )
    return found


def propagation_goals(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The local tier's goal: another instance's invalidation seen within the goal, p99."""
    what = f"local tier: another process's invalidation seen, p99 <= {results['goal_ms']:.0f} ms"
    measured = f"{results['p99_ms']:.1f} ms ({results['samples']} samples)"
    return [(what, measured, bool(results["met"]))]


def main() -> None:
    """Print every goal with its figure and verdict."""
    goals: list[tuple[str, str, bool]] = []
    sources = (
        ("http", http_goals),
        ("core", core_goals),
        ("hit_path", hit_path_goals),
        ("propagation", propagation_goals),
    )
    missing = []
    for name, read in sources:
        results = load(name)
        if results is None:
            missing.append(f"bench/results/{name}.json")
        else:
            goals += read(results)
    width = max((len(what) for what, _, _ in goals), default=10)
    print(f"{'goal':<{width}} {'measured':>24} verdict")
    for what, measured, met in goals:
        print(f"{what:<{width}} {measured:>24} {'met' if met else 'NOT met'}")
    met_count = sum(met for _, _, met in goals)
    print(f"{met_count} of {len(goals)} goals met")
    for path in missing:
        print(f"not measured: {path} is missing (run its benchmark first)")


if __name__ == "__main__":
    main()
