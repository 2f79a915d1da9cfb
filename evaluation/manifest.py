"""A saved model's manifest: the SHA-256 of every file in its directory, checked before loading.

Loading a model can run code (scikit-learn estimators and the fitted preprocessing are pickles,
loaded with joblib), so a model directory is trusted only as far as its files are the ones rayfit
wrote. The manifest is written last, when the directory is complete; a file that was changed,
added or removed since is refused with an `error:` before anything is unpickled. A directory
written before manifests existed has none and loads as before.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rayfit.errors import UserError

MANIFEST = "MANIFEST.json"


def _digests(directory: Path) -> dict[str, str]:
    found = {}
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.name != MANIFEST):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        found[path.relative_to(directory).as_posix()] = digest.hexdigest()
    return found


def write_manifest(directory: Path) -> None:
    (Path(directory) / MANIFEST).write_text(json.dumps({"sha256": _digests(directory)}, indent=1))


def verify_manifest(directory: Path) -> None:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        return
    recorded = json.loads(path.read_text())["sha256"]
    found = _digests(directory)
    changed = sorted(name for name in recorded.keys() | found.keys() if recorded.get(name) != found.get(name))
    if changed:
        raise UserError(f"{directory}: {', '.join(changed[:5])} differ{'s' if len(changed) == 1 else ''} from what "
                        f"rayfit wrote ({MANIFEST}); refusing to load a model that may have been tampered with")
