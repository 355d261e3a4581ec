"""What the tests share besides fixtures: the tiny run's flags, script loading, torchrun, model
building, event reading, small file writers. Tests import it; no test imports another test."""

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.compat.proto.event_pb2 import SessionLog
from torch.utils.data import DataLoader

from {{ cookiecutter.package_name }}.engine.cli import run_cli

from .task import task_cases

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# A run small enough for a CPU test: 96 synthetic images, 6 steps an epoch, a narrow model.
TINY_RUN_FLAGS = [
    "--dataset", "synthetic", "--synthetic-size", "96", "--batch-size", "16",
    "--num-workers", "0", "--device", "cpu", "--log-every", "2", "--warmup-steps", "2",
    *task_cases.TINY_RUN_FLAGS,
]  # fmt: skip


def scalar_steps(run_dir, tag) -> list[int]:
    """The steps at which `tag` was logged, as TensorBoard shows them: each start's events file
    in the order they were written, a resumed start's purge_step dropping the steps from it on.

    Read with TensorBoard's own file reader, but the files ordered by their first event's time:
    TensorBoard orders them by name, and two starts in one process within one second have
    names that differ only in a counter, which sorts "10" before "9".
    """
    steps: list[int] = []
    for path in sorted(Path(run_dir).glob("events.out.tfevents.*"), key=first_event_time):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                steps = [step for step in steps if step < event.step]  # the purge
            elif event.HasField("summary"):
                steps += [event.step for value in event.summary.value if value.tag == tag]
    return steps


def first_event_time(path: Path) -> float:
    return next(iter(EventFileLoader(str(path)).Load())).wall_time


def torchrun_command(processes: int = 2) -> list[str]:
    """torchrun on this machine alone with `processes` processes; run it in PROJECT_ROOT."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}"]  # fmt: skip


def torchrun(
    *command: str, processes: int = 2, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run `command` (train.py and its flags, or -m a module) under torchrun, output captured;
    `env` adds environment variables."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}  # they share the cores
    return subprocess.run(
        [*torchrun_command(processes), *command], cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=timeout, env=environment,
    )  # fmt: skip


def load_script(name: str):
    """Import train.py or test.py by path (test.py would clash with the stdlib's `test`)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", PROJECT_ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TaskModel(NamedTuple):
    """A model of this project's task, built as train.py builds it."""

    model: torch.nn.Module
    config: dict  # the keyword arguments that built it (a checkpoint's model_config)
    batch: tuple[torch.Tensor, torch.Tensor]  # 4 training samples: inputs and targets
    args: argparse.Namespace  # the flags it was built from


def run_script(script, prog: str, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a script's main run in-process on the CPU, no workers."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", [prog, *argv, "--device", "cpu", "--num-workers", "0"])
    code = run_cli(script.main, prog=prog)
    out, err = capsys.readouterr()
    return code, out, err


def model_of_this_task(train_script, *flags: str) -> TaskModel:
    """The model of TINY_RUN_FLAGS (then `flags`), through the task module and the model's
    constructor alone: machinery tests use no parameter name, size or loss of one model."""
    args = train_script.parse_args([*TINY_RUN_FLAGS, *flags])
    data = train_script.task.build_data(args)
    config = train_script.task.model_config(args, data)
    model = train_script.task.build_model(config)
    inputs, targets = next(iter(DataLoader(data.train, batch_size=4)))
    return TaskModel(model, config, (inputs, targets), args)


def write_png(path, size=(40, 36)) -> None:
    """A noise image of `size` (width, height), its folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


DDP_FLAGS = [*TINY_RUN_FLAGS, *task_cases.NO_BATCH_STATISTICS_FLAGS,
             *task_cases.NO_AUGMENTATION_FLAGS, "--optimizer", "sgd", "--epochs", "1"]  # fmt: skip

EMA_FLAGS = ["--ema", "0.9", "--keep-top-k", "1"]


def last_checkpoint(out_dir, name) -> dict:
    return torch.load(out_dir / name / "checkpoints" / "last.pt", weights_only=True)


def assert_same_weights(first: dict, second: dict, exact: bool = False) -> None:
    for name, tensor in first["model"].items():
        if exact:
            assert torch.equal(second["model"][name], tensor), name
        else:
            # 6 SGD steps (lr <= 3e-3, momentum 0.9) on gradients whose float32 reductions
            # differ in order (~1e-6 relative) move the weights apart by under ~1e-7; a wrong
            # gradient (not averaged over the processes, say) moves them by ~lr = 1e-3.
            torch.testing.assert_close(second["model"][name], tensor, rtol=1e-5, atol=1e-5)


def same_weights(path_a, path_b) -> bool:
    a, b = torch.load(path_a, weights_only=True), torch.load(path_b, weights_only=True)
    return a["state"] == b["state"] and all(
        torch.equal(a["model"][k], b["model"][k]) for k in a["model"]
    )
