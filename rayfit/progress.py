"""Live progress: stages, epochs and trials on the user's terminal.

Training workers run in other processes; rank 0 pushes epoch events to a small actor (`ProgressHub`)
and a driver thread drains it into the display. On a terminal the display is a rich live view;
otherwise (CI, a pipe) it prints one plain line per event.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Optional, TextIO

import ray
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from rayfit.units import format_seconds

# The progress hub not answering a drain in time is a busy node, not a lost one, until this long
# has passed: its events are asked for again (heartbeats of the stage's progress resume with them).
HUB_PATIENCE_S = 120.0


@ray.remote(num_cpus=0)
class ProgressHub:
    """A mailbox: workers push events, the driver drains them. Made with `progress_hub()`."""

    def __init__(self):
        self.events: list[dict] = []
        self.decisions: dict[tuple, bool] = {}

    def out_of_time(self, stage: str, epoch: int, answer: bool) -> bool:
        """Whether `stage` stops after `epoch` for the time limit: the first worker's answer, for all."""
        return self.decisions.setdefault((stage, epoch), answer)

    def push(self, event: dict) -> None:
        self.events.append(event)

    def drain(self) -> list[dict]:
        events, self.events = self.events, []
        return events


def progress_hub():
    """A ProgressHub on the driver's own node: it lives as long as the driver, whichever worker
    node is lost."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return ProgressHub.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()


def _format_metrics(metrics: dict) -> str:
    keys = [k for k in ("train_loss", "val_loss", "val_accuracy") if metrics.get(k) is not None]
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys)


class Display:
    """Stages with a bar each, on the terminal; every event is also recorded in the run's log."""

    def __init__(self, stream: TextIO, live: Optional[bool] = None):
        self.console = Console(file=stream, force_terminal=live, highlight=False)
        self.live = self.console.is_terminal if live is None else live
        self.started = time.perf_counter()
        self._tasks: dict[str, int] = {}
        self._stage_started: dict[str, float] = {}
        self._lock = threading.RLock()
        self._log: Optional[TextIO] = None
        # Called with every line shown (and its stage, if any): the watchdog's heartbeats.
        self.listeners: list[Callable[[Optional[str]], None]] = []
        # Paths shown by another name: the temporary file a DataFrame given to rayfit.run is in
        self.aliases: dict[str, str] = {}
        # While a hub is followed: drains its pending events, so a stage's last epochs are shown
        # before the line that says it is done
        self._pending: Optional[Callable[[], None]] = None
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description:<18}"), BarColumn(bar_width=28),
            MofNCompleteColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
            console=self.console, transient=False,
        ) if self.live else None

    # -- lifecycle
    def __enter__(self):
        if self.progress:
            # the first row: the whole command's elapsed time
            self.progress.add_task("elapsed", total=None, info="")
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.stop()
        self.detach_log()

    def attach_log(self, path) -> None:
        """From now on every line also goes to the run's log file."""
        self._log = open(path, "a", buffering=1)

    def detach_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _emit(self, text: str, to_terminal: bool, stage: Optional[str] = None) -> None:
        """One plain line: always to the log; to the terminal only without the live view."""
        line = f"[{time.perf_counter() - self.started:6.1f}s] {text}"
        for listener in self.listeners:
            listener(stage)
        if self._log is not None:
            self._log.write(f"rayfit {line}\n")
        if to_terminal and not self.progress:
            # Not a terminal (CI, a pipe, a file): the line as it is, never wrapped at a guessed width.
            self.console.file.write(line + "\n")
            self.console.file.flush()

    def _named(self, text: str) -> str:
        for path, name in self.aliases.items():
            text = text.replace(path, name)
        return text

    def say(self, text: str) -> None:
        text = self._named(text)
        if self.progress:
            self.progress.console.print(text, markup=False, highlight=False)
        self._emit(text, to_terminal=True)

    # -- stages
    def start(self, stage: str, description: str, total: Optional[int] = None) -> None:
        description = self._named(description)
        self._stage_started[stage] = time.perf_counter()
        with self._lock:
            if self.progress:
                self._tasks[stage] = self.progress.add_task(description, total=total, info="")
            self._emit(f"{stage}: {description}", to_terminal=True, stage=stage)

    def advance(self, stage: str, completed: int, total: Optional[int] = None, info: str = "", echo: bool = True) -> None:
        left = self.remaining(stage, completed, total)
        if left is not None:
            info = f"{info}, about {format_seconds(left)} left" if info else f"about {format_seconds(left)} left"
        with self._lock:
            if self.progress and stage in self._tasks:
                self.progress.update(self._tasks[stage], completed=completed, total=total, info=info)
            for listener in self.listeners:  # a quiet update is progress too
                listener(stage)
            if echo:
                self._emit(f"{stage}: {completed}{f'/{total}' if total else ''} {info}".rstrip(), to_terminal=True,
                           stage=stage)

    def remaining(self, stage: str, completed: int, total: Optional[int]) -> Optional[float]:
        """The stage's remaining time at its pace so far (an upper bound where early stopping may end
        it sooner); None before the first step, after the last, or without a total."""
        started = self._stage_started.get(stage)
        if started is None or not total or not 0 < completed < total:
            return None
        return (time.perf_counter() - started) / completed * (total - completed)

    def finish(self, stage: str, summary: str) -> None:
        if self._pending is not None:
            self._pending()
        with self._lock:
            if self.progress and stage in self._tasks:
                task = self.progress.tasks[self._tasks[stage]]
                self.progress.update(self._tasks[stage], total=task.total or 1, completed=task.total or 1, info=summary)
            self._emit(f"{stage}: done, {summary}", to_terminal=True, stage=stage)

    # -- events from workers and Tune
    def on_event(self, event: dict) -> None:
        """An epoch's metrics, or a note a worker has for the user (a checkpoint it passed over)."""
        if "note" in event:
            self.say(f"{event['stage']}: {event['note']}")
        else:
            self.advance(event["stage"], event["epoch"], event.get("epochs"),
                         _format_metrics(event.get("metrics", {})))

    @contextmanager
    def follow(self, hub, interval: float = 0.5):
        """Drain the hub into the display while the body runs (a Ray Train fit blocks the driver)."""
        stop = threading.Event()
        lost: list[str] = []
        one_at_a_time = threading.Lock()  # the pump and a finishing stage: events stay in order
        slow: list[float] = []  # when the hub stopped answering in time, while it does not
        asked: list = []  # a drain the hub has not answered yet: its events are that answer's

        def drain() -> None:
            with one_at_a_time:
                if lost:
                    return
                try:
                    if not asked:
                        asked.append(hub.drain.remote())
                    events = ray.get(asked[0], timeout=10)
                    asked.clear()
                except ray.exceptions.GetTimeoutError:  # a busy node: the same answer awaited next time
                    slow[:] = slow or [time.monotonic()]
                    if time.monotonic() - slow[0] < HUB_PATIENCE_S:
                        return
                    exc = TimeoutError(f"no answer for {HUB_PATIENCE_S:.0f} s")
                except Exception as exc_:  # noqa: BLE001 - e.g. its node is gone: progress is, training is not
                    exc = exc_
                else:
                    slow.clear()
                    for event in events:
                        self.on_event(event)
                    return
                lost.append((str(exc).strip().splitlines() or [type(exc).__name__])[0])
                self.say(f"progress: epoch lines stop here, the progress actor was lost ({lost[0]})")

        def pump():
            while True:
                drain()
                if stop.wait(interval):
                    break

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        self._pending = drain
        try:
            yield
        finally:
            self._pending = None
            stop.set()
            thread.join()
            drain()


