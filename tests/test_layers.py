"""rayfit's layers (.importlinter) hold, and the check would see an import that breaks them.

import-linter reads the package from the file system: under the editable install the folders that
pyproject's package-dir maps into rayfit (trainers/, tuning/, evaluation/, cluster/) are not inside
rayfit/, so the check runs on the package laid out as a wheel installs it: rayfit/ with those
folders in it, as links to this checkout (a file a test changes is a copy instead).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _installed_layout(into: Path, changed: Optional[tuple[str, str]] = None) -> Path:
    """rayfit as a wheel lays it out, under `into`; `changed`: (package-relative path, line to add)."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    package = into / "rayfit"
    package.mkdir()
    for entry in (ROOT / mapping["rayfit"]).iterdir():
        (package / entry.name).symlink_to(entry)
    for name, folder in mapping.items():
        if name != "rayfit":
            (package / name.split(".", 1)[1]).symlink_to(ROOT / folder)
    if changed:
        relative, line = changed
        target = package / relative
        original = target.resolve()
        if target.parent.is_symlink():  # a mapped folder made real, its files links again
            target.parent.unlink()
            target.parent.mkdir()
            for entry in original.parent.iterdir():
                (target.parent / entry.name).symlink_to(entry)
        target.unlink()  # the one changed file a copy
        target.write_text(original.read_text() + f"\n{line}\n")
    return into


def _lint(layout: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", str(ROOT / ".importlinter")], cwd=layout, capture_output=True,
                          text=True, env={"PYTHONPATH": str(layout), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_the_layers_hold(tmp_path):
    result = _lint(_installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout, result.stdout
    # every folder was seen: an editable install's layout would leave the mapped ones out
    assert "Analyzed" in result.stdout and int(result.stdout.split("Analyzed ")[1].split()[0]) > 80, result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path):
    # cluster/ sits below the stages: a lazy import inside a function counts as well
    line = "def _upward():\n    from rayfit.stages import state  # noqa: F401"
    result = _lint(_installed_layout(tmp_path, ("cluster/plan.py", line)))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rayfit.cluster is not allowed to import rayfit.stages" in result.stdout, result.stdout


def test_a_registry_that_reads_the_config_breaks_its_contract(tmp_path):
    result = _lint(_installed_layout(tmp_path, ("metrics.py", "import rayfit.config  # noqa: F401")))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the registries the config reads never read the config BROKEN" in result.stdout, result.stdout


def _private_uses(source: str) -> list[str]:
    """Another module's private names this source uses: imported from it (`from rayfit.x import
    _helper`) or read through it (`module._helper`)."""
    import ast

    found, modules = [], set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rayfit"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                elif alias.name[:1].islower():
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules.update(alias.asname or alias.name.split(".")[0] for alias in node.names
                           if alias.name.startswith("rayfit"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    uses = {f"{path.relative_to(ROOT)}: {use}" for folder in mapping.values() for path in (ROOT / folder).rglob("*.py")
            for use in _private_uses(path.read_text())}
    assert not uses, "\n".join(sorted(uses))
    # the check sees both ways of reaching into another module
    assert _private_uses("from rayfit.data.prepare import _split\nfrom rayfit import metrics\nmetrics._TABLE\n") == [
        "line 1: from rayfit.data.prepare import _split", "line 3: metrics._TABLE"]
