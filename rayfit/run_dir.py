"""A local run directory: claimed once and by one run (never an existing run; rayfit/lease.py), and
the log file Ray's output goes to.

Where a run goes is cluster/storage.py's `plan_run_location`."""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from rayfit.errors import UserError
from rayfit.lease import LEASE_FILE, RunLease
from rayfit.signals import signals_held

LOG_FILE = "run.log"


def claim_run_dir(location) -> RunLease:
    """A new run's local directory (`location`, a cluster/storage.py Location), claimed by creating
    its lease exclusively: Taken where another run claimed it first, even in the same moment."""
    path = location.path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in the way, no permission, a read-only or full disk
        raise UserError(f"--out {path}: cannot create the run directory: {exc.strerror or exc}") from None
    lease = RunLease(location).create()
    # something was there before the claim (not a lease, nor another claimant's lease in the making)
    if any(child.name != LEASE_FILE and not child.name.startswith(f".{LEASE_FILE}.") for child in path.iterdir()):
        lease.release()
        raise UserError(f"--out {path}: already exists and is not empty; rayfit never overwrites a run")
    return lease


@contextmanager
def output_to_log(log_path: Path, verbose: bool):
    """Send everything written to stdout / stderr (Ray, TensorFlow, C++ libraries) to the log.

    The progress display keeps its own duplicate of the terminal (see `terminal_stream`). With
    `verbose`, output goes to the terminal as usual. Log handlers that write to the Python streams
    themselves (Ray's, set up when it is imported) are pointed at the log too: in a notebook those
    streams are the cell's output, not file descriptors 1 and 2.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if verbose:
        yield
        return
    log = open(log_path, "a", buffering=1)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    _terminal.append(saved)
    saved_streams = (sys.stdout, sys.stderr)
    handlers = _stream_handlers()
    redirected = [(h, h.stream) for h in handlers if h.stream in saved_streams]
    try:
        for fd in (1, 2):
            os.dup2(log.fileno(), fd)
        sys.stdout = sys.stderr = log
        for handler, _ in redirected:
            handler.setStream(log)
        yield
    finally:
        # whole, whatever signal comes meanwhile (a Ctrl-C, or a lost cluster's stop): cut in the
        # middle, the command's last line would go to the log
        with signals_held():
            for handler, stream in redirected:
                handler.setStream(stream)
            for handler in _stream_handlers():  # made meanwhile (a library imported during the run)
                if handler.stream is log:
                    handler.setStream(saved_streams[1])
            sys.stdout, sys.stderr = saved_streams
            for fd, copy in saved.items():
                os.dup2(copy, fd)
            _terminal.remove(saved)
            for copy in saved.values():
                os.close(copy)
            log.close()


# The terminal's own descriptors 1 and 2 while `output_to_log` sends 1 and 2 to the log.
_terminal: list[dict[int, int]] = []


def last_words(line: str) -> None:
    """`line` on the terminal's stderr at once, wherever output goes meanwhile: for a process
    about to end without its usual way out (a lost cluster's hard stop)."""
    data = f"{line}\n".encode()
    redirected = list(_terminal)  # as it is now: `output_to_log` may be giving the terminal back
    for fd in ([redirected[-1][2]] if redirected else []) + [2]:
        try:
            os.write(fd, data)
            return
        except OSError:  # given back meanwhile: fd 2 is the terminal's again
            continue


def _stream_handlers() -> list[logging.StreamHandler]:
    loggers = [logging.getLogger()] + [logger for logger in logging.Logger.manager.loggerDict.values()
                                       if isinstance(logger, logging.Logger)]
    return [handler for logger in loggers for handler in logger.handlers
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)]


def terminal_stream():
    """A stream on the user's terminal that survives `output_to_log` redirecting fd 1."""
    return os.fdopen(os.dup(1), "w", buffering=1)
