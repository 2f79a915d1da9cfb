"""Stage: preflight. Every stage's resource request is checked against the cluster before the
first one starts (Ray would wait for ever on a request it can never place). `plan_networks` fits
each enabled framework's workers to the cluster: the run plan every network launch follows."""
from __future__ import annotations

from rayfit.config import Experiment
from rayfit.errors import UserError
from rayfit.stages.networks import enabled_frameworks
from rayfit.stages.searches import enabled_searches
from rayfit.frameworks import is_network_framework


def preflight(exp: Experiment) -> None:
    """A request the cluster cannot run raises UserError."""
    from rayfit.cluster.plan import ClusterShape, check_trial_request

    cluster = ClusterShape.current()
    plan_networks(exp, cluster)
    if exp.baselines.enabled and cluster.slots(exp.baselines.cpus_per_model) < 1:
        raise UserError(f"baselines.cpus_per_model: {exp.baselines.cpus_per_model} CPUs per baseline, but no node of "
                        f"the Ray cluster has that many ({cluster.describe()}); lower baselines.cpus_per_model")
    if exp.baselines.enabled and exp.baselines.gpu is True and cluster.gpus < exp.baselines.gpus_per_model:
        raise UserError(f"baselines.gpu: true, {exp.baselines.gpus_per_model:g} GPU per model, but the Ray cluster has "
                        f"{cluster.gpus:g} GPUs ({cluster.describe()}); set baselines.gpu: auto or false")
    if exp.baselines.enabled and exp.baselines.gpu is not False and cluster.gpus and \
            cluster.slots(exp.baselines.cpus_per_model, exp.baselines.gpus_per_model) < 1:
        raise UserError(f"baselines.gpus_per_model: {exp.baselines.gpus_per_model:g} GPUs with "
                        f"{exp.baselines.cpus_per_model} CPU(s), but no node of the Ray cluster has that many "
                        f"({cluster.describe()}); lower baselines.gpus_per_model")
    if exp.baselines.enabled and exp.baselines.workers > 1 and cluster.slots(exp.baselines.cpus_per_model) < exp.baselines.workers:
        raise UserError(f"baselines.workers: {exp.baselines.workers} workers of {exp.baselines.cpus_per_model} CPU(s) for "
                        f"XGBoost and LightGBM, but the Ray cluster holds {cluster.slots(exp.baselines.cpus_per_model)} "
                        f"such worker(s) ({cluster.describe()}); lower baselines.workers or baselines.cpus_per_model")
    for key, search in enabled_searches(exp):
        # A baseline's trials, and any trial_mode: inline, are one process each: one node must hold one.
        inline = search.trial_mode == "inline" or not is_network_framework(search.model)
        check_trial_request(search.cpus_per_trial, search.gpus_per_trial, cluster, key, inline=inline)


def plan_networks(exp: Experiment, cluster=None):
    """The RunPlan (cluster/plan.py): each enabled framework's workers fitted to `cluster` (default:
    the cluster now). A search plans its trials itself, once its trial mode is known."""
    from rayfit.cluster.plan import ClusterShape, RunPlan, plan_workers

    if cluster is None:
        cluster = ClusterShape.current()
    plan = RunPlan(cluster)
    for framework, settings in enabled_frameworks(exp):
        plan.networks[framework] = plan_workers(framework, settings.workers, settings.cpus_per_worker,
                                                settings.gpus_per_worker, settings.gpu, cluster)
    return plan
