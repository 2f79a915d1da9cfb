"""`python bench/driver_peak.py PEAK_FILE rayfit-arguments...`: the rayfit CLI, which writes its own
process's peak resident memory (VmHWM, KiB) to PEAK_FILE as it exits. The driver's peak, read
from inside: its children (a Ray it starts) are not counted."""
from __future__ import annotations

import atexit
import sys
from pathlib import Path


def _write_peak(path: Path) -> None:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                path.write_text(line.split()[1])
                return


if __name__ == "__main__":
    atexit.register(_write_peak, Path(sys.argv[1]))
    from rayfit.cli import main

    sys.exit(main(sys.argv[2:]))
