"""`rayfit submit` and `rayfit jobs`: an experiment as a Ray job, through the Ray Jobs API.

The experiment is validated here first (a bad config is an `error:` before anything is sent). The
resolved config, and the data file it names when that is a local file, travel in the job's
`runtime_env` working directory (a data file over Ray's package limit goes through the storage);
the job runs `python -m rayfit.cli run experiment.yaml --out RUN` on the cluster, where RUN lies
under `--storage`: an object-store URI (s3://bucket/prefix) or a directory every node and this
machine share. The run's location is kept in the job's metadata (`rayfit_run`), so a job's results
can be found from its id (`rayfit fetch JOB_ID`). rayfit must be installed where the job runs (the
cluster's image or environment), or shipped with the job (`--ship`: the local package in the
job's `py_modules`).

Token authentication: Ray's client reads the token from the environment (`RAY_AUTH_MODE=token`,
`RAY_AUTH_TOKEN` or `RAY_AUTH_TOKEN_PATH`) or `~/.ray/auth_token`; rayfit never prints or stores it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shlex
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from rayfit.cluster.storage import Location, new_run_location
from rayfit.errors import UserError, one_line

RUN_KEY = "rayfit_run"  # job metadata: where the job's run directory is
CONFIG_NAME = "experiment.yaml"
# Ray refuses a working directory above its package limit (ray/_private/runtime_env/packaging.py);
# a larger data file goes through the shared storage instead.
SHIP_LIMIT_BYTES = 100 * 1024 * 1024
FINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def client(address: str):
    """A Jobs API client for `address` (the dashboard's http://HEAD:8265), or a one-line error."""
    from ray.job_submission import JobSubmissionClient

    if not address:
        raise UserError("--address: name the cluster's dashboard, e.g. http://HEAD:8265")
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # refused, unreachable, wrong token: Ray says which
        raise UserError(f"--address {address}: {one_line(exc)}") from None


def submit(exp, address: str, storage: Optional[str], wait: bool, say: Callable[[str], None],
           ship: bool = False) -> int:
    """`rayfit submit`: submit the experiment; follow it unless `wait` is False. Exit code: 0
    succeeded, 1 failed."""
    job_id, run = submit_job(exp, address, storage, ship)
    say(f"job: {job_id}")
    say(f"run: {run}")
    if not wait:
        return 0
    problem = follow(client(address), job_id, say)
    if problem:
        say(f"error: {problem}")
    return 1 if problem else 0


def submit_job(exp, address: str, storage: Optional[str], ship: bool = False) -> tuple[str, Location]:
    """Submit the experiment as a job (`rayfit submit`, `rayfit.submit`): its id and its run's
    location."""
    from rayfit.config import revise, to_yaml

    storage = storage or exp.storage
    if not storage:
        raise UserError("--storage: name where the job writes its run: an object-store URI (s3://bucket/prefix) "
                        "or a directory the cluster's nodes share with this machine")
    root = Location.of(storage)
    run = new_run_location(root, exp.name)
    jobs = client(address)  # reachable, and the token accepted, before anything is written
    root.check_writable()
    with tempfile.TemporaryDirectory(prefix="rayfit-submit-") as tmp:
        workdir = Path(tmp) / "job"
        workdir.mkdir()
        # a local file or folder (the data, a test file): shipped with the job, or through the storage
        shipped = [(key, _ship(Path(path), workdir, root, folder))
                   for key, path, folder in (("data.source", exp.data.source, "data"), ("data.test", exp.data.test, "test"))
                   if path and Path(path).exists()]
        exp = revise(exp, [("storage", None), *shipped])  # the job writes to --out, the run's own location
        (workdir / CONFIG_NAME).write_text(to_yaml(exp))
        entrypoint = " ".join(["python", "-m", "rayfit.cli", "run", CONFIG_NAME, "--out", shlex.quote(run.uri)])
        # The working directory (and rayfit itself with --ship) only: rayfit's driver sets its
        # workers' environment itself, and Ray refuses a job whose runtime_env sets what the
        # driver's ray.init sets too.
        runtime_env = {"working_dir": str(workdir)}
        if ship:
            runtime_env["py_modules"] = [str(_package_copy(Path(tmp) / "package"))]
        job_id = _submit_when_ready(jobs, address, exp.ray.connect_timeout_s, entrypoint=entrypoint,
                                    metadata={RUN_KEY: run.uri}, runtime_env=runtime_env)
    return job_id, run


def _package_copy(where: Path) -> Path:
    """The installed rayfit as one importable folder for the job's `py_modules` (`--ship`).

    Its subpackages live in the project's top-level folders (pyproject's package-dir mapping), so
    they are gathered into one tree here, as an installed wheel would lay them out."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    package = where / "rayfit"
    # found, not imported: this layer never imports the package's top (its API sits above it)
    shutil.copytree(Path(importlib.util.find_spec("rayfit").origin).parent, package, ignore=ignore)
    for sub in ("trainers", "tuning", "evaluation", "cluster"):
        module = importlib.import_module(f"rayfit.{sub}")
        target = package / sub
        if not target.exists():
            shutil.copytree(Path(module.__file__).parent, target, ignore=ignore)
    return package


def run_of(jobs, job_id: str) -> str:
    """The run location a job submitted by rayfit writes to (its metadata)."""
    try:
        info = jobs.get_job_info(job_id)
    except RuntimeError as exc:  # the Jobs API's answer for an unknown job
        raise UserError(f"job {job_id}: {one_line(exc)}") from None
    run = (info.metadata or {}).get(RUN_KEY)
    if not run:
        raise UserError(f"job {job_id} was not submitted by rayfit submit (no {RUN_KEY} in its metadata)")
    return run


def _submit_when_ready(jobs, address: str, timeout_s: float, **job) -> str:
    """submit_job, retried for up to `timeout_s` (ray.connect_timeout_s) while a freshly started head
    answers that its job agent is not up yet ("No available agent to submit job, please try again later")."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return jobs.submit_job(**job)
        except Exception as exc:
            if "try again later" not in str(exc) or time.monotonic() > deadline:
                raise UserError(f"--address {address}: the job was not accepted: {one_line(exc)}") from None
            time.sleep(1)


def _ship(source: Path, workdir: Path, root: Location, folder: str = "data") -> str:
    """Where the job finds the data: in its working directory when small, else in the storage, at
    `STORAGE/data/<sha256 of its content>/<name>`: an edited file is uploaded anew, never mistaken
    for the last one, and an upload counts only once its `.complete` marker is written after it (a
    killed upload is made again, not reused)."""
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    if sum(p.stat().st_size for p in files) <= SHIP_LIMIT_BYTES:
        _copy(source, workdir / folder / source.name)
        return str(Path(folder) / source.name)  # relative to the job's working directory
    shelf = root.join(folder, _content_digest(source, files)[:32])
    target, complete = shelf.join(source.name), shelf.join(UPLOADED)
    if not (complete.is_file() and target.exists()):
        if shelf.exists():  # an upload that did not finish
            shelf.delete()
        target.upload(source)
        complete.write_bytes(b"")
    return target.uri


UPLOADED = ".complete"  # written after a data upload: without it, the upload did not finish


def _content_digest(source: Path, files: list[Path]) -> str:
    """sha256 of the data's name and content (a folder's files by their paths in it)."""
    digest = hashlib.sha256(f"{source.name}\0".encode())
    for file in files:
        digest.update(f"{file.relative_to(source).as_posix() if source.is_dir() else ''}\0".encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def follow(jobs, job_id: str, say: Callable[[str], None], poll_s: float = 1.0,
           patience_s: float = 30.0) -> Optional[str]:
    """Print the job's output as it comes (rayfit's own progress lines); None when it succeeds,
    else what went wrong (one line). The Jobs API failing to answer is waited out for `patience_s`
    (a head busy for a moment), then an `error:`: the job itself may still be running."""
    printed, failing_since = 0, None
    while True:
        try:
            status = str(jobs.get_job_status(job_id)).split(".")[-1]
            logs = jobs.get_job_logs(job_id)
            failing_since = None
        except Exception as exc:  # the SDK's RuntimeError, a refused or reset connection, a timeout
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > patience_s:
                raise UserError(f"job {job_id}: the cluster's Jobs API stopped answering while its output was "
                                f"followed ({one_line(exc, 160)}); the job may still be running: "
                                f"rayfit jobs status {job_id}") from None
            time.sleep(poll_s)
            continue
        for line in logs[printed:].splitlines():
            say(line)
        printed = len(logs)
        if status in FINAL:
            break
        time.sleep(poll_s)
    if status == "SUCCEEDED":
        return None
    message = (jobs.get_job_info(job_id).message or "").strip()
    return f"job {job_id} {status.lower()}" + (f": {message.splitlines()[-1]}" if message else "")

