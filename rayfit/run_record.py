"""What a run has finished, on disk: the basis of `rayfit resume`.

`run_state.json` lists every finished stage (a trained model or the search) with what the report
needs of it; the models themselves are saved under `models/<name>/`. A stage is recorded only
once it is complete, so a run killed at any point resumes from its last finished stage, and an
unfinished Ray Train run continues from its own latest checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path
from typing import Optional

from rayfit.cluster.storage import STATE_FILE, Location, is_uri
from rayfit.errors import read_json, UserError

MODELS_DIR = "models"  # every model the run trained, its resume record: models/<name>/
CV_PREFIX = "cv:"  # a run record's stage of one model's cross-validation and refit: models/cv:<name>/


def source_digest(source: str) -> Optional[str]:
    """sha256 of a data file or folder (None for built-in sets): a resumed run must see the same
    data. For data in object storage, where hashing would download it all, the sha256 of its
    objects' names, sizes and modification times stands in (`objects:<sha256>`)."""
    if is_uri(source):
        return _objects_digest(source)
    path = Path(source)
    if not path.exists():
        return None
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _objects_digest(uri: str) -> Optional[str]:
    import pyarrow.fs as pafs

    fs, path = Location.of(uri).filesystem()
    try:
        top = fs.get_file_info(path)
        if top.type == pafs.FileType.NotFound:
            return None
        infos = [top] if top.type == pafs.FileType.File else \
            fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except OSError:  # out of reach now: nothing to compare with
        return None
    digest = hashlib.sha256()
    for info in sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path):
        digest.update(f"{info.path.removeprefix(path)}\0{info.size}\0{info.mtime_ns}\n".encode())
    return f"objects:{digest.hexdigest()}"


class RunRecord:
    def __init__(self, run_dir: Path, data: dict):
        self.run_dir = Path(run_dir)
        self.data = data
        self.clock = None  # a time-limited run: seconds of its limit used, kept for `resume`

    @property
    def run_id(self) -> Optional[str]:
        """This run's identity, which its tracking records carry (None for a run recorded before ids)."""
        return self.data.get("id")

    @property
    def time_used_s(self) -> float:
        return float(self.data.get("time_used_s", 0.0))

    @classmethod
    def create(cls, run_dir: Path, source: str) -> "RunRecord":
        record = cls(run_dir, {"status": "running", "id": uuid.uuid4().hex, "source": source,
                               "source_sha256": source_digest(source), "stages": {}})
        record._write()
        return record

    @classmethod
    def load(cls, run_dir: Path, shown: Optional[str] = None, finished: bool = False) -> "RunRecord":
        """The record in `run_dir` (the driver's copy of the run named `shown` in messages) of a run
        to resume, or with `finished`, of a finished one (to read)."""
        path = Path(run_dir) / STATE_FILE
        if not path.is_file():
            raise UserError(f"{shown or run_dir}: not a rayfit run directory (no {STATE_FILE})")
        record = cls(run_dir, read_json(path, f"{shown or run_dir}/{STATE_FILE}"))
        if finished and not record.finished:
            raise UserError(f"{shown or run_dir}: this run has not finished; rayfit resume {shown or run_dir} finishes it")
        if not finished and record.finished:
            raise UserError(f"{shown or run_dir}: this run already finished; nothing to resume")
        return record

    def check_source(self, source: str, needs: str = "resume needs") -> None:
        recorded = self.data.get("source_sha256")
        if recorded is None and is_uri(source):  # a run recorded before URIs had a digest: nothing to compare
            return
        if source_digest(source) != recorded:
            raise UserError(f"data.source: {source} changed since the run started; {needs} the same data")

    @property
    def finished(self) -> bool:
        return self.data["status"] == "finished"

    def done(self, stage: str) -> Optional[dict]:
        return self.data["stages"].get(stage)

    def model_dir(self, name: str) -> Path:
        return self.run_dir / MODELS_DIR / name

    def record(self, stage: str, info: dict, model=None) -> None:
        """Mark a stage finished; its model (a ArrayModel) is saved first, so a record implies a model."""
        if model is not None:
            from rayfit.evaluation.manifest import write_manifest

            model.save(self.model_dir(stage))
            write_manifest(self.model_dir(stage))
        self.data["stages"][stage] = info
        self._write()

    def save(self) -> None:
        """Write the record as it is (a time-limited run: what it has used, on the way out)."""
        self._write()

    def finish(self) -> None:
        self.data["status"] = "finished"
        self._write()

    def _write(self) -> None:
        # Write-then-rename: a run killed mid-write keeps its previous, whole record.
        if self.clock is not None:
            self.data["time_used_s"] = round(self.clock(), 1)
        path = self.run_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=_plain))
        tmp.replace(path)


def _plain(value):
    """numpy scalars (hyperparameters Tune sampled) as plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
