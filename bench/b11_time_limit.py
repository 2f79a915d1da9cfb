"""B11, the time limit: `rayfit run --test test.csv --time-limit L` with L = 30, 60 and 120 s on four
development tables, alone on the machine, each run timed from process start to exit. Every run's
wall must be at most 1.05 x its limit (the headline: the largest wall / limit), and the mean test
score at 120 s not below the mean at 30 s (more time never buys a worse model on average).
"""
from __future__ import annotations

import os

from bench.harness import check, finding, say, skipped
from bench.ray_session import scratch
from bench.tables import dev_tables, rayfit_run

TARGET = 1.05
LIMITS = (30, 60, 120)
TABLES = ("oj", "college", "titanic", "boston")  # 500-1,300 rows: two kinds of task, the sizes people try first


def run(quick: bool) -> dict:
    wanted = os.environ.get("RAYFIT_BENCH_TABLES")
    names = [n.strip() for n in wanted.split(",")] if wanted else TABLES[:1] if quick else TABLES
    tables = [t for t in dev_tables() if t.name in names]
    limits = LIMITS[:1] if quick else LIMITS
    if not tables:
        return skipped("no development tables (../shared/data/tables/)", f"<= {TARGET}")
    runs = {}
    with scratch("b11") as work:
        for limit in limits:
            for table in tables:
                say(f"B11 {table.name}: --time-limit {limit}")
                result = rayfit_run(table, work / f"{table.name}-{limit}", "--time-limit", str(limit))
                result["over_limit"] = result["wall_s"] / limit
                runs[f"{table.name}@{limit}"] = result
                say(f"B11 {table.name}@{limit}: {result['wall_s']:.1f}s ({result['over_limit']:.3f} x the limit), "
                    f"{table.metric} {result['score']:.4f}, best {result['best_model']}")

    def mean_score(limit: int):
        scores = [runs[f"{t.name}@{limit}"]["score"] for t in tables if f"{t.name}@{limit}" in runs]
        return sum(scores) / len(scores) if scores else None

    worst = max(r["over_limit"] for r in runs.values())
    figures = {"worst_wall_over_limit": worst, "limits": list(limits), "tables": [t.name for t in tables],
               **{f"mean_score_at_{limit}": mean_score(limit) for limit in limits}, "runs": runs}
    checks = [check("largest wall / limit", worst, "<=", TARGET)]
    if len(limits) > 1:
        checks.append(check(f"mean score at {limits[-1]} s - at {limits[0]} s",
                            mean_score(limits[-1]) - mean_score(limits[0]), ">=", 0.0))
    return finding(figures, checks)
