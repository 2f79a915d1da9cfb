"""Stage: open the run. `rayfit run` claims a new run directory once the data has proved good;
`rayfit resume` reopens one and loads its finished stages, so that only the rest run."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from rayfit.config import Experiment, load_experiment, to_yaml
from rayfit.errors import UserError
from rayfit.progress import Display
from rayfit.run_dir import claim_run_dir, plan_run_dir
from rayfit.run_record import RunRecord
from rayfit.stages.prepare import prepare_data
from rayfit.stages.state import RunState, Trained


def new_run(exp: Experiment, out: Optional[str], display: Display) -> tuple[RunState, Callable[[], None]]:
    """The state of a new run, and `give_back`, which removes what the run claimed (for a request
    the preflight finds this cluster cannot run)."""
    run_path = plan_run_dir(out, exp.name)
    prepared, metric, prep_time = prepare_data(exp, display)
    existed = run_path.exists()
    run_dir = claim_run_dir(run_path)
    (run_dir / "config.yaml").write_text(to_yaml(exp))
    record = RunRecord.create(run_dir, exp.data.source)

    def give_back():
        display.detach_log()
        if existed:
            for path in run_dir.iterdir():
                path.unlink()
        else:
            shutil.rmtree(run_dir)

    return RunState(exp, prepared, run_dir, display, record, metric, stage_times={"data": prep_time}), give_back


def resumed_run(run_dir: Path, display: Display, address: Optional[str] = None) -> RunState:
    """The state of the run in `run_dir`, its finished models and searches loaded from its record."""
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    record = RunRecord.load(run_dir)
    exp = load_experiment(str(run_dir / "config.yaml"))
    if address:  # `rayfit resume --address`: this time, join (or start) a different Ray
        exp.ray.address = address
    record.check_source(exp.data.source)
    prepared, metric, prep_time = prepare_data(exp, display)
    state = RunState(exp, prepared, run_dir.resolve(), display, record, metric, stage_times={"data": prep_time})
    for name, info in record.data["stages"].items():
        if name.startswith("search:"):
            state.searches[name.removeprefix("search:")] = info
        else:
            state.trained[name] = Trained.from_record(info, record.model_dir(name))
    display.say(f"resuming {run_dir}: {len(record.data['stages'])} stage(s) already finished")
    return state
