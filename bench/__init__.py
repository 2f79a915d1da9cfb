"""rayfit's benchmark suite: `make bench` / `python -m bench.run`. See BENCHMARKS.md."""
