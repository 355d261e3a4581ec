"""Bad inputs every task shares (checkpoints, devices); each task's test_bad_inputs adds its own.

A case is a function (tmp_path, copy of the tiny run's folder) -> (flags, expected text), checked
by conftest's bad_input_run.
"""

import pytest
import torch

from {{ cookiecutter.package_name }}.engine.checkpoint import FORMAT_VERSION


def max_steps_reached(tmp_path, run):
    flags = ["--resume", str(run / "checkpoints" / "last.pt"), "--epochs", "3", "--max-steps", "12"]
    return flags, "--max-steps 12 is reached; pass --max-steps 0"


def truncated_checkpoint(tmp_path, run):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes((run / "checkpoints" / "last.pt").read_bytes()[:5000])
    return ["--resume", str(bad)], "is not a readable checkpoint"


def not_a_checkpoint(tmp_path, run):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    return ["--resume", str(tmp_path / "foreign.pt")], "not a checkpoint of this project"


def newer_format(tmp_path, run):
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "newer.pt")
    return ["--resume", str(tmp_path / "newer.pt")], "newer than the"


def cuda_without_a_gpu(tmp_path, run):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return ["--device", "cuda"], "--device cuda was asked for"


def fp16_on_the_cpu(tmp_path, run):
    return ["--device", "cpu", "--amp", "fp16"], "--amp fp16 needs a GPU"


SHARED_CASES = [fp16_on_the_cpu, max_steps_reached, truncated_checkpoint, not_a_checkpoint,
                newer_format, cuda_without_a_gpu]  # fmt: skip
