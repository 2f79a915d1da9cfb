"""Checkpoints of a model trained in one Ray task: numbered directories, the latest N kept.

The same contents as a Ray Train checkpoint (see the loops' writers); a task retried after its
worker died, or rerun by `rayfit resume`, continues from the latest one.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from ray.train import Checkpoint

PREFIX = "checkpoint_"


def _numbered(directory: Path) -> list[Path]:
    return sorted(p for p in Path(directory).glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit())


def latest_checkpoint(directory: Path) -> Optional[Checkpoint]:
    found = _numbered(directory)
    return Checkpoint.from_directory(str(found[-1])) if found else None


def save_checkpoint(source: Path, directory: Path, epoch: int, keep: int) -> None:
    """Copy a written checkpoint in under its epoch's name (whole or not at all), then prune."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{epoch:06d}"
    partial = directory / f".partial_{final.name}"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    for old in _numbered(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
