"""BENCHMARKS.md's results section, rendered from bench/results/latest.json so that the numbers
there are always the measured ones. Only the text between the two markers is ever rewritten."""
from __future__ import annotations

import json
import math
from pathlib import Path

BEGIN = "<!-- bench:results:begin (rendered from bench/results/latest.json by `python -m bench.run`; do not edit) -->"
END = "<!-- bench:results:end -->"


def format_value(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


def with_interval(entry: dict) -> str:
    """A ratio and, where measured, its 95% interval: 1.02 [0.97, 1.08]."""
    interval = entry.get("interval")
    text = format_value(entry.get("ratio"))
    return f"{text} [{format_value(interval[0])}, {format_value(interval[1])}]" if interval else text


def status(entry: dict) -> str:
    if entry.get("error"):
        return "error"
    if entry.get("skipped"):
        return "not run"
    return "met" if entry.get("met") else "not met"


def key_figures(entry: dict, keys) -> str:
    figures = entry.get("figures", {})
    if entry.get("skipped"):
        return f"skipped: {entry['skipped']}"
    if entry.get("error"):
        return f"error: {entry['error'].splitlines()[0][:120]}"
    return "; ".join(f"{k} {format_value(figures[k])}" for k in keys if k in figures)


def _machine_line(machine: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v)
    gpus = "; ".join(machine.get("gpus") or []) or "no GPU"
    return (f"{machine.get('cpu_model')}, {machine.get('usable_cpus')} CPUs, {machine.get('ram_gib')} GiB RAM, "
            f"{gpus}; Python {machine.get('python')}, {versions}")


def render(results: dict, summaries: dict[str, tuple[str, ...]]) -> str:
    """The results section: one table row per benchmark, then each check, then the machines."""
    if not results:
        return "Not measured yet: run `make bench` (or `python -m bench.run`)."
    lines = ["| | benchmark | ratio | target | result | key figures |", "|---|---|---|---|---|---|"]
    for name in sorted(results):
        entry = results[name]
        lines.append(f"| {name} | {entry.get('title', '')} | {with_interval(entry)} | "
                     f"{entry.get('target', '')} | {status(entry)} | {key_figures(entry, summaries.get(name, ()))} |")
    lines += ["", "Every target:", ""]
    for name in sorted(results):
        for item in results[name].get("checks", []):
            lines.append(f"- {name} {item['name']}: {with_interval(item)} (target {item['target']}): "
                         f"{'met' if item['met'] else 'not met'}")
    machines = {json.dumps(e.get("machine", {}), sort_keys=True) for e in results.values()}
    lines += ["", "Measured on:", ""]
    lines += [f"- {_machine_line(json.loads(m))}" for m in sorted(machines)]
    runs = ", ".join(f"{name} {results[name].get('ran_at', '?')} ({format_value(results[name].get('seconds'))} s, "
                     f"load {format_value((results[name].get('load_average') or {}).get('before'))})"
                     for name in sorted(results))
    lines += ["", f"Runs: {runs}. All figures: `bench/results/latest.json`."]
    return "\n".join(lines)


def update(path: Path, results: dict, summaries: dict[str, tuple[str, ...]]) -> None:
    """Replace the text between the markers of BENCHMARKS.md with the rendered results."""
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: the results markers are missing ({BEGIN!r} ... {END!r})")
    body = render(results, summaries)
    path.write_text(text[:start + len(BEGIN)] + "\n" + body + "\n" + text[end:])
