"""Where work ran: every training process notes the Ray node it runs on, and the driver reads the
notes back per stage (a baseline, a network, a search) for metrics.json and the report.

The notes go to Ray's own key-value store in the GCS: every process of the cluster reaches it,
and it costs no process of its own (an actor would). `internal_kv` is a developer API of Ray's,
kept to this one file; a note that cannot be written is skipped, never a failed training.
"""
from __future__ import annotations

from typing import Optional

NAMESPACE = "rayfit_ledger"


def stage_key(run_key: str, stage: str) -> str:
    """The ledger of one stage of one run ("" when the run keeps none)."""
    return f"{run_key}/{stage}" if run_key else ""


def note(key: Optional[str]) -> None:
    """In a worker, task or trial: this process's node worked for the stage `key`."""
    if not key:
        return
    try:
        import ray
        from ray.experimental.internal_kv import _internal_kv_initialized, _internal_kv_put

        if _internal_kv_initialized():
            node = ray.get_runtime_context().get_node_id()
            _internal_kv_put(f"{key}/{node}", b"1", overwrite=True, namespace=NAMESPACE)
    except Exception:  # noqa: BLE001 - where work ran is a report detail, never a reason to fail training
        pass


def nodes(key: str) -> list[str]:
    """The ids of the nodes noted for the stage `key`, sorted."""
    if not key:
        return []
    from ray.experimental.internal_kv import _internal_kv_list

    found = _internal_kv_list(f"{key}/", namespace=NAMESPACE)
    return sorted(k.decode().rsplit("/", 1)[1] for k in found)


def forget(run_key: str) -> None:
    """Drop a finished run's notes (a long-lived cluster keeps its key-value store)."""
    try:
        from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_initialized

        if run_key and _internal_kv_initialized():
            _internal_kv_del(f"{run_key}/", del_by_prefix=True, namespace=NAMESPACE)
    except Exception:  # noqa: BLE001 - leftover notes are harmless
        pass
