"""Storage: where a run lives, and the one seam every artifact goes through.

A location is a local directory (a laptop's run; or a path every node of a cluster mounts, such as
NFS) or an object-store URI (`s3://bucket/prefix`, `gs://bucket/prefix`) reached through pyarrow's
file systems, the same ones Ray Train and Tune write checkpoints through. S3's endpoint and
credentials come from the standard AWS environment variables (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...), so any S3-compatible server works.

The driver writes a run's small files (the record, models, metrics, plots, report, log) into a
local directory: the run directory itself when the location is local, otherwise a temporary
staging directory that `RunMirror.push` copies up after every stage and removes at the end. Ray
Train and Tune, a single task's checkpoints and the streamed training split go to the location
directly, from whichever node does the work.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from rayfit.errors import UserError, one_line, refuse_credentials

STATE_FILE = "run_state.json"  # pushed last: a record in storage implies the files it names are there


def is_uri(text: str) -> bool:
    return "://" in str(text)


@dataclass(frozen=True)
class Location:
    """A directory in storage: `uri` is an absolute local path or `scheme://bucket/path`."""

    uri: str

    @classmethod
    def of(cls, where) -> "Location":
        text = str(where)
        if is_uri(text):
            refuse_credentials(text, "storage")
            scheme = text.split("://", 1)[0]
            if scheme == "file":
                return cls(str(Path(text.split("://", 1)[1]).resolve()))
            return cls(text.rstrip("/"))
        return cls(str(Path(text).expanduser().resolve()))

    @classmethod
    def of_filesystem(cls, filesystem, path: str) -> Optional["Location"]:
        """A path in a pyarrow file system (as a Ray Train checkpoint holds it) as a location; None
        for a file system storage does not name (a user's own fsspec one, say)."""
        scheme = {"local": "", "s3": "s3", "gcs": "gs"}.get(getattr(filesystem, "type_name", "local"))
        if scheme is None:
            return None
        return cls.of(f"{scheme}://{path.lstrip('/')}" if scheme else path)

    @property
    def local(self) -> bool:
        return not is_uri(self.uri)

    @property
    def path(self) -> Path:
        """The local directory (local locations only)."""
        assert self.local, self.uri
        return Path(self.uri)

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "Location":
        return Location(self.uri.rstrip("/").rsplit("/", 1)[0])

    def join(self, *parts: str) -> "Location":
        return Location("/".join([self.uri.rstrip("/"), *(p.strip("/") for p in parts)]))

    def __str__(self) -> str:
        return self.uri

    # -- the file system ------------------------------------------------------------------------

    def filesystem(self):
        """(pyarrow FileSystem, path in it)."""
        import pyarrow.fs as pafs

        if self.local:
            return pafs.LocalFileSystem(), self.uri
        _torch_before_object_store()
        try:
            return pafs.FileSystem.from_uri(self.uri)
        except Exception as exc:  # unknown scheme, malformed URI, a file system pyarrow lacks
            raise UserError(f"storage {self.uri}: {one_line(exc)}") from None

    def _info(self):
        fs, path = self.filesystem()
        return fs.get_file_info(path)

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.File

    def is_empty_or_absent(self) -> bool:
        import pyarrow.fs as pafs

        fs, path = self.filesystem()
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            return True
        if info.type == pafs.FileType.File:
            return False
        return not fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))

    def read_bytes(self) -> bytes:
        fs, path = self.filesystem()
        with fs.open_input_stream(path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        """Whole or not at all: a local file through a renamed temporary, an object in one put."""
        if self.local:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_bytes(data)
            tmp.replace(self.path)
            return
        fs, path = self.filesystem()
        with fs.open_output_stream(path) as stream:
            stream.write(data)

    def children(self) -> list["Location"]:
        """The entries directly under this directory (none when it is absent)."""
        import pyarrow.fs as pafs

        fs, path = self.filesystem()
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        return [self.join(Path(info.path).name) for info in infos]

    def upload(self, local: Path) -> None:
        """Copy a local file or directory tree to this location."""
        import pyarrow.fs as pafs

        fs, path = self.filesystem()
        if self.local:  # pyarrow creates no local parent directories
            (Path(path) if Path(local).is_dir() else Path(path).parent).mkdir(parents=True, exist_ok=True)
        pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)

    def download(self, local: Path, skip: Iterable[str] = ()) -> Path:
        """Copy this file, or this directory's tree less the top-level entries named in `skip`, to
        the local path `local`."""
        import pyarrow.fs as pafs

        fs, path = self.filesystem()
        local = Path(local)
        if fs.get_file_info(path).type == pafs.FileType.File:
            pafs.copy_files(path, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
            return local
        local.mkdir(parents=True, exist_ok=True)  # pyarrow creates no local directories
        for child in self.children():
            if child.name in skip:
                continue
            target = local / child.name
            # an object key with `..` (or `.`) as a part would be written outside `local`
            if child.name in ("", ".", "..") or "\\" in child.name or target.resolve().parent != local.resolve():
                raise UserError(f"{self}: holds an entry named {child.name!r}, which would be written outside "
                                f"{local}; refusing to copy it")
            child.download(target)
        return local

    def delete(self) -> None:
        import pyarrow.fs as pafs

        fs, path = self.filesystem()
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(path)

    def check_writable(self) -> None:
        """Fail now, with the storage named, when this location cannot be written (no bucket, no
        credentials, a read-only directory): never after an hour of training."""
        probe = self.join(f".rayfit-probe-{uuid.uuid4().hex[:12]}")
        try:
            probe.write_bytes(b"rayfit")
            probe.delete()
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"storage {self.uri}: cannot write there: {one_line(exc)}") from None


