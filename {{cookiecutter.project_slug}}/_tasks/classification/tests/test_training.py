import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)
from {{ cookiecutter.package_name }}.engine.checkpoint import TrainState
from {{ cookiecutter.package_name }}.engine.optim import build_scheduler

from .conftest import TINY_RUN_FLAGS, scalar_steps


def test_scalars_are_logged_at_every_log_step_and_only_then(tiny_run):
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
    assert scalar_steps(tiny_run.run_dir, "val/accuracy") == [6, 12]
    assert len(tiny_run.losses) == len(expected)


def test_overfitting_one_small_batch_drives_the_loss_down(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--synthetic-size", "16", "--batch-size", "16", "--epochs", "40",
             "--log-every", "1", "--label-smoothing", "0", "--lr", "0.01",
             "--out-dir", str(tmp_path)]  # fmt: skip
    # Seeded as train.py's main() seeds: otherwise the weights depend on whatever random numbers
    # earlier tests drew, and so would how far 40 steps get.
    args = train_script.parse_args(flags)
    train_script.seed_everything(args.seed, args.deterministic)
    losses = train_script.train(args).losses
    assert len(losses) == 40
    assert losses[-1] < 0.25 * losses[0], losses


def make_group_norm_model():
    # GroupNorm: no batch statistics, so micro-batches and one big batch are comparable.
    torch.manual_seed(0)
    return architecture.{{ cookiecutter.__model_class }}(num_classes=3, width=4, norm="group")


def test_accumulation_equals_one_big_batch_including_a_short_last_group(train_script, tmp_path):
    images, targets = torch.randn(24, 3, 8, 8), torch.randint(0, 3, (24,))
    criterion = nn.CrossEntropyLoss()
    # Reference: a batch of 16 (micro-batches 1+2) then the short last group of 8 (micro-batch 3).
    reference = make_group_norm_model()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for start, stop in ((0, 16), (16, 24)):
        optimizer.zero_grad()
        criterion(reference(images[start:stop]), targets[start:stop]).backward()
        optimizer.step()

    model = make_group_norm_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = build_scheduler(optimizer, "constant", 0, 10)
    args = train_script.parse_args(["--accum-steps", "2", "--log-every", "1", "--epochs", "1"])
    loader = DataLoader(TensorDataset(images, targets), batch_size=8)
    state = TrainState()
    with SummaryWriter(tmp_path) as writer:
        train_script.train_one_epoch(
            model, loader, criterion, optimizer, scheduler, torch.device("cpu"), writer, state, args
        )
    assert state.global_step == 2
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


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


@pytest.mark.parametrize("workers", ["0", "1"])
def test_augmented_folder_run_resumes_mid_epoch_to_the_same_weights(
    train_script, tmp_path, workers
):
    from PIL import Image

    # Gradients at many angles: every crop and flip changes the pixels the model sees.
    for split in ("train", "val"):
        for label, name in enumerate(("a", "b")):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            for number in range(24):
                image = Image.linear_gradient("L").rotate(15 * number + 90 * label).resize((40, 30))
                image.save(tmp_path / "data" / split / name / f"{number}.png")
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
