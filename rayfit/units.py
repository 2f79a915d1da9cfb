"""Numbers as people read them: durations with their unit and a sensible precision."""
from __future__ import annotations


def format_seconds(seconds: float) -> str:
    """42 ms, 3.2 s, 95 s, 4 min 10 s."""
    seconds = float(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"
