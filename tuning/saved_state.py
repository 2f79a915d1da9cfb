"""A search's saved state, vouched for before Tune unpickles any of it.

Tune keeps a search's state in the top-level files of its directory: `tuner.pkl` (written once, at
the start), `experiment_state-*.json` (trials pickled inside the JSON), the search algorithm's and
the callbacks' state (`*.json`, `*.pkl`). `Tuner.restore` unpickles them. rayfit writes
STATE_MANIFEST, the SHA-256 of each, whenever Tune has written them and they have reached the
search's storage (the `Vouch` callback after each of Tune's snapshots, at the experiment's end, and
once more after `fit` returns), and `rayfit resume` restores a search only where every such file is
in the manifest and equal to it; a file the manifest does not name counts as changed (Tune loads the
newest by name).

A driver killed between a snapshot of Tune's and rayfit's manifest of it leaves a mismatch that is
stale rather than tampered, but the two cannot be told apart: such a search is started anew, and
says so. A finished search is rayfit's own record and is never run again.

On object storage the manifest is written at the search's end only: a search there that was
interrupted starts anew on `resume`.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional

from ray import tune

from rayfit.cluster.storage import Location

# Not .json or .pkl: Tune copies those between its staging directory and the storage, and would
# copy a stale one back over the new one.
STATE_MANIFEST = "rayfit-state.sha256"
STATE_SUFFIXES = (".json", ".pkl")


def _state_names(path: Location) -> list[str]:
    if path.local:
        directory = path.path
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.is_file() and p.name.endswith(STATE_SUFFIXES))
    return sorted(child.name for child in path.children()
                  if child.name.endswith(STATE_SUFFIXES) and child.is_file())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digests(path: Location) -> dict[str, str]:
    return {name: _digest(path.join(name).read_bytes()) for name in _state_names(path)}


def write_state_manifest(path: Location) -> None:
    """The manifest of the search's state files as they are now, written whole."""
    record = json.dumps({"sha256": _digests(path)}, indent=1).encode()
    if path.local:
        part = path.path / f".{STATE_MANIFEST}.{os.getpid()}.tmp"
        part.write_bytes(record)
        os.replace(part, path.path / STATE_MANIFEST)
    else:
        path.join(STATE_MANIFEST).write_bytes(record)


def state_differs(path: Location) -> Optional[str]:
    """What of the search's saved state differs from its manifest; None when nothing does."""
    manifest = path.join(STATE_MANIFEST)
    if not manifest.is_file():
        return f"no {STATE_MANIFEST}"
    try:
        recorded = json.loads(manifest.read_bytes())["sha256"]
        if not isinstance(recorded, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return f"{STATE_MANIFEST} is damaged"
    found = _digests(path)
    changed = sorted(name for name in recorded.keys() | found.keys() if recorded.get(name) != found.get(name))
    if not changed:
        return None
    return f"{', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} differ{'s' if len(changed) == 1 else ''}"


class Vouch(tune.Callback):
    """Driver-side: the manifest of the search's state, rewritten after each of Tune's snapshots
    once the snapshot has reached the storage (Tune copies it from its staging directory in the
    background: while the two differ the copy is under way, and the next step looks again)."""

    def __init__(self, path: Location):
        self.path = path
        self._seen = None  # the state files' (name, size, mtime) when last vouched for
        self._staging: Optional[Path] = None  # Tune's staging directory of the search, once seen

    def __getstate__(self):  # pickled with the Tuner: nothing of this process's
        return {"path": self.path, "_seen": None, "_staging": None}

    def on_step_end(self, iteration, trials, **info):
        if self.path.local:  # on object storage: at the end only (each look is a listing and downloads)
            self._staging = _staging(trials) or self._staging
            self.vouch()

    def on_experiment_end(self, trials, **info):
        self._staging = _staging(trials) or self._staging
        self.vouch()  # after Tune's last snapshot (forced and awaited when the search ended by itself)

    def vouch(self) -> None:
        """The manifest, where the storage holds what Tune last wrote (else left for a later look)."""
        names = _state_names(self.path)
        seen = [(name, *_size_and_time(self.path.path / name)) for name in names] if self.path.local else None
        if seen is not None and seen == self._seen:
            return
        if self._staging is not None:
            for name in names:
                staged = self._staging / name
                if staged.is_file() and _digest(staged.read_bytes()) != _digest(self.path.join(name).read_bytes()):
                    return  # Tune's copy is under way
        write_state_manifest(self.path)
        self._seen = seen


def _size_and_time(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _staging(trials) -> Optional[Path]:
    for trial in trials or []:
        staging = getattr(getattr(trial, "storage", None), "experiment_driver_staging_path", None)
        if staging:
            return Path(staging)
    return None
