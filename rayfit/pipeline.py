"""The driver: check the data -> Ray and preflight -> prepare the data -> baselines and networks ->
searches -> evaluate -> report -> tracking
(task: clustering: check -> Ray -> prepare -> the clustering candidates and embeddings -> report).

Each stage is a module of rayfit/stages/ working on one RunState; this file only says their order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from rayfit.cluster.storage import Location, check_storage_reaches_every_node
from rayfit.config import Experiment
from rayfit.errors import UserError
from rayfit.progress import Display
from rayfit.run_dir import LOG_FILE, output_to_log
from rayfit.stages.clustering import check_clustering_fits, run_clustering
from rayfit.stages.cross_validate import CrossValidation, cross_validate
from rayfit.stages.evaluate import evaluate
from rayfit.stages.open_run import new_run, resumed_run
from rayfit.stages.prepare import prepare_data
from rayfit.stages.preflight import plan_networks, preflight
from rayfit.stages.ray_session import start_ray, stop_ray, watching_for_stalls, watching_the_cluster
from rayfit.stages.report import render_report
from rayfit.stages.searches import run_searches, searches_beside
from rayfit.stages.state import RunState
from rayfit.stages.time_plan import plan_time
from rayfit.stages.tracking import track_run
from rayfit.stages.train import train_models
from rayfit.stages.training_data import put_training_data


def run_experiment(exp: Experiment, out: Optional[str], display: Display, verbose: bool = False,
                   adopt: Optional[Path] = None, renamed: Optional[Callable[[Location], None]] = None) -> Location:
    """Everything `rayfit run` does; the run's location (a directory or a storage URI). Bad input
    raises UserError before the run's location exists. `adopt`: a data source the run takes in
    (rayfit.run's in-memory table); `renamed`: `out` is a name rayfit chose (see new_run)."""
    state, give_back = new_run(exp, out, display, adopt, renamed)
    _run_stages(state, verbose, on_preflight_error=give_back)
    return state.location


def resume_experiment(run: str, display: Display, verbose: bool = False, address: Optional[str] = None) -> Location:
    """`rayfit resume`: finished stages are loaded, unfinished ones run (Ray Train from its checkpoint)."""
    state = resumed_run(run, display, address)
    _run_stages(state, verbose)
    return state.location


def _cluster(state: RunState, on_preflight_error: Optional[Callable[[], None]]) -> None:
    """task: clustering: Ray, then every candidate and embedding as Ray tasks, then the report."""
    try:
        start_ray(state)
        check_clustering_fits(state)
        check_storage_reaches_every_node(state.location)
    except UserError:
        if on_preflight_error:
            on_preflight_error()
        raise
    with watching_for_stalls(state):
        prepare_data(state)
        run_clustering(state)
    state.record.finish()


def _run_stages(state: RunState, verbose: bool, on_preflight_error: Optional[Callable[[], None]] = None) -> None:
    try:
        state.display.attach_log(state.run_dir / LOG_FILE)
        with output_to_log(state.run_dir / LOG_FILE, verbose):
            try:
                if state.exp.data.task == "clustering":
                    _cluster(state, on_preflight_error)
                    return
                try:
                    start_ray(state)
                    preflight(state.exp)
                    check_storage_reaches_every_node(state.location)
                except UserError:
                    if on_preflight_error:  # the request cannot run on this cluster: give back its location
                        on_preflight_error()
                    raise
                with watching_the_cluster(state):  # a joined cluster that goes away: an error, resumable
                    with watching_for_stalls(state):
                        prepare_data(state)  # on the cluster too (data.prepare_on), now that Ray runs
                        state.plan = plan_networks(state.exp)
                        plan_time(state)  # time_limit: the training stages' shares
                        data = put_training_data(state)
                        with searches_beside(state, data) as beside:  # the searches, beside the models where they can be
                            train_models(state, data, beside)  # baselines and networks
                            # their folds next, beside the searches, where nothing waits for a gang of CPUs
                            folds = CrossValidation(state, data) if beside.running or not beside.pending else None
                            if folds is not None:
                                folds.start()
                        run_searches(state, data)  # those that could not run beside the models
                        cross_validate(state, data, folds)  # and the tuned models' folds, then the ensemble
                        if not state.trained:  # a time limit that let nothing finish
                            raise UserError(f"time_limit: {state.exp.time_limit:g} s let no model finish training; give it "
                                            f"more time (rayfit resume {state.location} continues with what is left)")
                        evaluation = evaluate(state)  # watched too: its tasks (importance, the networks' answers)
                    render_report(state, evaluation)
                    track_run(state, evaluation)
                    state.record.finish()
            finally:
                if state.budget is not None:  # the time used, for a resume: interrupted or not
                    state.record.save()
                stop_ray(state)  # inside the redirect: Ray flushes its deduplicated log lines here
    finally:
        try:
            state.display.detach_log()
            state.mirror.push()  # the log, and whatever the last stage wrote (nothing for a local run)
            state.mirror.close()
        finally:
            if state.lease is not None:
                state.lease.release()  # last: the run is whole on its storage (or as whole as it gets)
            if state.hard_stop is not None:  # the clean-up after a lost cluster finished in time
                state.hard_stop.cancel()
