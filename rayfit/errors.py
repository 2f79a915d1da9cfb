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


def read_json(file, shown=None) -> dict:
    """A JSON object rayfit wrote (a run's record, its metrics, a model's description), read from
    `file` (a Path or a storage Location). One that is damaged, truncated or edited into something
    else is a UserError naming it (`shown`, default the file), never a traceback."""
    import json

    try:
        value = json.loads(file.read_bytes())
    except ValueError as exc:  # not JSON, or not text at all (JSONDecodeError, UnicodeDecodeError)
        raise UserError(f"{shown or file}: damaged, not the JSON rayfit wrote ({one_line(exc, 120)}); "
                        f"restore it from a copy") from None
    if not isinstance(value, dict):
        raise UserError(f"{shown or file}: damaged, a JSON {type(value).__name__} where rayfit wrote an object; "
                        f"restore it from a copy")
    return value


# Credentials inside a URI end up in config.yaml, logs, tracking and job entrypoints: refused, and
# never echoed while refusing. Where each kind of URI takes them instead:
_CREDENTIALS_FROM = {
    "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS", "gcs": "GOOGLE_APPLICATION_CREDENTIALS",
    "abfs": "AZURE_STORAGE_ACCOUNT_KEY", "az": "AZURE_STORAGE_ACCOUNT_KEY",
    "postgresql": "PGPASSWORD (or ~/.pgpass)",
}
_OBJECT_STORES = {"s3", "gs", "gcs"}  # user info there is an access key (abfs's is the container)
_SECRET_PARAMETERS = ("access_key", "secret_key", "session_token", "password", "passwd", "token", "secret",
                      "signature", "sig", "credential", "key")


def redacted(uri: str) -> str:
    """`uri` with the credentials in it (user info holding a password or an object store's key, and
    query parameters that name a secret) replaced by `***`."""
    scheme, sep, rest = str(uri).partition("://")
    if not sep:
        return str(uri)
    rest, mark, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        user, host = authority.rsplit("@", 1)
        if ":" in user or scheme.lower() in _OBJECT_STORES:  # a password, or an object store's key
            authority = f"***@{host}"
    if query:
        parts = []
        for part in query.split("&"):
            name, equals, value = part.partition("=")
            secret = any(name.lower().endswith(word) for word in _SECRET_PARAMETERS)
            parts.append(f"{name}=***" if secret and value else part)
        query = "&".join(parts)
    return f"{scheme}://{authority}{slash}{path}{mark}{query}"


def refuse_credentials(uri, what: str) -> None:
    """A UserError (the URI shown with its secrets hidden) where `uri` carries credentials."""
    shown = redacted(uri)
    if shown != str(uri):
        scheme = shown.split("://", 1)[0].lower().split("+")[0]
        source = _CREDENTIALS_FROM.get(scheme) or (
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" if what == "tracking_uri"
            else "the environment of the storage's own client (or a URL signed for reading)")
        raise UserError(f"{what} {shown}: credentials inside a URI are refused (they would be written to the run's "
                        f"config, logs and tracking); give them through {source} instead")
