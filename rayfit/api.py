"""The Python API: `rayfit run`, `resume`, `submit` and a finished run, from `import rayfit`.

    import rayfit

    run = rayfit.run(data=frame, target="churned", **{"torch.epochs": 10})
    run.leaderboard()                      # a DataFrame, best model first
    run.best_model.predict(new_rows)       # raw rows in, labels out
    rayfit.load("runs/churn-20261130-101500").metrics

The CLI is a thin layer over these functions: the same experiment, the same validation, the same
run directory. Bad input raises `rayfit.UserError`, whose message is what the CLI prints after
`error:`; nothing is claimed on disk before the input has proved good. An interruption (Ctrl-C, a
notebook's stop button) raises `rayfit.Interrupted`, whose `run_dir` `rayfit.resume` finishes.

Ray: a session the caller started (`ray.init()`) is used and left running; otherwise the run
starts (or joins, see `ray.address`) its own and stops what it started.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from rayfit.errors import Interrupted, UserError, disk_problem


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where a cell can show a live display)."""
    import sys

    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


if in_notebook():
    import logging
    import warnings

    # Ray and tqdm say when imported in a notebook without ipywidgets that their widgets need them
    # (a line in the cell); nothing of rayfit's uses them.
    logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")

from rayfit.run_view import FittedModel, Run  # noqa: E402

__all__ = ["run", "resume", "load", "submit", "Run", "FittedModel", "Job"]

# A table given in memory is written as <name>.parquet, a Ray Dataset as a <name>/ folder: the run
# is named after it (dataframe-<time>) unless the config or `name=` says otherwise.
FRAME_NAME, DATASET_NAME = "dataframe", "dataset"
SHOWN_AS = "data (a DataFrame)"  # how messages name a table given in memory


def run(config=None, *, data=None, target: Optional[str] = None, task: str = "auto", test=None, out=None,
        progress: Any = "auto", verbose: bool = False, **overrides) -> Run:
    """Run an experiment, as `rayfit run` does, and return the finished run.

    config: a YAML path, a dict, or an `rayfit.config.Experiment`; None: the built-in quickstart.
    data: a .csv / .parquet file, a built-in set name, a pandas DataFrame (kept in the run as
        `source.parquet`, so that `resume` finds it) or a Ray Dataset (written as Parquet under the
        run's storage, then prepared like a file: `data.prepare_on: auto` prepares a large one on
        the cluster).
    target, task: as --target and --task (task "auto": the config's, else inferred).
    test: test rows of your own, as --test: a .csv / .parquet path or a DataFrame (kept in the run as
        `test.parquet`). Every row of `data` then trains or validates; every model is scored on these.
    out: the run's directory or storage URI (absent or empty); default <storage>/<name>-<time>.
    progress: "auto" (a live display in a notebook cell, else lines on the terminal), False (only
        the run's log), or a `rayfit.progress.Display`.
    verbose: Ray's own output on the terminal instead of in the run's log.
    overrides: config keys, dotted as with --set: `**{"torch.epochs": 10}`, `seed=1`,
        `storage="s3://bucket/runs"`, `**{"ray.address": "ray://head:10001"}`.
    """
    from rayfit.budget import command_clock

    with command_clock(), _user_errors() as shown, _data_source(data, config, overrides, shown) as (source, adopt), \
            _test_source(test, overrides, shown):
        exp = _experiment(config, source, target, task, overrides)
        return _run(exp, out, progress, verbose, adopt, shown)


def _run(exp, out, progress, verbose: bool, adopt: Optional[Path] = None, shown: Optional[dict] = None) -> Run:
    from rayfit.cluster.storage import plan_run_location
    from rayfit.pipeline import run_experiment

    location = plan_run_location(str(out) if out is not None else None, exp.storage, exp.name)
    run = [str(out) if out is not None else _as_given(location)]  # as the interruption's last line names it

    def renamed(claimed) -> None:  # a run started in the same moment took the planned name
        run[0] = _as_given(claimed)

    with _display(progress) as display, _interruptible(lambda: run[0]):
        display.aliases.update(shown or {})
        where = run_experiment(exp, location.uri, display, verbose=verbose, adopt=adopt,
                               renamed=renamed if out is None else None)
        display.say(f"report: {where.join('report.html')}")
    return Run(where)


def resume(run_dir, *, address: Optional[str] = None, progress: Any = "auto", verbose: bool = False,
           trust_unverified: bool = False) -> Run:
    """Finish an interrupted run from its checkpoints, as `rayfit resume` does; the finished run.

    address: join (or start) a different Ray this time (default: the run's own ray.address).
    trust_unverified: model directories without a manifest load (`--trust-unverified`)."""
    from rayfit.budget import command_clock
    from rayfit.evaluation.manifest import trusting_unverified
    from rayfit.pipeline import resume_experiment

    with command_clock(), _user_errors(), _display(progress) as display, _interruptible(str(run_dir)), \
            trusting_unverified(trust_unverified):
        where = resume_experiment(str(run_dir), display, verbose=verbose, address=address)
        display.say(f"report: {where.join('report.html')}")
    return Run(where)


