"""The one user-error type. Library code raises it; the CLI prints `error: ...` and exits 2, and
the Python API (`rayfit.run`, ...) raises it with the same message."""
import errno


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one line of at most `limit` characters, for an `error:` line."""
    text = " ".join(str(exc).split())
    return text[:limit] or type(exc).__name__


class UserError(Exception):
    """Bad input a user can fix: a config key, a file, a column, a resource request.

    The message names the problem (the key path, the file, the column, the valid choices)
    and is shown to the user as a single line.
    """


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (Ctrl-C, a notebook's stop button) ended a run or a resume; `run_dir` is
    the run it leaves behind, if any: `rayfit.resume(run_dir)` finishes it.

    A KeyboardInterrupt, so that no `except Exception` on the way up swallows it and every `finally`
    (stopping Ray among them) runs.
    """

    def __init__(self, run_dir=None):
        super().__init__()
        self.run_dir = run_dir


# A full disk, a read-only one, a quota, a directory that is not ours: the user's to fix.
DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


def disk_problem(exc: OSError):
    """The one-line message for an OSError that is the disk's, not rayfit's (full, read-only, not
    ours), or None for any other OSError. What was written is whole (every result is renamed into
    place), and the run resumes once there is room."""
    if exc.errno not in DISK_ERRORS:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    verb = "access" if exc.errno in (errno.EACCES, errno.EPERM) else "write"
    return f"cannot {verb}{where}: {exc.strerror or exc}"
