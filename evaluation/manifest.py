"""A saved model's manifest: the SHA-256 of every file in its directory, checked before loading.

Loading a model can run code (scikit-learn estimators and the fitted preprocessing are pickles,
loaded with joblib), so a model directory is trusted only as far as its files are the ones rayfit
wrote. The manifest is written last, when the directory is complete; a file that was changed,
added or removed since is refused with an `error:` before anything is unpickled, and so is a
directory without a manifest, unless the user vouches for it (`--trust-unverified`,
`rayfit.load(..., trust_unverified=True)`: `trusting_unverified`). A manifest's digests cover the
manifests of the directories inside it (version 2; version 1 left them out, and is read as written).

What it protects against: damage and accidental edits. What it does not: someone who can write the
directory can write a matching manifest too, unless manifests are signed (SIGNING_KEY_ENV).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Optional

from rayfit.errors import read_json, UserError

MANIFEST = "MANIFEST.json"
VERSION = 2
# Where it is set, every manifest is signed with it (HMAC-SHA256 over the digests) and one that is
# unsigned or signed otherwise is refused: someone who can write the directory but lacks the key
# cannot write a manifest that passes. Read from the environment only; never written or printed.
SIGNING_KEY_ENV = "RAYFIT_SIGNING_KEY"
_TRUSTED: ContextVar[bool] = ContextVar("rayfit_trust_unverified", default=False)


@contextmanager
def trusting_unverified(trust: bool = True):
    """Within it (with `trust`), a directory without a manifest loads: the user vouches for it. A
    nested `trusting_unverified(False)` leaves an outer trust as it is."""
    token = _TRUSTED.set(trust or _TRUSTED.get())
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _digests(directory: Path, nested: bool = True) -> dict[str, str]:
    """Every file's SHA-256 but the directory's own manifest (`nested`: the manifests of the
    directories inside it too, else those are left out as version 1 did)."""
    directory = Path(directory)
    own = directory / MANIFEST
    wanted = (lambda p: p != own) if nested else (lambda p: p.name != MANIFEST)
    found = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and wanted(p)):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        found[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return found


def _signing_key() -> Optional[bytes]:
    key = os.environ.get(SIGNING_KEY_ENV)
    return key.encode() if key else None


def _signature(key: bytes, digests: dict) -> str:
    return hmac.new(key, json.dumps(digests, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def write_manifest(directory: Path) -> None:
    """The directory's manifest, written last (signed with RAYFIT_SIGNING_KEY where it is set)."""
    record = {"version": VERSION, "sha256": _digests(directory)}
    key = _signing_key()
    if key is not None:
        record["hmac_sha256"] = _signature(key, record["sha256"])
    (Path(directory) / MANIFEST).write_text(json.dumps(record, indent=1))


def verify_manifest(directory: Path, signed: bool = True) -> None:
    """Refuse (UserError) a directory whose files differ from its manifest, or that has none; with
    `signed` and RAYFIT_SIGNING_KEY set, one whose manifest was not signed with that key."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        if _TRUSTED.get():
            return
        raise UserError(f"{directory}: no {MANIFEST}, so rayfit cannot vouch for its files (it was removed, or "
                        f"the directory was not written by rayfit); refusing to load it (--trust-unverified, or "
                        f"rayfit.load(..., trust_unverified=True), loads it anyway)")
    manifest = read_json(path)
    recorded = manifest.get("sha256")
    if not isinstance(recorded, dict):
        raise UserError(f"{path}: damaged, no file digests in it; refusing to load a model it cannot vouch for")
    key = _signing_key() if signed else None
    if key is not None:  # the manifest itself must be one written by a holder of the key
        signature = manifest.get("hmac_sha256")
        if not isinstance(signature, str) or not hmac.compare_digest(signature, _signature(key, recorded)):
            why = "it is not signed" if signature is None else "its signature does not match"
            raise UserError(f"{directory}: {MANIFEST} was not written with the key in {SIGNING_KEY_ENV} ({why}); "
                            f"refusing to load a model that may have been tampered with")
    found = _digests(directory, nested=manifest.get("version", 1) >= 2)
    changed = sorted(name for name in recorded.keys() | found.keys() if recorded.get(name) != found.get(name))
    if changed:
        raise UserError(f"{directory}: {', '.join(changed[:5])} differ{'s' if len(changed) == 1 else ''} from what "
                        f"rayfit wrote ({MANIFEST}); refusing to load a model that may have been tampered with")
