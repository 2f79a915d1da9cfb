"""A local run directory: claimed once (never an existing run), and the log file Ray's output goes to.

Where a run goes is cluster/storage.py's `plan_run_location`."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from rayfit.errors import UserError

LOG_FILE = "run.log"


def claim_run_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, a read-only or full disk
        raise UserError(f"--out {path}: cannot create the run directory: {exc.strerror or exc}") from None
    if any(path.iterdir()):  # another process got there between plan and claim
        raise UserError(f"--out {path}: already exists and is not empty; rayfit never overwrites a run")
    return path.resolve()


@contextmanager
def output_to_log(log_path: Path, verbose: bool):
    """Send everything written to stdout / stderr (Ray, TensorFlow, C++ libraries) to the log.

    The progress display keeps its own duplicate of the terminal (see `terminal_stream`). With
    `verbose`, output goes to the terminal as usual.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if verbose:
        yield
        return
    log = open(log_path, "a", buffering=1)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    saved_streams = (sys.stdout, sys.stderr)
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = log
        yield
    finally:
        sys.stdout, sys.stderr = saved_streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        log.close()


def terminal_stream():
    """A stream on the user's terminal that survives `output_to_log` redirecting fd 1."""
    return os.fdopen(os.dup(1), "w", buffering=1)
