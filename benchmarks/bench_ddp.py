"""Scaling out on one machine: N processes under torchrun vs one process, same effective batch.

    python benchmarks/bench_ddp.py [--project DIR] [--processes 2] [--repeats 2] [--device cpu]

Runs the baked project's train.py for one epoch of synthetic data, alternately as
`python train.py --batch-size B` and as `torchrun --nproc_per_node=N train.py --batch-size B/N`
(the same effective batch, the same number of optimizer steps). Throughput is read from the
run's own TensorBoard events: samples between the first and the last logged step, over the
wall time between them, so start-up (imports, process group, workers) is left out. On the CPU
one process already uses every core through intra-op threads; N processes get cores / N threads
each. Prints JSON lines, the last one with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_loop import bake
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EPOCH_FLAGS = [
    "--dataset", "synthetic", "--synthetic-size", "4096", "--epochs", "1",
    "--width", "16", "--norm", "group", "--num-workers", "0", "--log-every", "4",
]  # fmt: skip


def samples_per_second(run_dir: Path, effective_batch: int) -> float:
    """Throughput between the first and the last logged training step."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    losses = events.Scalars("train/loss")
    first, last = losses[0], losses[-1]
    return (last.step - first.step) * effective_batch / (last.wall_time - first.wall_time)


def run(project: Path, command: list[str], threads: int) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run(command, cwd=project, check=True, capture_output=True, env=environment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a baked project (default: bake one)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64, help="the effective batch")
    parser.add_argument("--device", default="cpu")
    options = parser.parse_args()
    cores, n = os.cpu_count() or 1, options.processes
    single_flags = [*EPOCH_FLAGS, "--device", options.device, "--batch-size"]
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        project = options.project or bake(scratch)
        results: dict[str, list[float]] = {"single": [], "torchrun": []}
        for repeat in range(options.repeats):
            out = ["--out-dir", str(scratch / "runs")]
            name = f"single-{repeat}"
            single = [sys.executable, "train.py", *single_flags, str(options.batch_size)]
            run(project, [*single, *out, "--run-name", name], threads=cores)
            results["single"].append(
                samples_per_second(scratch / "runs" / name, options.batch_size)
            )
            name = f"torchrun-{repeat}"
            torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={n}", "train.py", *single_flags,
                        str(options.batch_size // n)]  # fmt: skip
            run(project, [*torchrun, *out, "--run-name", name], threads=max(cores // n, 1))
            results["torchrun"].append(
                samples_per_second(scratch / "runs" / name, options.batch_size)
            )
            latest = {kind: round(values[-1], 1) for kind, values in results.items()}
            print(json.dumps({"repeat": repeat, **latest}))
        single, multi = (statistics.median(results[k]) for k in ("single", "torchrun"))
        print(
            json.dumps(
                {
                    "benchmark": "ddp_scaling",
                    "device": options.device,
                    "cores": cores,
                    "processes": n,
                    "effective_batch": options.batch_size,
                    "single_samples_per_s": round(single, 1),
                    "torchrun_samples_per_s": round(multi, 1),
                    "ratio": round(multi / single, 3),
                }
            )
        )


if __name__ == "__main__":
    main()
