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
from rayfit.evaluation.manifest import MANIFEST, write_manifest

PREFIX = "checkpoint_"
COMPLETE = ".complete"


def _numbered(directory: Location) -> list[Location]:
    found = [child for child in directory.children()
             if child.name.startswith(PREFIX) and child.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda child: child.name)


def _complete(directory: Location) -> list[Location]:
    return [child for child in _numbered(directory) if child.join(COMPLETE).is_file()]


def latest_checkpoint(directory) -> Optional[Checkpoint]:
    """The newest complete checkpoint whose files match its manifest. A damaged one (a file
    truncated or deleted after it was written) is passed over, and the fall-back is said."""
    found = _complete(Location.of(directory))
    for candidate in reversed(found):
        damage = _damage(candidate)
        if damage:
            print(f"rayfit: checkpoint {candidate} is damaged ({damage}); trying the one before it", flush=True)
            continue
        fs, path = candidate.filesystem()
        return Checkpoint(path=path, filesystem=fs)
    return None


def _damage(checkpoint: Location) -> str:
    """What is wrong with a checkpoint's files against its manifest ("" when nothing is, or when it
    predates manifests)."""
    import hashlib
    import json

    manifest = checkpoint.join(MANIFEST)
    if not manifest.is_file():
        return ""
    for name, expected in json.loads(manifest.read_text())["sha256"].items():
        try:
            actual = hashlib.sha256(checkpoint.join(name).read_bytes()).hexdigest()
        except (FileNotFoundError, OSError):
            return f"{name} is missing"
        if actual != expected:
            return f"{name} differs from what was written"
    return ""


def save_checkpoint(source: Path, directory, epoch: int, keep: int) -> None:
    """Copy a written checkpoint up under its epoch's name (it counts once complete), then prune."""
    directory = Location.of(directory)
    final = directory.join(f"{PREFIX}{epoch:06d}")
    final.delete()  # a partial one from a task that died while writing it
    write_manifest(Path(source))  # what a resume checks the files against
    final.upload(Path(source))
    final.join(COMPLETE).write_bytes(b"")
    for old in _complete(directory)[:-keep]:
        old.delete()
