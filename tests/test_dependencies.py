"""The installed dependency floors keep out releases with known code-execution bugs."""
from __future__ import annotations

from importlib.metadata import requires, version

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

# package: (the newest vulnerable release, the first fixed one, the advisory)
FLOORS = {
    "torch": ("2.5.1", "2.6.0", "CVE-2025-32434: torch.load(weights_only=True) can run code"),
    "pyarrow": ("14.0.0", "14.0.1", "CVE-2023-47248: reading IPC/Parquet can run code"),
}


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_the_floor_refuses_the_vulnerable_release_and_the_install_is_above_it(package):
    vulnerable, fixed, advisory = FLOORS[package]
    declared = [Requirement(line) for line in requires("rayfit") if Requirement(line).name == package]
    assert declared, f"rayfit's installed metadata does not require {package}"
    for requirement in declared:
        assert not requirement.specifier.contains(vulnerable, prereleases=True), f"{requirement} admits {advisory}"
        assert requirement.specifier.contains(fixed), f"{requirement} refuses the fixed release {fixed}"
    assert Version(version(package)).release >= Version(fixed).release
