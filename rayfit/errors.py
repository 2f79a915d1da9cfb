"""The one user-error type. Library code raises it; the CLI prints `error: ...` and exits 2."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message as one line of at most `limit` characters, for an `error:` line."""
    text = " ".join(str(exc).split())
    return text[:limit] or type(exc).__name__


class UserError(Exception):
    """Bad input a user can fix: a config key, a file, a column, a resource request.

    The message names the problem (the key path, the file, the column, the valid choices)
    and is shown to the user as a single line.
    """
