"""Checkpoints: which one a run continues from, and the store of a model trained in one Ray task.

Every checkpoint the training core writes carries a manifest (the SHA-256 of each file). Before a
loop continues from one, its files are checked against it: a checkpoint damaged after it was
written (a file truncated or deleted: a full disk, a node lost mid-upload, a hand that slipped) is
passed over for the newest intact one before it, and the fall-back is said. That holds for a Ray
Train run's checkpoints and for a task's alike; with none intact the loop starts over, and says so.

A task's checkpoints are numbered directories in the run's storage, the latest N kept: the same
contents as a Ray Train checkpoint; a task retried after its worker died, or rerun by `rayfit
resume`, continues from the latest one, on whichever node it lands. The storage is a local (or
shared) directory or an object-store URI (cluster/storage.py). A task checkpoint counts once its
`.complete` marker is written, after all its files: an object store has no atomic rename, and a task
killed mid-upload leaves a checkpoint without one.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

from ray.train import Checkpoint

from rayfit.cluster.storage import Location
from rayfit.evaluation.manifest import MANIFEST

PREFIX = "checkpoint_"  # Ray Train's checkpoint directories start so too (checkpoint_<time>)
COMPLETE = ".complete"

Say = Callable[[str], None]


# -- integrity, for every checkpoint -------------------------------------------------------------

def damage(checkpoint: Location) -> str:
    """What is wrong with a checkpoint's files against its manifest ("" when nothing is, or when it
    predates manifests)."""
    manifest = checkpoint.join(MANIFEST)
    if not manifest.is_file():
        return "" if checkpoint.exists() else "the directory is missing"
    for name, expected in json.loads(manifest.read_text())["sha256"].items():
        try:
            actual = hashlib.sha256(checkpoint.join(name).read_bytes()).hexdigest()
        except (FileNotFoundError, OSError):
            return f"{name} is missing"
        if actual != expected:
            return f"{name} differs from what was written"
    return ""


def _first_intact(newest_first: list[Location], say: Say) -> Optional[Location]:
    for candidate in newest_first:
        found = damage(candidate)
        if not found:
            return candidate
        say(f"checkpoint {candidate} is damaged ({found}); trying the one before it")
    if newest_first:
        say("no intact checkpoint is left; training starts over from the first epoch")
    return None


def _as_checkpoint(location: Location) -> Checkpoint:
    fs, path = location.filesystem()
    return Checkpoint(path=path, filesystem=fs)


def intact_or_earlier(checkpoint: Optional[Checkpoint], say: Say = print) -> Optional[Checkpoint]:
    """Ray Train's latest checkpoint if its files are whole; otherwise the newest intact one before
    it in the same run (Ray Train keeps its latest N side by side, named by time), or None."""
    if checkpoint is None:
        return None
    newest = Location.of_filesystem(checkpoint.filesystem, checkpoint.path)
    if newest is None or not damage(newest):
        return checkpoint
    earlier = sorted((c for c in newest.parent.children() if c.name.startswith(PREFIX) and c.name < newest.name),
                     key=lambda c: c.name, reverse=True)
    chosen = _first_intact([newest, *earlier], say)
    return _as_checkpoint(chosen) if chosen else None


def newest_of_owner(checkpoint: Optional[Checkpoint], owner: str) -> Optional[Checkpoint]:
    """The newest checkpoint beside `checkpoint` when it lies in a directory of `owner`'s own (a Tune
    trial's, named with its trial id); else `checkpoint` as it is (none, or a PBT donor's)."""
    if checkpoint is None:
        return None
    here = Location.of_filesystem(checkpoint.filesystem, checkpoint.path)
    if here is None or f"_{owner}_" not in here.parent.name:
        return checkpoint
    newer = sorted(c.name for c in here.parent.children() if c.name.startswith(PREFIX) and c.name > here.name)
    return _as_checkpoint(here.parent.join(newer[-1])) if newer else checkpoint


# -- a task's checkpoint store -------------------------------------------------------------------

def _numbered(directory: Location) -> list[Location]:
    found = [child for child in directory.children()
             if child.name.startswith(PREFIX) and child.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda child: child.name)


def _complete(directory: Location) -> list[Location]:
    return [child for child in _numbered(directory) if child.join(COMPLETE).is_file()]


def latest_checkpoint(directory, say: Say = print) -> Optional[Checkpoint]:
    """The newest complete checkpoint of a task's store whose files match its manifest."""
    chosen = _first_intact(list(reversed(_complete(Location.of(directory)))), say)
    return _as_checkpoint(chosen) if chosen else None


def save_checkpoint(source: Path, directory, epoch: int, keep: int) -> None:
    """Copy a written checkpoint up under its epoch's name (it counts once complete), then prune."""
    directory = Location.of(directory)
    final = directory.join(f"{PREFIX}{epoch:06d}")
    final.delete()  # a partial one from a task that died while writing it
    final.upload(Path(source))
    final.join(COMPLETE).write_bytes(b"")
    for old in _complete(directory)[:-keep]:
        old.delete()
