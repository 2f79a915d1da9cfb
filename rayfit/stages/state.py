"""What the stages share: the run's state, and each model once it is ready for evaluation."""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from rayfit.budget import Budget
from rayfit.config import Experiment
from rayfit.data import Prepared, Source
from rayfit.evaluation.fitted import ArrayModel, load_model
from rayfit.progress import Display
from rayfit.run_record import CV_PREFIX, RunRecord

if TYPE_CHECKING:
    from rayfit.cluster.storage import Location, RunMirror
    from rayfit.lease import RunLease
    from rayfit.cluster.plan import RunPlan




@dataclass
class Trained:
    """One model ready for evaluation."""

    model: ArrayModel
    framework: str
    train_time_s: float
    history: list[dict] = field(default_factory=list)
    launch: str = ""  # networks: "ray_train" (a worker group) or "task" (one Ray task)
    # networks: how they ran (launch_reason, launch_figures, workers, device, gpus_per_worker, amp)
    run_info: dict = field(default_factory=dict)

    def record_info(self) -> dict:
        """What the run record keeps of it (the model itself is saved beside)."""
        return {"framework": self.framework, "train_time_s": self.train_time_s, "history": self.history,
                "launch": self.launch, "run_info": self.run_info}

    @classmethod
    def from_record(cls, info: dict, model_dir: Path) -> "Trained":
        return cls(load_model(model_dir), info["framework"], info["train_time_s"], info.get("history", []),
                   info.get("launch", ""), info.get("run_info", {}))


@dataclass
class RunState:
    exp: Experiment
    source: Source  # the data, checked (stages/prepare.py)
    mirror: "RunMirror"  # the run's location in storage and the driver's working copy of it
    display: Display
    record: RunRecord
    metric: str  # the primary metric: the best model is the best on validation by it
    prepared: Optional[Prepared] = None  # the data, split and preprocessed (the prepare stage, after Ray starts)
    trained: dict[str, Trained] = field(default_factory=dict)
    stage_times: dict[str, float] = field(default_factory=dict)
    # tuned model name -> its search's summary (best_params, trials, epochs, wall time); the first
    # one (`tune`) is the report's tuning section and best_params.yaml
    searches: dict[str, dict] = field(default_factory=dict)
    launches: dict[str, object] = field(default_factory=dict)  # network -> its Launch decision
    owns_ray: bool = False  # this run started Ray (and stops it); False when joining a session
    plan: Optional["RunPlan"] = None  # the networks' plan, made before the first launch
    # cross-validation (stages/cross_validate.py): the folds (None: chosen on validation), each
    # cross-validated model's scores ({metric: {mean, std, folds}}) and its refit on train + validation
    cv_folds: Optional[int] = None
    cv: dict[str, dict] = field(default_factory=dict)
    refitted: dict[str, ArrayModel] = field(default_factory=dict)
    cv_left_out: dict[str, str] = field(default_factory=dict)  # network -> why it was chosen on validation
    out_of_reach: set[str] = field(default_factory=set)  # networks behind the leader on validation: never chosen
    # this session's ledger of where each stage ran (cluster/ledger.py)
    run_key: str = field(default_factory=lambda: f"run-{uuid.uuid4().hex}")
    budget: Optional[Budget] = None  # time_limit: the deadline and each stage's share (rayfit/budget.py)
    budget_stages: tuple[str, ...] = ()  # the limited stages this run has, in order
    lease: Optional["RunLease"] = None  # this driver's hold on the run (rayfit/lease.py), kept while it works
    cluster_lost: Optional[str] = None  # the joined cluster stopped answering (stages/ray_session.py)
    hard_stop: Optional[object] = None  # then: the timer that ends the process should its clean-up hang

    def nodes_of(self, stage: str) -> list[str]:
        """The Ray nodes the stage's processes ran on, as its processes noted them."""
        from rayfit.cluster.ledger import nodes, stage_key

        return nodes(stage_key(self.run_key, stage))

    @property
    def run_dir(self) -> Path:
        """The driver's working directory of the run (the run directory itself for local storage)."""
        return self.mirror.workdir

    @property
    def location(self) -> "Location":
        """The run in storage: what Ray Train, Tune and every task write to and read from."""
        return self.mirror.location

    @property
    def search(self) -> Optional[dict]:
        return next(iter(self.searches.values()), None)

    def finished(self, name: str, trained: Trained) -> None:
        """A model is ready: keep it for evaluation and record it on disk for `rayfit resume`."""
        self.trained[name] = trained
        self.record.record(name, trained.record_info(), trained.model)
        self.mirror.push()

    def finished_cv(self, name: str, scores: dict, folds: int, refitted: ArrayModel) -> None:
        """A model's cross-validation scores and its refit on train + validation, recorded for resume."""
        self.cv[name], self.refitted[name] = scores, refitted
        self.record.record(f"{CV_PREFIX}{name}", {"cv": scores, "folds": folds}, refitted)
        self.mirror.push()

    def record_search(self, name: str, summary: dict) -> None:
        self.searches[name] = summary
        self.record.record(f"search:{name}", summary)
        self.mirror.push()

    def deadline(self, stage: str) -> Optional[float]:
        """Under a time limit, when `stage` (a key of budget.WEIGHTS) must end, on time.time()'s
        scale: its share of the time left, against the limited stages after it; else None."""
        if self.budget is None:
            return None
        stages = self.budget_stages
        later = stages[stages.index(stage) + 1:] if stage in stages else ()
        return self.budget.until(stage, later)

    @contextmanager
    def timed(self, stage: str):
        """The stage's wall time into `stage_times` (the report's timings), even when it fails."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_times[stage] = time.perf_counter() - started
