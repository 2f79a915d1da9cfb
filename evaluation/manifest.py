"""A saved model's manifest: the SHA-256 of every file in its directory, checked before loading.

Loading a model can run code (scikit-learn estimators and the fitted preprocessing are pickles,
loaded with joblib), so a model directory is trusted only as far as its files are the ones rayfit
wrote. The manifest is written last, when the directory is complete; a file that was changed,
added or removed since is refused with an `error:` before anything is unpickled, and so is a
directory without a manifest, unless the user vouches for it (`--trust-unverified`,
`rayfit.load(..., trust_unverified=True)`: `trusting_unverified`). A manifest's digests cover the
manifests of the directories inside it (version 2; version 1 left them out, and is read as written).

What it protects against: damage and accidental edits. What it does not: someone who can write the
directory can write a matching manifest too.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from rayfit.errors import read_json, UserError

MANIFEST = "MANIFEST.json"
VERSION = 2
_TRUSTED: ContextVar[bool] = ContextVar("rayfit_trust_unverified", default=False)


@contextmanager
def trusting_unverified(trust: bool = True):
    """Within it (with `trust`), a directory without a manifest loads: the user vouches for it."""
    token = _TRUSTED.set(trust)
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


def write_manifest(directory: Path) -> None:
    (Path(directory) / MANIFEST).write_text(json.dumps({"version": VERSION, "sha256": _digests(directory)}, indent=1))


def verify_manifest(directory: Path) -> None:
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
    found = _digests(directory, nested=manifest.get("version", 1) >= 2)
    changed = sorted(name for name in recorded.keys() | found.keys() if recorded.get(name) != found.get(name))
    if changed:
        raise UserError(f"{directory}: {', '.join(changed[:5])} differ{'s' if len(changed) == 1 else ''} from what "
                        f"rayfit wrote ({MANIFEST}); refusing to load a model that may have been tampered with")
