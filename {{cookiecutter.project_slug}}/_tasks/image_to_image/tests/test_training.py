import json
import math

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
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
    for tag in ("val/loss", "val/psnr", "val/ssim", "val/psnr_input", "val/ssim_input"):
        assert scalar_steps(tiny_run.run_dir, tag) == [6, 12], tag
    assert len(tiny_run.losses) == len(expected)


def test_overfitting_one_small_batch_drives_the_loss_down(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--synthetic-size", "16", "--batch-size", "16", "--epochs", "40",
             "--log-every", "1", "--lr", "0.01",
             "--out-dir", str(tmp_path)]  # fmt: skip
    # Seeded as train.py's main() seeds: otherwise the weights depend on whatever random numbers
    # earlier tests drew, and so would how far 40 steps get.
    args = train_script.parse_args(flags)
    train_script.seed_everything(args.seed, args.deterministic)
    losses = train_script.train(args).losses
    assert len(losses) == 40
    assert losses[-1] < 0.85 * losses[0], losses  # denoising keeps an error floor


def make_group_norm_model():
    # GroupNorm: no batch statistics, so micro-batches and one big batch are comparable.
    torch.manual_seed(0)
    model = architecture.{{ cookiecutter.__model_class }}(width=4, depth=2, norm="group")
    nn.init.normal_(model.head.weight, std=0.1)  # zero would leave the lower layers no gradient
    return model


def test_accumulation_equals_one_big_batch_including_a_short_last_group(train_script, tmp_path):
    images, targets = torch.rand(24, 3, 8, 8), torch.rand(24, 3, 8, 8)
    criterion = nn.L1Loss()
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


def test_test_script_reports_psnr_of_model_and_input_as_json(
    tiny_run, test_script, capsys, tmp_path
):
    checkpoint = tiny_run.run_dir / "checkpoints" / "best.pt"
    samples = tmp_path / "samples"
    flags = ["--checkpoint", str(checkpoint), "--num-workers", "0", "--device", "cpu"]
    assert test_script.main([*flags, "--save-samples", str(samples), "--batch-size", "8"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("psnr", "psnr_input", "ssim", "ssim_input", "loss"):
        assert math.isfinite(result[key]), key
    assert result["psnr"] == pytest.approx(tiny_run.best_metric, rel=1e-5)
    assert result["psnr_input"] == pytest.approx(20.4, abs=0.5)  # noise of sigma 0.1
    assert result["samples"] == 19  # the val split: a fifth of --synthetic-size 96
    pngs = sorted(samples.glob("*.png"))
    assert len(pngs) == 3  # 19 images in batches of 8
    from PIL import Image

    with Image.open(pngs[0]) as grid:  # 3 rows (input, output, target) of 8 images of 32 px
        assert grid.size == (8 * 34 + 2, 3 * 34 + 2)


def test_image_grids_are_logged_every_image_log_every_steps(tiny_run, train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--epochs", "1", "--image-log-every", "4", "--out-dir",
             str(tmp_path), "--run-name", "grids"]  # fmt: skip
    train_script.train(train_script.parse_args(flags))
    events = EventAccumulator(str(tmp_path / "grids"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("train/input_output_target")] == [4]
    assert "data/train_samples" in events.Tags()["images"]


def test_random_perceptual_weights_build_the_vgg_term(train_script):
    args = train_script.parse_args(["--perceptual-weights", "random", "--perceptual-scale", "0.5"])
    criterion = train_script.task.build_criterion(args)
    assert criterion.perceptual is not None and criterion.perceptual_scale == 0.5


def test_a_missing_perceptual_weights_file_is_one_sentence(train_script, tmp_path):
    args = train_script.parse_args(["--perceptual-weights", str(tmp_path / "vgg.pt")])
    with pytest.raises(train_script.UserError, match="is not a file; give a VGG16 state dict"):
        train_script.task.build_criterion(args)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_augmented_folder_run_resumes_mid_epoch_to_the_same_weights(
    train_script, tmp_path, workers
):
    from PIL import Image

    # Gradients at many angles: every crop and flip changes the pixels the model sees.
    for split in ("train", "val"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for number in range(6):
            image = Image.linear_gradient("L").rotate(15 * number).resize((48, 40))
            image.save(tmp_path / "data" / split / f"{number}.png")
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
