"""Where the suite lives and writes."""
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
LATEST = RESULTS / "latest.json"  # the full suite's results, rendered into BENCHMARKS.md
QUICK = RESULTS / "quick.json"  # --quick smoke runs: tiny sizes, never rendered into BENCHMARKS.md
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