def load(path_or_uri, *, trust_unverified: bool = False) -> Run:
    """The finished run at a directory or storage URI (`rayfit run --out`, a job's run).

    trust_unverified: its model directories load without a manifest (one rayfit cannot vouch for:
    written before manifests, or the manifest removed); changed files are refused still."""
    with _user_errors():
        return Run.load(path_or_uri, trust_unverified=trust_unverified)


class Job:
    """A run submitted to a Ray cluster as a job (`rayfit.submit`)."""

    def __init__(self, job_id: str, run_uri: str, address: str):
        self.id, self.run_uri, self.address = job_id, run_uri, address

    def _client(self):
        from rayfit.cluster.jobs import client

        return client(self.address)

    def status(self) -> str:
        """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
        return str(self._client().get_job_status(self.id)).split(".")[-1]

    def logs(self) -> str:
        """The job's output so far (rayfit's progress lines)."""
        return self._client().get_job_logs(self.id)

    def stop(self) -> bool:
        """Ask the cluster to stop the job; False if it had already finished."""
        return self._client().stop_job(self.id)

    def wait(self, progress: bool = True) -> Run:
        """Follow the job until it ends (its lines printed unless progress=False); its finished run.
        A failed or stopped job raises UserError saying why."""
        from rayfit.cluster.jobs import follow

        problem = follow(self._client(), self.id, (lambda line: print(line, flush=True)) if progress else
                         (lambda line: None))
        if problem:
            raise UserError(problem)
        return load(self.run_uri)

    def __repr__(self) -> str:
        return f"<rayfit.Job {self.id}: run {self.run_uri}>"


def submit(config=None, *, data=None, target: Optional[str] = None, task: str = "auto", test=None,
           address: Optional[str] = None, storage: Optional[str] = None, ship: bool = False, **overrides) -> Job:
    """Submit an experiment to a Ray cluster as a job (Ray Jobs API), as `rayfit submit --no-wait`
    does; `.wait()` follows it to its finished run.

    address: the cluster's dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS).
    storage: where the job writes its run: an object-store URI or a directory the cluster's nodes
        share with this machine (default: the config's storage).
    data, test: as in `run`; a DataFrame travels with the job as a Parquet file.
    ship: send this machine's rayfit with the job, for a cluster without it.
    """
    from rayfit.cluster.jobs import submit_job

    address = address or os.environ.get("RAY_API_SERVER_ADDRESS")
    with _user_errors() as shown, _data_source(data, config, overrides, shown, for_job=True) as (source, adopt), \
            _test_source(test, overrides, shown):
        exp = _experiment(config, source, target, task, overrides)
        job_id, where = submit_job(exp, address, storage, ship=ship)
    return Job(job_id, where.uri, address)


# ----------------------------------------------------------------------------------------------


def _experiment(config, source: Optional[str], target: Optional[str], task: str, overrides: dict):
    from rayfit.config import Experiment, build_experiment

    if config is not None and not isinstance(config, (str, os.PathLike, dict, Experiment)):
        raise UserError(f"config: expected a YAML path, a dict or an Experiment, got {type(config).__name__}")
    if isinstance(config, Experiment) and source is None and target is None and task in (None, "auto") \
            and not overrides:
        return config  # built and validated already (`rayfit run` builds it from the command line)
    assignments = [(key, _plain(value)) for key, value in overrides.items()]
    return build_experiment(config, source, target, None if task in (None, "auto") else task, assignments)


def _plain(value):
    """Python values as YAML would give them: a path as a string, a tuple as a list."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


@contextmanager
def _data_source(data, config, overrides: dict, shown: dict, for_job: bool = False) -> Iterator[tuple]:
    """(the source to put in the config, a file or folder the run takes in, or None).

    A DataFrame is written as Parquet to a temporary folder; the run moves it into its own
    directory (`resume` reads it there), and whatever is left is removed on the way out.
    """
    if data is None or isinstance(data, (str, os.PathLike)):
        yield (os.fspath(data) if data is not None else None), None
        return
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        with tempfile.TemporaryDirectory(prefix="rayfit-frame-") as tmp:
            path = Path(tmp) / f"{FRAME_NAME}.parquet"
            _write_frame(data, path)
            shown[str(path)] = SHOWN_AS
            yield str(path), path
        return
    if type(data).__module__.startswith("ray.data") and hasattr(data, "write_parquet"):
        if for_job:
            raise UserError("data: a Ray Dataset lives in this driver's Ray; for a job, write it where the "
                            "cluster reads (ds.write_parquet(URI)) and pass that path as data")
        folder = _dataset_folder(config, overrides)
        shown[str(folder)] = "data (a Ray Dataset)"
        try:
            data.write_parquet(str(folder))
            yield str(folder), folder
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)
        return
    raise UserError(f"data: expected a .csv / .parquet path, a built-in set name, a pandas DataFrame or a Ray "
                    f"Dataset, got {type(data).__name__}")


