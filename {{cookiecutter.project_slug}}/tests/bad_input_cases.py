"""Bad inputs every task shares (checkpoints, devices); each task's test_bad_inputs adds its own.

A case is a function (tmp_path, copy of the tiny run's folder) -> (flags, expected text), checked
by conftest's bad_input_run.
"""

import math

import pytest
import torch

from {{ cookiecutter.package_name }}.engine.checkpoint import FORMAT_VERSION


class PickledObject:
    """A class a pickle can name: weights_only loading must refuse a file holding one."""


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


def malicious_checkpoint(tmp_path, run):
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    payload["args"] = PickledObject()
    torch.save(payload, tmp_path / "malicious.pt")
    message = "holds Python objects other than tensors and plain values, so it was not loaded"
    return ["--resume", str(tmp_path / "malicious.pt")], message


def edited_checkpoint(tmp_path, run, **stored_args) -> list[str]:
    """Flags resuming a copy of the run's last.pt whose stored args were changed to `stored_args`.

    The copy lies outside any run folder, so a resume would make a new one from its run_name.
    """
    payload = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    payload["args"].update(stored_args)
    path = tmp_path / "edited" / "checkpoints" / "last.pt"
    path.parent.mkdir(parents=True)
    torch.save(payload, path)
    return ["--resume", str(path), "--epochs", "3"]


def stored_batch_size_zero(tmp_path, run):
    flags = edited_checkpoint(tmp_path, run, batch_size=0)
    message = "stores --batch-size 0, which the command line refuses (0 is out of range; expected "
    return flags, message + "an integer of 1 or more, or auto); use a checkpoint as train.py wrote"


def stored_lr_nan(tmp_path, run):
    return edited_checkpoint(tmp_path, run, lr=float("nan")), "stores --lr nan, which the command"


def stored_run_name_outside_out_dir(tmp_path, run):
    flags = edited_checkpoint(tmp_path, run, run_name="../../escaped_run")
    message = "stores --run-name ../../escaped_run, which the command line refuses ('../../"
    return flags, message + "escaped_run' is a path; give a plain folder name); give --run-name"


def cuda_without_a_gpu(tmp_path, run):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    return ["--device", "cuda"], "--device cuda was asked for"


def fp16_on_the_cpu(tmp_path, run):
    return ["--device", "cpu", "--amp", "fp16"], "--amp fp16 needs a GPU"


SHARED_CASES = [fp16_on_the_cpu, max_steps_reached, truncated_checkpoint, not_a_checkpoint,
                newer_format, malicious_checkpoint, stored_batch_size_zero, stored_lr_nan,
                stored_run_name_outside_out_dir, cuda_without_a_gpu]  # fmt: skip


# A recorded preprocessing (<package>/preprocessing.py) edited by hand, as image tasks' model
# cards carry it: (dotted path, value, the problem preprocessing_problem names).
DAMAGED_PREPROCESSING = {
    "no-preprocessing": ("preprocessing", None, "it records no preprocessing"),
    "image-size-a-string": ("preprocessing.image_size", "32",
                            "preprocessing.image_size is '32', not a whole number of pixels"),
    "image-size-negative": ("preprocessing.image_size", -5,
                            "preprocessing.image_size is -5, not a whole number"),
    "image-size-huge": ("preprocessing.image_size", 100000,
                        "preprocessing.image_size is 100000, not a whole number"),
    "three-channels-more": ("preprocessing.in_channels", 6,
                            "preprocessing.in_channels is 6, not 1 or 3"),
    "a-nan-mean": ("preprocessing.mean", [math.nan] * 3,
                   "preprocessing.mean is [nan, nan, nan], not 1 or 3 finite numbers"),
    "a-zero-std": ("preprocessing.std", [0.0] * 3,
                   "preprocessing.std is [0.0, 0.0, 0.0], not 1 or 3 finite numbers above 0"),
}  # fmt: skip
