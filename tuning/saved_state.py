"""A search's saved state, vouched for before Tune unpickles any of it.

Tune keeps a search's state in the top-level files of its directory: `tuner.pkl` (written once, at
the start), `experiment_state-*.json` (trials pickled inside the JSON), the search algorithm's and
the callbacks' state (`*.json`, `*.pkl`). `Tuner.restore` unpickles them. Tune writes each snapshot
into a staging directory of the driver's and copies it to the search's storage in the background.
After each snapshot rayfit records the SHA-256 of each staged file in STATE_MANIFEST beside them in
the storage (the `Vouch` callback, in the same step as the snapshot, and once more after `fit`),
keeping the digests of the last KEPT snapshots of every file: a file in the storage is Tune's own
when its digest is one of them, whether or not the copy of the newest snapshot has landed yet.
`rayfit resume` restores a search only where every state file in the storage is one rayfit
recorded; a file the manifest does not name counts as changed (Tune loads the newest by name).

A driver killed in the moment a file is being copied leaves a half-copied file no snapshot had:
stale rather than tampered, but the two cannot be told apart, so nothing of that state is loaded.
The search continues from rayfit's own record of its finished trials instead (TRIALS_RECORD,
JSON: each trial's directory, written by the driver as the trial ends): those trials' directories
are kept, read as JSON, their checkpoints loaded only through their manifests, and only the
trials still missing are run (tuning/search.py, `continue_from_record`). A finished search is
rayfit's own record and is never run again.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Optional

from ray import tune
from ray.tune.result import EXPR_RESULT_FILE

from rayfit.cluster.storage import Location

# Not .json or .pkl: Tune copies those between its staging directory and the storage, and would
# copy a stale one back over the new one.
STATE_MANIFEST = "rayfit-state.sha256"
STATE_SUFFIXES = (".json", ".pkl")
# The search's finished trials as the driver saw them end: {"finished": {directory: trial id}}.
TRIALS_RECORD = "rayfit-trials.record"
TUNER_FILE = "tuner.pkl"
# Snapshots whose digests stay in the manifest: the storage may hold any of them (Tune copies a
# snapshot only once the copy before it has landed, which on object storage can take seconds).
KEPT = 10


def _state_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_file() and p.name.endswith(STATE_SUFFIXES))


def _stored_names(path: Location) -> list[str]:
    if path.local:
        return _state_names(path.path)
    return sorted(child.name for child in path.children() if child.name.endswith(STATE_SUFFIXES) and child.is_file())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _recorded(path: Location) -> Optional[dict[str, list[str]]]:
    """The manifest's digests, name -> those of its kept snapshots; None where there is no
    readable one."""
    manifest = path.join(STATE_MANIFEST)
    try:
        recorded = json.loads(manifest.read_bytes())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(recorded, dict):
        return None
    return {name: [d] if isinstance(d, str) else [x for x in d if isinstance(x, str)]
            for name, d in recorded.items() if isinstance(d, (str, list))}


def record_state(path: Location, files: dict[str, bytes]) -> None:
    """`files` (name -> content of a snapshot's state file) added to the search's manifest, each
    name keeping the digests of its last KEPT snapshots; written whole."""
    recorded = _recorded(path) or {}
    for name, data in files.items():
        digests = [d for d in recorded.get(name, []) if d != _digest(data)] + [_digest(data)]
        recorded[name] = digests[-KEPT:]
    _write(path, STATE_MANIFEST, {"sha256": recorded})


def _write(path: Location, name: str, content: dict) -> None:
    """A file of rayfit's beside the search's state, written whole."""
    path.join(name).write_bytes(json.dumps(content, indent=1).encode())


def finished_trials(path: Location) -> dict[str, str]:
    """The search's trials rayfit saw finish, directory name -> trial id (none where there is no
    readable record)."""
    try:
        finished = json.loads(path.join(TRIALS_RECORD).read_bytes())["finished"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(finished, dict):
        return {}
    # a directory name is one part of a path, never more
    return {name: trial for name, trial in finished.items() if isinstance(name, str) and isinstance(trial, str)
            and name not in ("", ".", "..") and "/" not in name and "\\" not in name}


def record_finished(path: Location, finished: dict[str, str]) -> None:
    """The record of the search's finished trials (directory name -> trial id), written whole."""
    _write(path, TRIALS_RECORD, {"finished": finished})


