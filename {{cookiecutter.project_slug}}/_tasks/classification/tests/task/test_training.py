import json
import math

import pytest
import torch

from ..helpers import TINY_RUN_FLAGS, same_weights
from .task_cases import write_skewed_folder


def test_test_script_reports_accuracy_and_loss_as_json(tiny_run, test_script, capsys):
    checkpoint = tiny_run.run_dir / "checkpoints" / "best.pt"
    assert (
        test_script.main(["--checkpoint", str(checkpoint), "--num-workers", "0", "--device", "cpu"])
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["accuracy"] <= 1.0 and math.isfinite(result["loss"])
    assert result["accuracy"] == pytest.approx(tiny_run.best_metric)
    assert result["samples"] == 19  # the val split: a fifth of --synthetic-size 96


def stopped_resumed_and_straight(train_script, flags: list[str], stop_at: int, tmp_path):
    """last.pt of a run stopped after `stop_at` steps then resumed, and of an unbroken run."""
    flags = [*flags, "--out-dir", str(tmp_path / "runs")]
    train_script.main([*flags, "--run-name", "straight"])
    train_script.main([*flags, "--run-name", "stopped", "--max-steps", str(stop_at)])
    last = tmp_path / "runs" / "stopped" / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)["state"]["step_in_epoch"] == stop_at
    train_script.main(["--resume", str(last), "--max-steps", "0"])
    return last, tmp_path / "runs" / "straight" / "checkpoints" / "last.pt"


def test_a_run_with_mixup_and_cutmix_resumes_mid_epoch_to_the_same_weights(train_script, tmp_path):
    # One worker process collates (and mixes) the batches; 6 steps an epoch.
    flags = [*TINY_RUN_FLAGS, "--mixup", "0.4", "--cutmix", "1.0", "--epochs", "2",
             "--num-workers", "1"]  # fmt: skip
    assert same_weights(*stopped_resumed_and_straight(train_script, flags, 4, tmp_path))


def test_a_balanced_run_on_a_skewed_folder_resumes_mid_epoch_to_the_same_weights(
    train_script, tmp_path
):
    write_skewed_folder(tmp_path / "data")  # 44 images: 5 steps of 8 an epoch
    flags = [*TINY_RUN_FLAGS, "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
             "--batch-size", "8", "--balanced-sampling", "--epochs", "2"]  # fmt: skip
    assert same_weights(*stopped_resumed_and_straight(train_script, flags, 3, tmp_path))
