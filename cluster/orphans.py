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
import time

logger = logging.getLogger(__name__)


def _train_groups():
    """(id hex, creator dead) of this job's live placement groups made by an actor: during a run,
    Ray Train controllers. A driver-made group (Tune's trial groups) has a nil creator actor, which
    GCS marks dead from the start: those are left alone."""
    import ray
    from ray._private.state import state
    from ray.core.generated import gcs_pb2

    job = ray.get_runtime_context().get_job_id()
    for raw in state._connect_and_get_accessor().get_placement_group_table():
        entry = gcs_pb2.PlacementGroupTableData.FromString(raw)
        if (not ray.ActorID(entry.creator_actor_id).is_nil() and not entry.is_detached
                and entry.creator_job_id.hex() == job and entry.state != gcs_pb2.PlacementGroupTableData.REMOVED):
            yield entry.placement_group_id.hex(), entry.creator_actor_dead


def orphaned_placement_groups() -> list[str]:
    """Ids (hex) of this job's live placement groups whose creator actor has died."""
    return [pg_id for pg_id, creator_dead in _train_groups() if creator_dead]


def free_orphaned_placement_groups() -> int:
    """Remove every orphaned placement group of this job; how many were removed."""
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    removed = 0
    for pg_id in orphaned_placement_groups():
        try:
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
            removed += 1
        except Exception as exc:  # removed meanwhile by Ray's own cleaner: nothing left to do
            logger.debug("placement group %s: %s", pg_id, exc)
    return removed


def actor_made_placement_groups() -> int:
    """How many of this job's placement groups made by actors (Ray Train controllers) are live."""
    return sum(1 for _ in _train_groups())


def settle_worker_groups(timeout_s: float = 30.0) -> None:
    """After a search whose trials ran their own Ray Train runs: the last trials' actors die after
    the search returns, and their runs' placement groups become orphans only then. Free them as
    they appear, until none is left (or `timeout_s`), so the next stage finds its CPUs free."""
    deadline = time.monotonic() + timeout_s
    while True:
        free_orphaned_placement_groups()
        if (actor_made_placement_groups() == 0 and not _train_controller_alive()) or time.monotonic() > deadline:
            return
        time.sleep(0.25)


def _train_controller_alive() -> bool:
    import ray
    from ray._private.state import state

    job = ray.get_runtime_context().get_job_id()
    return any(a["JobID"] == job and a["State"] == "ALIVE" and a["ActorClassName"] == "TrainController"
               for a in state.actor_table(None).values())