class NotebookDisplay(Display):
    """Progress in a Jupyter cell: one HTML table of the stages (with their bars) and the latest
    messages, updated in place through a display handle. Every event still goes to the run's log."""

    def __init__(self, min_interval_s: float = 0.25, messages: int = 6):
        import io
        from collections import deque

        super().__init__(io.StringIO(), live=False)
        self._rows: dict[str, dict] = {}
        self._messages: deque[str] = deque(maxlen=messages)
        self._handle = None
        self._shown = 0.0
        self._min_interval_s = min_interval_s

    def __enter__(self):
        from IPython.display import HTML, display

        self._handle = display(HTML(self._html()), display_id=True)
        return self

    def __exit__(self, *exc):
        self._refresh(force=True)
        super().__exit__(*exc)

    def say(self, text: str) -> None:
        super().say(text)
        with self._lock:
            self._messages.append(self._named(text))
        self._refresh(force=True)

    def start(self, stage: str, description: str, total: Optional[int] = None) -> None:
        super().start(stage, description, total)
        with self._lock:
            self._rows[stage] = {"description": self._named(description), "completed": 0, "total": total, "info": "",
                                 "ended": None}
        self._refresh(force=True)

    def advance(self, stage: str, completed: int, total: Optional[int] = None, info: str = "", echo: bool = True) -> None:
        super().advance(stage, completed, total, info, echo)
        with self._lock:
            row = self._rows.get(stage)
            if row is not None:
                row.update(completed=completed, total=total, info=info)
        self._refresh()

    def finish(self, stage: str, summary: str) -> None:
        super().finish(stage, summary)
        with self._lock:
            row = self._rows.get(stage)
            if row is not None:
                row.update(completed=row["total"] or 1, total=row["total"] or 1, info=summary,
                           ended=time.perf_counter())
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        if self._handle is None:
            return
        now = time.perf_counter()
        if not force and now - self._shown < self._min_interval_s:
            return
        from IPython.display import HTML

        with self._lock:
            self._shown = now
            self._handle.update(HTML(self._html()))

    def _html(self) -> str:
        import html

        now = time.perf_counter()
        cells = []
        for stage, row in self._rows.items():
            total, done = row["total"], row["ended"] is not None
            if total:
                bar = f"<progress value='{row['completed']}' max='{total}'></progress> {row['completed']}/{total}"
            else:
                bar = "done" if done else "running"
            took = format_seconds((row["ended"] or now) - self._stage_started[stage])
            status = "&#10003;" if done else "&#8230;"
            cells.append(f"<tr><td>{status}</td><td><b>{html.escape(stage)}</b></td>"
                         f"<td>{html.escape(row['description'])}</td><td>{bar}</td>"
                         f"<td>{html.escape(row['info'])}</td><td>{took}</td></tr>")
        messages = "".join(f"<div>{html.escape(m)}</div>" for m in self._messages)
        return (f"<div class='rayfit-progress'><b>rayfit</b> {format_seconds(now - self.started)}"
                f"<table>{''.join(cells)}</table>"
                + (f"<div style='font-family:monospace'>{messages}</div>" if messages else "") + "</div>")
