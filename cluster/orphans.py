"""Free the workers of Ray Train runs whose controller is gone.

A Ray Train run's worker group lives in a placement group its controller creates. Ray removes a
placement group on its own only when both its creator and its job are dead; while the driver
lives, a controller that died (a Tune trial stopped by a scheduler takes its Train run with it)
leaves its workers' CPUs and GPUs reserved. Ray Train's PlacementGroupCleaner frees them only if
it can reach the dashboard's State API, which a Ray without dashboard, or two Ray instances on one
machine, deny it; then every stopped trial leaks its reservation and the search stalls once the
leaks fill the cluster (seen on 2 CPUs: "trial 3/8" and idle CPUs for ever).

So the driver frees them itself, from the GCS's own table: a placement group of this job whose
creator actor is dead serves no one.
"""
from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def orphaned_placement_groups() -> list[str]:
    """Ids (hex) of this job's live placement groups whose creator actor has died."""
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    job = ray.get_runtime_context().get_job_id()
    orphans = []
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        entry = gcs_pb2.PlacementGroupTableData.FromString(raw)
        # An actor's, not the driver's: GCS marks a driver-made group's creator actor dead from the
        # start (Tune's own trial groups are the driver's and must stay).
        made_by_actor = not ray.ActorID(entry.creator_actor_id).is_nil()
        if (made_by_actor and entry.creator_actor_dead and not entry.is_detached and entry.creator_job_id.hex() == job
                and entry.state != gcs_pb2.PlacementGroupTableData.REMOVED):
            orphans.append(entry.placement_group_id.hex())
    return orphans


def free_orphaned_placement_groups() -> int:
    """Remove every orphaned placement group of this job; how many were removed."""
    from ray.util.placement_group import PlacementGroup, remove_placement_group
    from ray._raylet import PlacementGroupID

    removed = 0
    for pg_id in orphaned_placement_groups():
        try:
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
            removed += 1
        except Exception as exc:  # removed meanwhile by Ray's own cleaner: nothing left to do
            logger.debug("placement group %s: %s", pg_id, exc)
    return removed


def actor_made_placement_groups() -> int:
    """How many of this job's placement groups made by actors (Ray Train controllers, during a run)
    are still live."""
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    job = ray.get_runtime_context().get_job_id()
    live = 0
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        entry = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if (not ray.ActorID(entry.creator_actor_id).is_nil() and not entry.is_detached
                and entry.creator_job_id.hex() == job and entry.state != gcs_pb2.PlacementGroupTableData.REMOVED):
            live += 1
    return live


def settle_worker_groups(timeout_s: float = 30.0) -> None:
    """After a search whose trials ran their own Ray Train runs: the last trials' actors die after
    the search returns, and their runs' placement groups become orphans only then. Free them as
    they appear, until none is left (or `timeout_s`), so the next stage finds its CPUs free."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        free_orphaned_placement_groups()
        settled = actor_made_placement_groups() == 0 and not _alive(_this_jobs_actors(), "TrainController")
        if settled:
            _stop_idle_cleaners()
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    # Still there once the search is over: no trial runs any more, so a Train controller of this job
    # that outlived its trial (seen, rarely, holding its workers' placement group) serves no one and
    # would keep the next stage's workers waiting. Stop it; its group is then an orphan, and freed.
    stragglers = [a for a in _this_jobs_actors() if a["ActorClassName"] == "TrainController"]
    for actor in stragglers:
        logger.warning("stopping a Ray Train controller that outlived its trial (%s)", actor["ActorID"])
        _kill(actor["ActorID"])
    until = time.monotonic() + 10
    while stragglers and time.monotonic() < until and (
            actor_made_placement_groups() or _alive(_this_jobs_actors(), "TrainController")):
        free_orphaned_placement_groups()  # once GCS has marked them dead
        time.sleep(0.25)
    _stop_idle_cleaners()


def _stop_idle_cleaners() -> None:
    """With no Train controller of this job left, Ray Train's detached PlacementGroupCleaners have
    nothing to watch. Each should exit once it sees its controller gone, but it asks the State API,
    which fails for good where it cannot tell this cluster from another Ray on the same machine
    ("Found multiple active Ray instances"): the cleaner then lives on, a ~200 MB process. Their
    groups are freed above; stop them."""
    actors = _this_jobs_actors()
    if _alive(actors, "TrainController"):
        return
    for actor in actors:
        if actor["ActorClassName"] == "PlacementGroupCleaner":
            _kill(actor["ActorID"])


def _kill(actor_id_hex: str) -> None:
    import ray

    try:
        ray._private.worker.global_worker.core_worker.kill_actor(ray.ActorID(bytes.fromhex(actor_id_hex)), True)
    except Exception as exc:  # gone meanwhile
        logger.debug("actor %s: %s", actor_id_hex, exc)


def _this_jobs_actors() -> list[dict]:
    import ray
    from ray._private.state import state

    job = ray.get_runtime_context().get_job_id()
    return [a for a in state.actor_table(None).values() if a["JobID"] == job and a["State"] == "ALIVE"]


def _alive(actors: list[dict], class_name: str) -> bool:
    return any(a["ActorClassName"] == class_name for a in actors)
