"""train.py's loop, whatever the task: logging steps, overfitting one batch, gradient
accumulation, mid-epoch resume. What differs by task comes from the task's tests/task_cases.py."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from {{ cookiecutter.package_name }}.engine.checkpoint import TrainState
from {{ cookiecutter.package_name }}.engine.loop import StopRequest
from {{ cookiecutter.package_name }}.engine.step import (
    TrainStep,
    build_scheduler,
)
from {{ cookiecutter.package_name }}.engine.tracking import Trackers

from ..helpers import TINY_RUN_FLAGS, scalar_steps
from ..task import task_cases


def test_scalars_are_logged_at_every_log_step_and_only_then(tiny_run, train_script):
    # 96 samples / batch 16 = 6 steps an epoch, 2 epochs, --log-every 2.
    expected = [2, 4, 6, 8, 10, 12]
    for tag in (
        "train/loss",
        "train/lr",
        "perf/data_ms",
        "perf/compute_ms",
        "perf/compute_efficiency",
        "perf/samples_per_s",
    ):
        assert scalar_steps(tiny_run.run_dir, tag) == expected, tag
    val_tags = [tag for tag in train_script.task.HPARAM_METRICS if tag.startswith("val/")]
    assert f"val/{train_script.task.BEST_METRIC}" in val_tags
    for tag in val_tags:  # once an epoch
        assert scalar_steps(tiny_run.run_dir, tag) == [6, 12], tag
    assert len(tiny_run.losses) == len(expected)


def test_overfitting_one_small_batch_drives_the_loss_down(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--synthetic-size", "16", "--batch-size", "16", "--epochs", "40",
             "--log-every", "1", *task_cases.OVERFIT_FLAGS, "--lr", "0.01",
             "--out-dir", str(tmp_path)]  # fmt: skip
    # Seeded as train.py's main() seeds: otherwise the weights depend on whatever random numbers
    # earlier tests drew, and so would how far 40 steps get.
    args = train_script.parse_args(flags)
    train_script.seed_everything(args.seed, args.deterministic)
    losses = train_script.train(args).losses
    assert len(losses) == 40
    assert losses[-1] < task_cases.OVERFIT_RATIO * losses[0], losses


def test_accumulation_equals_one_big_batch_including_a_short_last_group(train_script, tmp_path):
    images, targets = task_cases.random_batch(24)
    criterion = task_cases.plain_criterion()
    # Reference: a batch of 16 (micro-batches 1+2) then the short last group of 8 (micro-batch 3).
    reference = task_cases.group_norm_model()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for start, stop in ((0, 16), (16, 24)):
        optimizer.zero_grad()
        criterion(reference(images[start:stop]), targets[start:stop]).backward()
        optimizer.step()

    model = task_cases.group_norm_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(optimizer, "constant", 0, 10)
    args = train_script.parse_args(["--accum-steps", "2", "--log-every", "1", "--epochs", "1"])
    loader = DataLoader(TensorDataset(images, targets), batch_size=8)
    state = TrainState()
    with Trackers(tmp_path, SummaryWriter(tmp_path), {}) as trackers:
        step = TrainStep(model, criterion, optimizer, scheduler, torch.device("cpu"), accum_steps=2)
        run = train_script.Run(trackers, StopRequest(), save_last=lambda: None)
        train_script.train_one_epoch(step, loader, state, run, args)
    assert state.global_step == 2
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_augmented_folder_run_resumes_mid_epoch_to_the_same_weights(
    train_script, tmp_path, workers
):
    task_cases.write_data_folder(tmp_path / "data")
    flags = [*TINY_RUN_FLAGS, "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
             "--batch-size", "8", "--epochs", "2", "--num-workers", workers,
             "--out-dir", str(tmp_path / "runs")]  # fmt: skip
    train_script.main([*flags, "--run-name", "straight"])
    train_script.main([*flags, "--run-name", "stopped", "--max-steps", "4"])  # 6 steps an epoch
    last = tmp_path / "runs" / "stopped" / "checkpoints" / "last.pt"
    train_script.main(["--resume", str(last), "--max-steps", "0"])
    straight = torch.load(
        tmp_path / "runs" / "straight" / "checkpoints" / "last.pt", weights_only=True
    )
    resumed = torch.load(last, weights_only=True)
    assert resumed["state"] == straight["state"]
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