def _torch_before_object_store() -> None:
    """Import PyTorch (where installed) before pyarrow starts its S3 client.

    Seen in a Ray job's driver: with pyarrow's S3 file system started first, PyTorch's first import
    later in the process aborts it ("Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so"); with
    PyTorch imported first both work. The same driver run outside a job did not show it."""
    try:
        import torch  # noqa: F401
    except ImportError:
        pass


# -- a run's location -----------------------------------------------------------------------------

DEFAULT_RUNS = "runs"


def existing_run(run: str) -> Location:
    """The location of the run at `run` (a directory or URI); UserError if no run is there."""
    location = Location.of(run)
    if location.local and not location.path.is_dir():
        raise UserError(f"run directory not found: {run}")
    if not location.join(STATE_FILE).is_file():
        raise UserError(f"{run}: not a rayfit run directory (no {STATE_FILE})")
    return location


def plan_run_location(out: Optional[str], storage: Optional[str], name: str) -> Location:
    """Where a new run goes: `--out` (a directory or URI) as given, else `<storage>/<name>-<time>`
    (storage: `--storage` / `storage:`, default `runs/`). Fails now if that holds anything."""
    if out:
        location = Location.of(out)
        if not location.is_empty_or_absent():
            raise UserError(f"--out {out}: already exists and is not empty; rayfit never overwrites a run")
        return location
    return new_run_location(Location.of(storage or DEFAULT_RUNS), name)


def new_run_location(root: Location, name: str) -> Location:
    """The one way a run is named: `<root>/<name>-<YYYYmmdd-HHMMSS>`, with -2, -3 ... while that
    holds anything (runs started in the same second)."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    location, suffix = root.join(f"{name}-{stamp}"), 1
    while not location.is_empty_or_absent():
        suffix += 1
        location = root.join(f"{name}-{stamp}-{suffix}")
    return location


class RunMirror:
    """The driver's local working directory of a run, kept in step with the run's location.

    For a local location the two are the same directory and `push` does nothing. For a URI the
    working directory is a temporary one: `push` uploads what changed since the last push (the
    run record last) and `close` removes it once everything is up.
    """

    def __init__(self, location: Location):
        self.location = location
        self.workdir = location.path if location.local else Path(tempfile.mkdtemp(prefix="rayfit-run-"))
        self._pushed: dict[str, tuple[int, int]] = {}

    @property
    def staging(self) -> bool:
        return not self.location.local

    def push(self) -> None:
        if not self.staging or not self.workdir.is_dir():
            return
        changed = []
        for file in sorted(p for p in self.workdir.rglob("*") if p.is_file()):
            rel = file.relative_to(self.workdir).as_posix()
            stat = file.stat()
            if self._pushed.get(rel) != (stat.st_size, stat.st_mtime_ns):
                changed.append((rel, file, (stat.st_size, stat.st_mtime_ns)))
        changed.sort(key=lambda item: item[0] == STATE_FILE)  # the record last
        for rel, file, stamp in changed:
            self.location.join(rel).write_bytes(file.read_bytes())
            self._pushed[rel] = stamp

    def mark_pushed(self) -> None:
        """Everything now in the working directory is already in storage (a download for resume)."""
        for file in self.workdir.rglob("*"):
            if file.is_file():
                stat = file.stat()
                self._pushed[file.relative_to(self.workdir).as_posix()] = (stat.st_size, stat.st_mtime_ns)

    def close(self) -> None:
        if self.staging:
            shutil.rmtree(self.workdir, ignore_errors=True)


@contextmanager
def local_copy(source: str):
    """A data source as a local path: itself, or (an object-store URI) a temporary copy of the
    file or folder, removed on exit."""
    if not is_uri(source):
        yield source
        return
    location = Location.of(source)
    if not location.exists():
        raise UserError(f"data file not found: {source}")
    with tempfile.TemporaryDirectory(prefix="rayfit-data-") as tmp:
        yield str(location.download(Path(tmp) / location.name))


def fetch_run(location: Location, out: Path, skip: Iterable[str] = ()) -> Path:
    """Copy a run's directory, less its top-level entries named in `skip`, from storage to a local
    directory that is absent or empty."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: already exists and is not empty; rayfit never overwrites a directory")
    if not location.join(STATE_FILE).is_file():
        raise UserError(f"{location}: not a rayfit run (no {STATE_FILE})")
    return location.download(out, skip=skip)



def check_storage_reaches_every_node(location: Location) -> None:
    """On a cluster of several nodes, a local storage path must be one every node mounts (NFS, a
    shared disk): Ray Train's workers and Tune's trials write their checkpoints there from the node
    they run on. A probe file written here is looked for on each alive node; a node that cannot
    see it makes this an `error:` before any training."""
    import ray

    from rayfit.cluster.launch import start

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
    if not location.local or len(nodes) < 2:
        return
    probe = location.join(f".rayfit-shared-{uuid.uuid4().hex[:12]}")
    probe.write_bytes(b"rayfit")
    try:
        looks = [start(os.path.isfile, probe.uri, name="rayfit.sees_storage", cpus=0, node=node) for node in nodes]
        answers = ray.get([look.ref for look in looks], timeout=120)
    finally:
        probe.delete()
    blind = [node[:12] for node, seen in zip(nodes, answers) if not seen]
    if blind:
        raise UserError(f"storage {location.uri} is a local path that node(s) {', '.join(blind)} of this "
                        f"{len(nodes)}-node cluster do not share; give --storage a shared file system path "
                        f"or an object-store URI (s3://bucket/prefix)")
