"""The machine a benchmark ran on: CPUs, memory, GPU, library versions. Nothing is imported to find a
version (importing TensorFlow alone takes seconds and fixes its Keras choice for the process)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Optional

PACKAGES = ("ray", "torch", "tensorflow", "tf-keras", "scikit-learn", "numpy", "pandas", "pyarrow")


def _cpu_model() -> Optional[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpus() -> list[str]:
    """`nvidia-smi -L` lines; empty without an NVIDIA GPU (or its driver)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []


def _version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    import psutil

    return {
        "host": platform.node(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cpus": psutil.cpu_count(logical=False),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "gpus": gpus(),
        "versions": {p: _version(p) for p in PACKAGES},
    }
