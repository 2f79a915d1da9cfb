"""Who drives a run: RUN/lease.json, held by one driver at a time.

A new run's directory is claimed by creating its lease exclusively (O_CREAT | O_EXCL), so two runs
started in the same second never share a directory. `rayfit resume` takes the lease before it
touches the run: a lease whose holder still works (a live process on this host, or on another host
an expiry it keeps refreshing) is refused; one whose holder is gone (its process ended on this host,
or its expiry passed) is taken over, so a resume after `kill -9` works. The driver refreshes the
expiry while it works and removes the lease when the command ends, however it ends.

On object storage there is no atomic create: there the lease is best effort (read, then written),
and two drivers started within the same moment can both pass.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

from rayfit.errors import UserError

LEASE_FILE = "lease.json"
LEASE_S = 120.0  # a lease its holder has not refreshed for this long is expired
REFRESH_S = 20.0
_HELD: set[str] = set()  # the leases this process holds now (a second command in it is refused too)


class Taken(UserError):
    """The run (or the directory a new run was to claim) has a driver already."""


def _process_start(pid: int) -> Optional[float]:
    """When the process `pid` started; None where there is none (an exited one not yet reaped counts
    as none: it drives nothing any more)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the lease's holder may still be driving the run."""
    if holder.get("host") == socket.gethostname():
        pid, started = holder.get("pid"), holder.get("started")
        if not isinstance(pid, int):
            return False
        if pid == os.getpid():
            return holder.get("token") in _HELD
        actual = _process_start(pid)
        return actual is not None and isinstance(started, (int, float)) and abs(actual - started) < 1.0
    expires = holder.get("expires")
    return isinstance(expires, (int, float)) and expires > time.time()


def _describe(holder: dict) -> str:
    where = "this host" if holder.get("host") == socket.gethostname() else f"host {holder.get('host')}"
    return f"pid {holder.get('pid')} on {where}"


class RunLease:
    """The lease of the run at `location` (a cluster/storage.py Location), held by this process
    from `create` or `take` to `release`, its expiry refreshed every REFRESH_S seconds meanwhile."""

    def __init__(self, location):
        self.location = location
        self.file = location.join(LEASE_FILE)
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._lock = threading.Lock()  # a refresh and the release: never a lease written after it goes
        self._thread: Optional[threading.Thread] = None

    def _record(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid()),
                           "expires": time.time() + LEASE_S, "token": self.token}).encode()

    def _holder(self) -> Optional[dict]:
        """The lease's record; None where there is no lease, {} where it is damaged. A storage that
        cannot be read raises (OSError): that is not evidence that nobody holds it."""
        try:
            data = self.file.read_bytes()
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(data)
        except ValueError:  # damaged: nobody can be shown to hold it
            return {}
        return holder if isinstance(holder, dict) else {}

    def create(self) -> "RunLease":
        """A new run's claim: the lease is created whole, never replaced (Taken if it exists)."""
        if not self.location.local:
            return self.take(str(self.location))
        part = self.file.path.with_name(f".{LEASE_FILE}.{self.token}")
        part.write_bytes(self._record())
        try:
            os.link(part, self.file.path)  # atomic, and only where no lease is: never an empty one seen
        except FileExistsError:
            raise Taken(f"{self.location}: another run claimed this directory") from None
        finally:
            part.unlink(missing_ok=True)
        return self._held()

    def _held(self) -> "RunLease":
        _HELD.add(self.token)
        self._thread = threading.Thread(target=self._refresh, name="rayfit-lease", daemon=True)
        self._thread.start()
        return self

    def take(self, shown: str) -> "RunLease":
        """`rayfit resume`: the lease, taken over from a holder that is gone; Taken while one works."""
        for _ in range(10):
            try:
                holder = self._holder()
            except OSError as exc:
                raise UserError(f"{shown}: cannot read its {LEASE_FILE} ({exc.strerror or exc}); "
                                f"run the command again once the storage answers") from None
            if holder is not None and _alive(holder):
                until = "" if holder.get("host") == socket.gethostname() else \
                    f" (its lease runs until {time.strftime('%H:%M:%S', time.localtime(holder['expires']))} unless renewed)"
                raise Taken(f"{shown}: another driver is working on this run ({_describe(holder)}{until}); "
                            f"wait for it to end, or stop it, then run the command again")
            if not self.location.local:  # no atomic create on object storage: best effort
                self.file.write_bytes(self._record())
                return self._held()
            if holder is not None:  # its holder is gone: moved aside by one taker only
                stale = self.file.path.with_name(f".{LEASE_FILE}.stale.{self.token}")
                try:
                    os.rename(self.file.path, stale)
                except FileNotFoundError:
                    continue  # another driver moved it first; look again
                moved = _read(stale)
                if moved != holder:  # another taker's fresh lease, not the stale one: put back, look again
                    try:
                        os.link(stale, self.file.path)
                    except FileExistsError:
                        pass
                    stale.unlink(missing_ok=True)
                    continue
                stale.unlink(missing_ok=True)
            try:
                return self.create()
            except Taken:
                continue  # another driver created it meanwhile; look again (it is alive)
        raise Taken(f"{shown}: other drivers keep taking this run's lease; run the command again")

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    holder = self._holder()
                    if holder is None or holder.get("token") != self.token:
                        return  # taken over (this driver was thought gone) or the run was given back
                    self.file.write_bytes(self._record())  # whole: through a renamed temporary where local
                except Exception:  # noqa: BLE001 - storage out of reach for a moment: the next refresh tries again
                    pass

    def release(self) -> None:
        """The command ends: the lease goes (if it is still ours)."""
        with self._lock:
            self._stop.set()
            _HELD.discard(self.token)
            try:
                holder = self._holder()
                if holder is not None and holder.get("token") == self.token:
                    self.file.delete()
            except Exception:  # noqa: BLE001 - storage out of reach: the lease expires by itself
                pass


def _read(path: Path) -> Optional[dict]:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
