"""Stage: open the run. `rayfit run` claims a new run location once the data has proved good;
`rayfit resume` reopens one (a local directory or a storage URI) and loads its finished stages,
so that only the rest run."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from rayfit.budget import Budget, command_start
from rayfit.cluster.storage import Location, RunMirror, existing_run, is_uri, new_run_location, plan_run_location
from rayfit.config import Experiment, load_saved_experiment, revise, to_yaml
from rayfit.evaluation.tracking import check_tracking
from rayfit.progress import Display
from rayfit.lease import LEASE_FILE, RunLease, Taken
from rayfit.run_dir import claim_run_dir
from rayfit.run_record import CV_PREFIX, RunRecord
from rayfit.stages.prepare import check_data
from rayfit.evaluation.fitted import load_model
from rayfit.stages.state import RunState, Trained

# Read by Ray Train, Tune and the streaming workers straight from storage: never copied to the
# driver's working directory on resume.
READ_IN_PLACE = ("checkpoints", "tune", "data")
SOURCE_NAME = "source"  # RUN/source.parquet: a table the run was given in memory
TEST_NAME = "test"  # RUN/test.csv (or .parquet): the test file the run was given (data.test)


def new_run(exp: Experiment, out: Optional[str], display: Display, adopt: Optional[Path] = None,
            renamed: Optional[Callable[[Location], None]] = None) -> tuple[RunState, Callable[[], None]]:
    """The state of a new run, and `give_back`, which removes what the run claimed (for a request
    the preflight finds this cluster cannot run).

    `adopt`: the data source is this file or folder, which the run takes in as `RUN/source.parquet`
    (or `RUN/source/`) once claimed; a table handed to `rayfit.run` in memory, which `resume`
    needs again. `renamed`: `out` is a name rayfit chose (`<name>-<time>`); where a run started in the
    same moment claims it first, this run takes the next free name and hands it to `renamed`."""
    check_tracking(exp.tracking, exp.tracking_uri)  # no MLflow server there: said before any work
    location = Location.of(out) if out else plan_run_location(None, exp.storage, exp.name)
    if not location.local:
        location.parent.check_writable()  # no bucket, no credentials: said now, before any work
    source, metric, check_time = check_data(exp, display)
    while True:
        existed = location.local and location.path.exists()
        # the parents the claim creates (runs/ on a first run), nearest first: given back with the run
        new_parents = [p for p in location.path.parents if not p.exists()] if location.local else []
        try:
            lease = _claim(location)
            break
        except Taken:
            if renamed is None:
                raise
            location = new_run_location(location.parent, exp.name)  # the next free `<name>-<time>[-N]`
            renamed(location)
    try:
        return _opened(exp, location, display, adopt, source, metric, check_time, lease, existed, new_parents)
    except BaseException:
        lease.release()
        raise


def _opened(exp: Experiment, location: Location, display: Display, adopt: Optional[Path], source, metric: str,
            check_time: float, lease: RunLease, existed: bool,
            new_parents: list[Path]) -> tuple[RunState, Callable[[], None]]:
    """A claimed run's first files: the source it adopts, the test file, its config and record."""
    mirror = RunMirror(location)
    run_dir = mirror.workdir
    if adopt is not None:
        kept = run_dir / (SOURCE_NAME + adopt.suffix)
        shutil.move(adopt, kept)
        exp = revise(exp, [("data.source", location.join(kept.name).uri)])
        source.moved(exp.data.source)
    if exp.data.test and not is_uri(exp.data.test):  # kept in the run, where `resume` finds it
        given = Path(exp.data.test)
        kept = run_dir / (TEST_NAME + given.suffix)
        if given.is_dir():  # a folder of Parquet files
            shutil.copytree(given, kept)
        else:
            shutil.copyfile(given, kept)
        exp = revise(exp, [("data.test", location.join(kept.name).uri)])
        source.test_moved(exp.data.test)
    (run_dir / "config.yaml").write_text(to_yaml(exp))
    record = RunRecord.create(run_dir, exp.data.source)
    mirror.push()

    def give_back():
        display.detach_log()
        lease.release()
        if not location.local:
            location.delete()
            mirror.close()
        elif existed:
            for path in run_dir.iterdir():
                path.unlink()
        else:
            shutil.rmtree(run_dir)
            for parent in new_parents:  # gone again unless another run is there now
                try:
                    parent.rmdir()
                except OSError:
                    break

    state = RunState(exp, source, mirror, display, record, metric, stage_times={"data": check_time},
                     budget=_budget(exp, record), lease=lease)
    return state, give_back


def _claim(location: Location) -> RunLease:
    """A new run's location, claimed (Taken where another run got there first)."""
    if location.local:
        return claim_run_dir(location)
    if not location.is_empty_or_absent():  # another run got there since it was planned
        raise Taken(f"--out {location}: already exists and is not empty; rayfit never overwrites a run")
    return RunLease(location).create()  # best effort: object storage has no exclusive create


def _budget(exp: Experiment, record: RunRecord, used_before: float = 0.0) -> Optional[Budget]:
    """A time-limited run's budget, from this command's start; the run's record keeps what it used."""
    budget = Budget.of(exp.time_limit, command_start(), used_before)
    if budget is not None:
        record.clock = budget.used
    return budget


def resumed_run(run: str, display: Display, address: Optional[str] = None) -> RunState:
    """The state of the run at `run` (a directory or URI), its finished models and searches loaded
    from its record."""
    location = existing_run(run)
    lease = RunLease(location).take(run)  # before anything of the run is read: one driver at a time
    mirror = RunMirror(location)
    try:
        if mirror.staging:
            location.download(mirror.workdir, skip=(*READ_IN_PLACE, LEASE_FILE))
            mirror.mark_pushed()
        record = RunRecord.load(mirror.workdir, shown=run)
        # `rayfit resume --address`: this time, join (or start) a different Ray
        exp = load_saved_experiment(mirror.workdir / "config.yaml", [("ray.address", address)] if address else [])
        record.check_source(exp.data.source)
        source, metric, check_time = check_data(exp, display)
        state = RunState(exp, source, mirror, display, record, metric, stage_times={"data": check_time},
                         budget=_budget(exp, record, record.time_used_s), lease=lease)
        if state.budget is not None:
            display.say(f"time limit: {exp.time_limit:g} s, {record.time_used_s:.0f} s of it used before; "
                        f"{max(0.0, state.budget.left()):.0f} s left")
        for name, info in record.data["stages"].items():
            if name.startswith("search:"):
                state.searches[name.removeprefix("search:")] = info
            elif name.startswith(CV_PREFIX):
                state.cv[name.removeprefix(CV_PREFIX)] = info["cv"]
                state.refitted[name.removeprefix(CV_PREFIX)] = load_model(record.model_dir(name))
            else:
                state.trained[name] = Trained.from_record(info, record.model_dir(name))
    except BaseException:
        mirror.close()
        lease.release()
        raise
    display.say(f"resuming {location}: {len(record.data['stages'])} stage(s) already finished")
    return state