def record_tuner(path: Location) -> None:
    """`tuner.pkl`, which a new Tuner writes once, straight to the storage (not through staging)."""
    if path.join(TUNER_FILE).is_file():
        record_state(path, {TUNER_FILE: path.join(TUNER_FILE).read_bytes()})


def write_state_manifest(path: Location) -> None:
    """The search's state files as the storage holds them now, recorded (tests, and a search's end)."""
    record_state(path, {name: path.join(name).read_bytes() for name in _stored_names(path)})


def state_differs(path: Location) -> Optional[str]:
    """What of the search's saved state is not what rayfit recorded; None when all of it is."""
    recorded = _recorded(path)
    if recorded is None:
        return f"no readable {STATE_MANIFEST}"
    changed = [name for name in _stored_names(path) if _digest(path.join(name).read_bytes()) not in recorded.get(name, [])]
    if not changed:
        return None
    return f"{', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''} differ{'s' if len(changed) == 1 else ''}"


class Vouch(tune.Callback):
    """Driver-side: after each of Tune's snapshots (written to its staging directory in the same
    step, just before), the staged state files' digests into the manifest in the storage."""

    def __init__(self, path: Location):
        self.path = path
        self._seen = None  # the staged files' (name, size, mtime) when last recorded
        self._staging: Optional[Path] = None  # Tune's staging directory of the search, once seen

    def __getstate__(self):  # pickled with the Tuner: nothing of this process's
        return {"path": self.path, "_seen": None, "_staging": None}

    def on_step_end(self, iteration, trials, **info):
        self._look(trials)
        self.vouch()

    def on_trial_complete(self, iteration, trials, trial, **info):
        """The trial into the record of finished trials, as it ends (an errored trial is not
        finished: Tune calls on_trial_error for it)."""
        self._look(trials)
        storage = getattr(trial, "storage", None)
        if storage is None or not storage.trial_dir_name:
            return
        try:
            # Tune copies a trial's results from the driver's staging directory to the storage only
            # every few minutes (SyncConfig.sync_period): the trial's results are put there now,
            # whole, so that what the record names finished can be read back from the storage.
            staged = Path(storage.trial_driver_staging_path) / EXPR_RESULT_FILE
            here = Location.of_filesystem(storage.storage_filesystem, storage.trial_fs_path)
            if here is None or not staged.is_file():
                return
            here.join(EXPR_RESULT_FILE).write_bytes(staged.read_bytes())
            record_finished(self.path, {**finished_trials(self.path), storage.trial_dir_name: trial.trial_id})
        except Exception as exc:  # noqa: BLE001 - storage out of reach: the trial is rerun if it must be
            warnings.warn(f"the record of {self.path}'s finished trials was not written ({exc})",
                          RuntimeWarning, stacklevel=2)

    def on_experiment_end(self, trials, **info):
        self._look(trials)
        self.vouch()

    def _look(self, trials) -> None:
        """Where the search is now, from its trials: a restored search runs the callback pickled in
        its `tuner.pkl`, whose path is where the run was then (a run since moved or fetched)."""
        for trial in trials or []:
            storage = getattr(trial, "storage", None)
            if storage is None:
                continue
            self._staging = Path(storage.experiment_driver_staging_path)
            here = Location.of_filesystem(storage.storage_filesystem, storage.experiment_fs_path)
            self.path = here or self.path
            return

    def vouch(self) -> None:
        """The newest snapshot, recorded where it has changed. Never the search's end: a manifest
        that could not be written is a search that starts anew on resume, said then."""
        if self._staging is None:
            return
        try:
            names = _state_names(self._staging)
            seen = [(name, *_size_and_time(self._staging / name)) for name in names]
            if seen == self._seen:
                return
            record_state(self.path, {name: (self._staging / name).read_bytes() for name in names})
            self._seen = seen
        except Exception as exc:  # noqa: BLE001 - a file Tune replaced meanwhile, storage out of reach
            warnings.warn(f"the manifest of {self.path}'s saved state was not written ({exc}); the next "
                          f"snapshot's will be", RuntimeWarning, stacklevel=2)


def _size_and_time(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns
