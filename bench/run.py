"""Run rayfit's benchmarks, print a table, write bench/results/latest.json and BENCHMARKS.md's results.

    python -m bench.run                  # the whole suite (about 80 minutes on 2 cores)
    python -m bench.run --only B1,B3     # some of it; other entries of latest.json are kept
    python -m bench.run --quick          # tiny sizes: a smoke run, written to bench/results/quick.json

Benchmarks measure; they do not fail on a missed target. The exit code is 1 only when a benchmark
could not run to the end (its entry then holds the error).
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rayfit  # noqa: F401  (chooses tf-keras before anything imports TensorFlow)
from bench import (
    b1_laptop,
    b2_steady_state,
    b3_launch,
    b4_tuning,
    b5_scaling,
    b6_growth,
    b7_gpu,
    b8_trial_overhead,
    b9_selection,
    b10_small_tables,
    b11_time_limit,
    b12_accuracy,
    benchmarks_md,
)
from bench.harness import console, load_average, say, show_progress_on
from bench.machine import machine_info
from bench.paths import BENCHMARKS_MD, LATEST, QUICK
from rayfit.run_dir import output_to_log, terminal_stream


@dataclass(frozen=True)
class Benchmark:
    title: str
    run: Callable[[bool], dict]  # quick -> the entry: figures, ratio, target, met, checks
    target: str  # the headline target, also recorded when the benchmark fails
    needs_ray: bool  # runs in the suite's Ray session (B1 starts its own, in `rayfit run`)
    summary: tuple[str, ...]  # figures shown in the table


# In the order they run: B1, B10 and B11 first, before this process starts Ray, so two sessions never
# share the cores.
BENCHMARKS: dict[str, Benchmark] = {
    "B1": Benchmark("laptop overhead: rayfit run / plain script (cold; warm: a running Ray)", b1_laptop.run,
                    "<= 1.5", False, ("rayfit_wall_s", "plain_wall_s", "warm_ratio", "rayfit_warm_wall_s")),
    "B10": Benchmark("small tables: zero-config rayfit / AutoGluon medium_quality, whole-process wall (median)",
                     b10_small_tables.run, "<= 1.5", False,
                     ("rayfit_median_wall_s", "autogluon_median_wall_s", "rayfit_median_wall_s_300_1500_rows",
                      "at_or_above_autogluon", "mean_score_gap")),
    "B12": Benchmark("accuracy: zero-config rayfit's test score beside AutoGluon medium_quality's (B10's runs)",
                     b12_accuracy.run, ">= 14", False,
                     ("at_or_above_autogluon", "wins", "ties", "losses", "mean_difference")),
    "B11": Benchmark("time limit: largest wall / limit over 30, 60, 120 s on four tables", b11_time_limit.run,
                     "<= 1.05", False, ("mean_score_at_30", "mean_score_at_60", "mean_score_at_120")),
    "B2": Benchmark("steady state: Ray Train 1 worker / plain loop, s per epoch", b2_steady_state.run, "<= 1.05", True,
                    ("torch_ray_s_per_epoch", "torch_plain_s_per_epoch", "keras_ratio", "keras_ray_s_per_epoch",
                     "keras_plain_s_per_epoch")),
    "B3": Benchmark("fixed cost per launch: rayfit / stock empty TorchTrainer.fit()", b3_launch.run, "<= 1.5", True,
                    ("rayfit_launch_s", "stock_launch_s")),
    "B4": Benchmark("tuning: 32-trial ASHA / full budget (FIFO)", b4_tuning.run, "<= 0.333", True,
                    ("asha_epochs_trained", "fifo_epochs_trained", "accuracy_gap_points", "asha_wall_s",
                     "asha_wall_over_training", "asha_wall_over_time_total")),
    "B5": Benchmark("data-parallel scaling: 2 workers / 1 worker (CNN)", b5_scaling.run, ">= 1.7", True,
                    ("1w1t_rows_per_s", "2w1t_rows_per_s", "1w2t_rows_per_s", "speedup_1w2t_over_1w")),
    "B6": Benchmark("growth end to end, prepared on the cluster: s per row, 5M / 100k rows", b6_growth.run,
                    "<= 1.1", False, ("s_per_row_ratio", "driver_memory_ratio", "peak_memory_ratio",
                                      "5000000_data_s", "5000000_wall_s")),
    "B7": Benchmark("GPU: Ray Train / plain PyTorch, utilization, mixed precision", b7_gpu.run, "<= 1.05", True,
                    ("ray_rows_per_s", "plain_rows_per_s", "gpu_utilization_pct", "mixed_precision_speedup")),
    "B8": Benchmark("trial overhead: 256 one-epoch trials, rayfit / stock Tune (reuse_actors) per trial",
                    b8_trial_overhead.run, "<= 0.25", True,
                    ("rayfit_overhead_s_per_trial", "stock_reuse_overhead_s_per_trial", "stock_overhead_s_per_trial",
                     "rayfit_wall_s", "stock_reuse_wall_s")),
    "B9": Benchmark("selection on small tables: cross-validation regret / validation-split regret",
                    b9_selection.run, "<= 1", False, ("val_rule_mean_regret", "cv_rule_mean_regret")),
}
SUMMARIES = {name: b.summary for name, b in BENCHMARKS.items()}


def _select(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [n.strip().upper() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"error: unknown benchmark {unknown[0]}; choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in names]


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(results, indent=2, default=_jsonable) + "\n")
    partial.replace(path)


def run_one(name: str, quick: bool, machine: dict) -> dict:
    benchmark = BENCHMARKS[name]
    say(f"[bold]{name}[/bold]: {benchmark.title}{' (quick)' if quick else ''}")
    before = load_average()
    started = time.perf_counter()
    try:
        entry = benchmark.run(quick)
    except Exception as exc:  # recorded, and the suite goes on with the next benchmark
        console.print(traceback.format_exc(), markup=False)
        entry = {"figures": {}, "ratio": None, "target": benchmark.target, "met": False, "checks": [],
                 "error": f"{type(exc).__name__}: {exc}"}
    seconds = time.perf_counter() - started
    say(f"{name}: {benchmarks_md.status(entry)}, ratio {benchmarks_md.with_interval(entry)} "
        f"(target {entry.get('target')}), {seconds:.0f}s")
    return {"title": benchmark.title, **entry, "machine": machine, "quick": quick, "seconds": round(seconds, 1),
            "ran_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "load_average": {"before": before, "after": load_average()}}


def print_table(results: dict) -> None:
    from rich.table import Table

    table = Table(title="rayfit benchmarks", show_lines=False)
    for column in ("", "benchmark", "ratio", "target", "result", "seconds", "key figures"):
        table.add_column(column, overflow="fold")
    for name in sorted(results):
        entry = results[name]
        result = benchmarks_md.status(entry)
        style = {"met": "green", "not met": "red", "error": "bold red"}.get(result, "yellow")
        table.add_row(name, entry.get("title", ""), benchmarks_md.with_interval(entry),
                      entry.get("target", ""), f"[{style}]{result}[/{style}]",
                      benchmarks_md.format_value(entry.get("seconds")),
                      benchmarks_md.key_figures(entry, SUMMARIES.get(name, ())))
    console.print(table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="rayfit's benchmark suite (see BENCHMARKS.md)")
    parser.add_argument("--only", help="comma-separated benchmarks, e.g. B1,B3")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke run of the code")
    parser.add_argument("--out", type=Path, help=f"results file (default {LATEST}; with --quick {QUICK})")
    parser.add_argument("--no-markdown", action="store_true", help="do not rewrite BENCHMARKS.md's results")
    parser.add_argument("--verbose", action="store_true", help="Ray's own output on the terminal, not in the log")
    args = parser.parse_args(argv)
    names = _select(args.only)
    out = args.out or (QUICK if args.quick else LATEST)
    log = out.with_suffix(".log")
    out.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")  # this run's output only
    # Ray's and TensorFlow's output goes to the log, as in `rayfit run`; progress stays on the terminal.
    show_progress_on(terminal_stream(), log_too=not args.verbose)
    with output_to_log(log, args.verbose):
        say(f"Ray's output: {log}" if not args.verbose else "Ray's output: on the terminal")
        return _run_suite(names, args, out)


def _run_suite(names: list[str], args, out: Path) -> int:
    results = json.loads(out.read_text()) if out.exists() else {}  # entries not rerun are kept
    machine = machine_info()
    load = load_average()
    say(f"{len(names)} benchmark(s): {', '.join(names)}; {machine['usable_cpus']} CPUs, load {load}")
    if load and load[0] > 0.5 * (machine["usable_cpus"] or 1):
        say("[yellow]the machine is busy: timings will be noisy (the load average is recorded with each result)[/yellow]")

    ray_started = False
    failed = False
    try:
        for name in names:
            if BENCHMARKS[name].needs_ray and not ray_started:
                from bench.ray_session import start_ray

                say("starting Ray (rayfit.cluster.session.ensure_ray)")
                start_ray()
                ray_started = True
            results[name] = run_one(name, args.quick, machine)
            failed |= bool(results[name].get("error"))
            write_results(out, results)  # after each benchmark: an interrupted suite keeps what it measured
    finally:
        if ray_started:
            import ray

            ray.shutdown()
    print_table(results)
    say(f"results: {out}")
    if out == LATEST and not args.no_markdown and BENCHMARKS_MD.exists():
        benchmarks_md.update(BENCHMARKS_MD, results, SUMMARIES)
        say(f"results section rewritten: {BENCHMARKS_MD}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
