"""B3's stock side, in a process of its own: a Ray started by plain `ray.init()` (Ray's defaults,
none of rayfit's session or Ray Train settings), answering one timed `TorchTrainer(...).fit()` of an
empty loop per request.

Protocol on stdin/stdout, one line each: `fit <storage dir>` -> `took <seconds>`; `quit` ends it.
The first fit, untimed by the benchmark, is made at start-up ("ready <seconds>"), so that both sides
launch into a warm session.
"""
from __future__ import annotations

import sys
import time

WORKERS = 2


def empty_loop() -> None:
    """The whole training: nothing."""


def stock_fit(storage: str) -> float:
    import ray.train
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(empty_loop,
                           scaling_config=ray.train.ScalingConfig(num_workers=WORKERS, resources_per_worker={"CPU": 1}),
                           run_config=ray.train.RunConfig(name="empty", storage_path=storage))
    started = time.perf_counter()
    result = trainer.fit()
    elapsed = time.perf_counter() - started
    if result.error is not None:
        raise result.error
    return elapsed


def main() -> None:
    import ray

    ray.init()  # Ray's own defaults: this machine's CPUs, no rayfit environment
    reply = sys.__stdout__
    sys.stdout = sys.stderr  # Ray's and Train's own lines stay off the protocol
    print(f"ready {stock_fit(sys.argv[1]):.6f}", file=reply, flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "quit":
            break
        print(f"took {stock_fit(argument):.6f}", file=reply, flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
