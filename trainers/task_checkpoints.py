"""Checkpoints of a model trained in one Ray task: numbered directories in the run's storage, the
latest N kept.

The same contents as a Ray Train checkpoint (see the training core); a task retried after its
worker died, or rerun by `rayfit resume`, continues from the latest one, on whichever node it
lands. The storage is a local (or shared) directory or an object-store URI (cluster/storage.py).
A checkpoint counts once its `.complete` marker is written, after all its files: an object
store has no atomic rename, and a task killed mid-upload leaves a checkpoint without one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ray.train import Checkpoint

from rayfit.cluster.storage import Location

PREFIX = "checkpoint_"
COMPLETE = ".complete"


def _numbered(directory: Location) -> list[Location]:
    found = [child for child in directory.children()
             if child.name.startswith(PREFIX) and child.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda child: child.name)


def _complete(directory: Location) -> list[Location]:
    return [child for child in _numbered(directory) if child.join(COMPLETE).is_file()]


def latest_checkpoint(directory) -> Optional[Checkpoint]:
    found = _complete(Location.of(directory))
    if not found:
        return None
    fs, path = found[-1].filesystem()
    return Checkpoint(path=path, filesystem=fs)


def save_checkpoint(source: Path, directory, epoch: int, keep: int) -> None:
    """Copy a written checkpoint up under its epoch's name (it counts once complete), then prune."""
    directory = Location.of(directory)
    final = directory.join(f"{PREFIX}{epoch:06d}")
    final.delete()  # a partial one from a task that died while writing it
    final.upload(Path(source))
    final.join(COMPLETE).write_bytes(b"")
    for old in _complete(directory)[:-keep]:
        old.delete()
