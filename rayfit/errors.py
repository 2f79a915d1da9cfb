"""The one user-error type. Library code raises it; the CLI prints `error: ...` and exits 2."""


class UserError(Exception):
    """Bad input a user can fix: a config key, a file, a column, a resource request.

    The message names the problem (the key path, the file, the column, the valid choices)
    and is shown to the user as a single line.
    """
