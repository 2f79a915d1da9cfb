"""What every benchmark is built on: alternating repeated measurements, medians, targets, progress.

A comparison runs its sides in one `bench.run` process, interleaved ABBA-style (A B, B A, A B, ...)
so that a drift of the machine (another job starting, a cache warming) lands on both sides alike,
and quotes the median of the repeats on each side, the ratio of the medians and its 95% bootstrap
interval. A target counts as met only when the whole interval meets it.
"""
from __future__ import annotations

import math
import operator
import os
import statistics
import sys
import threading
import time
from typing import Callable, Optional, Sequence, TypeVar

from rich.console import Console

console = Console(highlight=False)
_STARTED = time.perf_counter()
_LOG_TOO = False  # also write progress lines to sys.stdout (the log, while Ray's output goes there)
T = TypeVar("T")


def show_progress_on(terminal, log_too: bool) -> None:
    """Progress lines go to `terminal` (and, with log_too, to sys.stdout as well)."""
    global _LOG_TOO
    console.file = terminal
    if not console.is_terminal:
        console.width = 160  # a pipe or CI log: rich would assume 80 columns and fold the table
    _LOG_TOO = log_too


def say(message: str) -> None:
    """One progress line, stamped with the time since the suite started."""
    stamp = f"[{time.perf_counter() - _STARTED:7.1f}s]"
    console.print(f"[dim]{stamp}[/dim] {message}")
    if _LOG_TOO:
        print(f"bench {stamp} {Console().render_str(message).plain}", file=sys.stdout, flush=True)


def alternate(sides: dict[str, Callable[[int], T]], repeats: int, label: str = "") -> dict[str, list[T]]:
    """Run each side `repeats` times, interleaved ABBA; side(repeat_index) -> one measurement."""
    names = list(sides)
    samples: dict[str, list[T]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            say(f"{label} {name}: repeat {repeat + 1}/{repeats}")
            started = time.perf_counter()
            samples[name].append(sides[name](repeat))
            say(f"{label} {name}: repeat {repeat + 1}/{repeats} took {time.perf_counter() - started:.1f}s")
    return samples


def median(values: Sequence[float]) -> Optional[float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else None


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def bootstrap_ratio(numerator: Sequence, denominator: Sequence, level: float = 0.95, resamples: int = 4000,
                    seed: int = 0) -> Optional[tuple[float, float]]:
    """The `level` percentile interval of median(numerator) / median(denominator).

    Each side is a list of repeats; a repeat is one value (a whole run's wall time) or a list of
    values (its epochs). Two levels are resampled, as they vary: the repeats with replacement, then
    the values within each drawn repeat, so a repeat that ran slow as a whole widens the interval
    instead of passing for many independent epochs."""
    import numpy as np

    def groups(side) -> list:
        found = [np.asarray([v for v in (r if isinstance(r, (list, tuple)) else [r])
                             if v is not None and not math.isnan(v)], dtype=float) for r in side]
        return [g for g in found if len(g)]

    num, den = groups(numerator), groups(denominator)
    if not num or not den:
        return None
    rng = np.random.default_rng(seed)

    def draw(side: list) -> float:
        picked = [side[i] for i in rng.integers(0, len(side), len(side))]
        return float(np.median(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in picked])))

    ratios = np.array([draw(num) / draw(den) for _ in range(resamples)])
    tail = (1 - level) / 2 * 100
    return float(np.percentile(ratios, tail)), float(np.percentile(ratios, 100 - tail))


def steady(values: Sequence[float], skip: int = 1) -> list[float]:
    """Per-epoch values without the first `skip` (warm-up: allocation, graph tracing, caches)."""
    return list(values[skip:]) if len(values) > skip else list(values)


_OPERATORS = {"<=": operator.le, ">=": operator.ge}


def check(name: str, value: Optional[float], op: str, bound: float, unit: str = "",
          interval: Optional[tuple[float, float]] = None) -> dict:
    """One target: `value op bound`, e.g. check("torch", 1.03, "<=", 1.05). No value: not met. With
    an interval, met only when its far end meets the bound (the upper end for <=, the lower for >=)."""
    met = value is not None and not math.isnan(value) and _OPERATORS[op](value, bound)
    if interval is not None:
        met = met and _OPERATORS[op](interval[1] if op == "<=" else interval[0], bound)
    entry = {"name": name, "ratio": _round(value), "target": f"{op} {bound:g}{unit}", "met": bool(met)}
    if interval is not None:
        entry["interval"] = [_round(interval[0]), _round(interval[1])]
    return entry


def finding(figures: dict, checks: list[dict], headline: int = 0) -> dict:
    """A benchmark's entry: its figures; the headline check's ratio and target; met when every check is."""
    head = checks[headline]
    return {"figures": _round(figures), "ratio": head["ratio"], "interval": head.get("interval"),
            "target": head["target"], "met": all(c["met"] for c in checks), "checks": checks}


def skipped(reason: str, target: str) -> dict:
    """A benchmark that could not run here: no figures are made up."""
    return {"figures": {}, "ratio": None, "target": target, "met": False, "skipped": reason, "checks": []}


def load_average() -> Optional[list[float]]:
    """1, 5, 15-minute load: with 2 cores, above ~2 means another job shared the machine."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _round(value):
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    return value


class Sampler:
    """A driver thread that calls `sample()` every `interval_s` while a `with` block runs."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval_s):
                return

    def sample(self) -> None:
        raise NotImplementedError