@contextmanager
def _test_source(test, overrides: dict, shown: dict) -> Iterator[None]:
    """`test=`: a path goes into the config as data.test; a DataFrame is written as Parquet to a
    temporary folder first (the run keeps a copy)."""
    if test is None:
        yield
        return
    if isinstance(test, (str, os.PathLike)):
        overrides["data.test"] = os.fspath(test)
        yield
        return
    import pandas as pd

    if not isinstance(test, pd.DataFrame):
        raise UserError(f"test: expected a .csv / .parquet path or a pandas DataFrame, got {type(test).__name__}")
    with tempfile.TemporaryDirectory(prefix="rayfit-test-") as tmp:
        path = Path(tmp) / "test.parquet"
        _write_frame(test, path, "test")
        shown[str(path)] = "test (a DataFrame)"
        overrides["data.test"] = str(path)
        yield


def _write_frame(frame, path: Path, what: str = "data") -> None:
    if frame.shape[1] == 0:
        raise UserError(f"{what}: the DataFrame has no columns")
    if len(frame) == 0:
        raise UserError(f"{what}: the DataFrame has no rows")
    names = [str(c) for c in frame.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{what}: the DataFrame has duplicate column names: {', '.join(map(repr, repeated))}")
    if any(name is not None for name in frame.index.names):  # a named index is data: keep it as columns
        frame = frame.reset_index()
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    try:
        frame.to_parquet(path, index=False)
    except Exception as exc:  # noqa: BLE001 - pyarrow's many conversion errors: a column it cannot store
        from rayfit.errors import one_line

        raise UserError(f"{what}: the DataFrame cannot be stored as Parquet: {one_line(exc)}") from None


def _dataset_folder(config, overrides: dict) -> Path:
    """Where a Ray Dataset is written: a hidden folder under the storage root, which every node of
    a cluster reaches (the run checks that it does)."""
    from rayfit.cluster.storage import DEFAULT_RUNS, Location

    storage = overrides.get("storage") or _experiment(config, None, None, "auto", {}).storage or DEFAULT_RUNS
    root = Location.of(os.fspath(storage))
    if not root.local:
        raise UserError(f"data: a Ray Dataset is written under a local or shared storage directory, not {root}; "
                        "write it there yourself (ds.write_parquet(URI)) and pass that URI as data")
    return root.path / f".input-{uuid.uuid4().hex[:12]}" / DATASET_NAME


@contextmanager
def _user_errors() -> Iterator[dict]:
    """UserError for what the user can fix, its message naming a table given in memory as such;
    a full or read-only disk is one too, as on the CLI. Yields the temporary paths to rename."""
    shown: dict[str, str] = {}
    try:
        yield shown
    except UserError as exc:
        message = str(exc)
        for path, name in shown.items():
            message = message.replace(path, name)
        if message == str(exc):
            raise
        raise UserError(message) from None
    except OSError as exc:
        problem = disk_problem(exc)
        if problem is None:
            raise
        raise UserError(problem) from None


@contextmanager
def _display(progress):
    from rayfit.progress import Display, NotebookDisplay
    from rayfit.run_dir import terminal_stream

    if isinstance(progress, Display):  # the caller's own (the CLI's), entered by the caller
        yield progress
        return
    if progress is False or progress is None:
        with open(os.devnull, "w") as nowhere, Display(nowhere, live=False) as display:
            yield display
        return
    if in_notebook():
        with NotebookDisplay() as display:
            yield display
        return
    stream = terminal_stream()
    try:
        with Display(stream) as display:
            yield display
    finally:
        stream.close()


@contextmanager
def _interruptible(run: Union[str, Callable[[], str]]):
    """Ctrl-C and SIGTERM raise Interrupted, whatever handlers Ray's libraries install meanwhile
    (rayfit/signals.py), tagged with the run they leave behind (`run`, or what it returns then; Ray
    turns ours into a plain KeyboardInterrupt when it arrives inside `ray.get`, so the tag is added
    on the way out)."""
    from rayfit.signals import stop_on_signals

    try:
        with stop_on_signals(exit_on_second=False):
            yield
    except Interrupted as exc:
        if exc.run_dir is None:
            raise Interrupted(run() if callable(run) else run) from None
        raise
    except KeyboardInterrupt:
        raise Interrupted(run() if callable(run) else run) from None


def _as_given(location) -> str:
    """A run's location as the user would type it: relative to here when it lies below."""
    if location.local and Path(location.uri).is_relative_to(Path.cwd()):
        return os.path.relpath(location.uri)
    return location.uri

