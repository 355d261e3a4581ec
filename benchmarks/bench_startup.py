"""Start-up: process start to the first optimizer step, beside a bare torch import.

    python benchmarks/bench_startup.py [--project DIR] [--repeats 3]

Interleaved in one run: `python -c "import torch, torchvision"` and `python train.py` (the
default synthetic run) stopped right after its first optimizer step, both timed as whole
processes. Target: the first step within 2 s of the bare import. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_loop import bake

# Runs train.py's main() and ends the process the moment the first optimizer step is done.
FIRST_STEP = """
import os, sys, importlib.util
sys.argv = ["train.py", "--out-dir", sys.argv[1]]
spec = importlib.util.spec_from_file_location("train_script", "train.py")
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
update = train.engine.TrainStep.update  # clip, optimizer step, schedule step, zero_grad
def update_then_exit(self):
    update(self)
    os._exit(0)
train.engine.TrainStep.update = update_then_exit
train.main()
sys.exit("train.py ended without calling engine.TrainStep.update: the probe needs updating")
"""


def seconds(command: list[str], cwd: Path) -> float:
    """Wall time of a whole process, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a baked project (default: bake one)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of runs")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        project = options.project or bake(scratch)
        imports, first_steps = [], []
        for repeat in range(options.repeats):
            runs = scratch / f"runs-{repeat}"
            imports.append(seconds([sys.executable, "-c", "import torch, torchvision"], project))
            first_steps.append(seconds([sys.executable, "-c", FIRST_STEP, str(runs)], project))
        bare, ours = statistics.median(imports), statistics.median(first_steps)
        print(
            json.dumps(
                {
                    "bench": "startup",
                    "repeats": options.repeats,
                    "import_torch_torchvision_s": round(bare, 3),
                    "first_optimizer_step_s": round(ours, 3),
                    "difference_s": round(ours - bare, 3),
                    "target_difference_s": 2.0,
                    "ok": ours - bare <= 2.0,
                }
            )
        )


if __name__ == "__main__":
    main()
