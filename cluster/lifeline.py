"""A joined cluster, watched from the driver: its GCS not answering for GRACE_S is a lost cluster.

When the cluster a driver joined goes away (`ray stop` on the head, the head's machine gone), Ray's
core worker ends the driver's process by itself once the GCS has been unreachable for 60 s
(`gcs_rpc_server_reconnect_timeout_s`), from a thread of its own, with no word a user can act on.
The lifeline looks at the GCS's port every INTERVAL_S; once it has not answered for GRACE_S it calls
`on_lost` with what it saw, well before Ray's own timeout, so that the driver can say so and leave
the run resumable.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, Optional

# Unreachable this long: lost. A restarted head's GCS answers again within seconds; this and the
# run's clean-up (stages/ray_session.py HARD_STOP_S at most) stay within 30 s of the loss.
GRACE_S = 10.0
INTERVAL_S = 1.0


def _answers(host: str, port: int, timeout_s: float = 1.0) -> Optional[str]:
    """None where something listens at host:port, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


class Lifeline:
    """Use as a context manager: a thread watches `gcs_address` (host:port) while the body runs."""

    def __init__(self, gcs_address: str, on_lost: Callable[[str], None], grace_s: float = GRACE_S,
                 interval_s: float = INTERVAL_S):
        host, _, port = gcs_address.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.on_lost, self.grace_s, self.interval_s = on_lost, grace_s, interval_s
        self.lost: Optional[str] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def __enter__(self) -> "Lifeline":
        self._thread = threading.Thread(target=self._watch, name="rayfit-lifeline", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _watch(self) -> None:
        answered = time.monotonic()
        while not self._stop.wait(self.interval_s):
            problem = _answers(self.host, self.port)
            if problem is None:
                answered = time.monotonic()
                continue
            silent = time.monotonic() - answered
            if silent >= self.grace_s and not self._stop.is_set():
                self.lost = f"its GCS at {self.host}:{self.port} has not answered for {silent:.0f} s ({problem})"
                self.on_lost(self.lost)
                return
