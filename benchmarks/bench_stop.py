"""What agreeing on a stop signal at every optimizer step costs under torchrun, and how soon a
signal on one rank stops them all.

    python benchmarks/bench_stop.py [--project DIR] [--processes 2] [--steps 400] [--rounds 5]

Launches itself under torchrun (gloo, CPU) with the baked project's engine. Each rank runs a
stand-in for an optimizer step (a fixed matmul, then an all-reduce of a gradient-sized tensor
on the default group, as DDP does), alternately without and with `StopRequest.poll()` after
it, `--steps` steps a loop, `--rounds` rounds; the lines report the median step time of each
and the median per-round cost of the poll in microseconds and as a ratio. Then rank 1 alone
"receives" a signal at step 50 and every rank records the step at which `requested` turned
true (the design says: the next step, on every rank). Prints JSON lines from rank 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_loop import bake


def step_loop(steps: int, poll) -> float:
    """Seconds per step of a matmul plus an all-reduce (and `poll` after it, if given)."""
    import torch
    import torch.distributed as dist

    weights, gradient = torch.randn(256, 256), torch.randn(1 << 18)
    started = time.perf_counter()
    for _ in range(steps):
        weights @ weights  # noqa: B018 (compute that stands in for forward and backward)
        dist.all_reduce(gradient)
        if poll is not None:
            poll()
    return (time.perf_counter() - started) / steps


def worker(options: argparse.Namespace) -> None:
    """One rank: the interleaved rounds, then the signal latency."""
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(options.project))
    from image_classifier.engine.loop import StopRequest

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    plain, polled = [], []
    with StopRequest() as stop:
        step_loop(20, stop.poll)  # warm-up
        for _ in range(options.rounds):
            plain.append(step_loop(options.steps, None))
            polled.append(step_loop(options.steps, stop.poll))
    with StopRequest() as stop:
        stopped_at = None
        for step in range(1, 200):
            if rank == 1 and step == 50:
                stop.signum = 15  # as its handler would set it on a SIGTERM
            stop.poll()
            if stop.requested:
                stopped_at = step
                break
    every = [None] * dist.get_world_size()
    dist.all_gather_object(every, stopped_at)
    if rank == 0:
        costs = [(b - a) * 1e6 for a, b in zip(plain, polled, strict=True)]
        ratios = [b / a for a, b in zip(plain, polled, strict=True)]
        print(json.dumps({"step_ms": round(statistics.median(plain) * 1e3, 3),
                          "step_with_poll_ms": round(statistics.median(polled) * 1e3, 3),
                          "poll_cost_us": round(statistics.median(costs), 1),
                          "ratio": round(statistics.median(ratios), 4)}))  # fmt: skip
        print(json.dumps({"signal_on_rank_1_at_step": 50, "stopped_at_step_per_rank": every}))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a baked default project (baked if absent)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(options)
        return
    with tempfile.TemporaryDirectory() as scratch:
        project = options.project or bake(Path(scratch))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={options.processes}", __file__, "--worker",
                   "--project", str(project.resolve()), "--steps", str(options.steps),
                   "--rounds", str(options.rounds)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
        subprocess.run(command, check=True, env=env)


if __name__ == "__main__":
    main()
