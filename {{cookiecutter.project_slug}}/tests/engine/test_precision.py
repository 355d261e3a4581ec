"""Mixed precision, gradient clipping, channels_last and torch.compile."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

from {{ cookiecutter.package_name }}.engine.checkpoint import TrainState
from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.engine.loop import StopRequest
from {{ cookiecutter.package_name }}.engine.step import (
    MixedPrecision,
    TrainStep,
    build_scheduler,
    resolve_amp_dtype,
)
from {{ cookiecutter.package_name }}.engine.tracking import Trackers

from ..helpers import TINY_RUN_FLAGS, model_of_this_task


def test_auto_is_bf16_on_capable_cuda_and_off_elsewhere():
    assert resolve_amp_dtype("auto", torch.device("cpu")) is None
    assert resolve_amp_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(UserError, match="--amp fp16 needs a GPU"):
        resolve_amp_dtype("fp16", torch.device("cpu"))


@pytest.mark.parametrize("flags", [["--amp", "bf16"], ["--channels-last"], ["--grad-clip", "0.5"]])
def test_speed_flags_train_on_the_cpu(train_script, tmp_path, flags):
    args = train_script.parse_args([*TINY_RUN_FLAGS, *flags, "--out-dir", str(tmp_path)])
    result = train_script.train(args)
    assert result.losses and all(math.isfinite(loss) for loss in result.losses)


def one_clipped_step(train_script, tmp_path, clip: float) -> float:
    """The size of one SGD update (lr 1) with the gradient norm clipped to `clip`."""
    torch.manual_seed(0)
    model = nn.Linear(8, 3)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = build_scheduler(optimizer, "constant", 0, 10)
    data = TensorDataset(100 * torch.randn(16, 8), torch.randint(0, 3, (16,)))
    args = train_script.parse_args(["--grad-clip", str(clip), "--log-every", "1"])
    with Trackers(tmp_path, SummaryWriter(tmp_path), {}) as trackers:
        step = TrainStep(model, nn.CrossEntropyLoss(), optimizer, scheduler, torch.device("cpu"),
                         grad_clip=args.grad_clip)  # fmt: skip
        run = train_script.Run(trackers, StopRequest(), save_last=lambda: None)
        train_script.train_one_epoch(step, DataLoader(data, batch_size=16), TrainState(), run, args)
    moved = [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]
    return torch.linalg.vector_norm(torch.cat([m.flatten() for m in moved])).item()


def test_grad_clip_bounds_the_update(train_script, tmp_path):
    assert one_clipped_step(train_script, tmp_path, 0.0) > 1.0  # unclipped: a large step
    assert one_clipped_step(train_script, tmp_path, 0.1) == pytest.approx(0.1, rel=1e-4)


def test_channels_last_puts_the_model_in_nhwc(train_script, tmp_path):
    args = train_script.parse_args([*TINY_RUN_FLAGS, "--channels-last", "--max-steps", "1",
                                    "--out-dir", str(tmp_path)])  # fmt: skip
    train_script.train(args)
    checkpoint = torch.load(next(tmp_path.glob("*/checkpoints/last.pt")), weights_only=True)
    plain = train_script.task.build_model(checkpoint["model_config"])
    # Plain keys, whatever the layout: the ones the model built from its config has.
    assert checkpoint["model"].keys() == plain.state_dict().keys()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_with_accumulation_and_clipping_on_cuda(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--device", "cuda", "--amp", "fp16", "--accum-steps", "2",
             "--grad-clip", "1.0", "--out-dir", str(tmp_path)]  # fmt: skip
    result = train_script.train(train_script.parse_args(flags))
    assert all(math.isfinite(loss) for loss in result.losses)
    checkpoint = torch.load(next(tmp_path.glob("*/checkpoints/last.pt")), weights_only=True)
    assert checkpoint["scaler"] is not None and checkpoint["scaler"]["scale"] > 0


def test_the_scaler_is_off_without_fp16():
    precision = MixedPrecision("off", torch.device("cpu"))
    assert precision.state_dict() is None and not precision.scaler.is_enabled()


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (a CPU compile takes minutes)"
)
def test_compiled_model_trains_and_saves_plain_keys(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--device", "cuda", "--compile", "--out-dir", str(tmp_path)]
    train_script.train(train_script.parse_args(flags))
    checkpoint = torch.load(next(tmp_path.glob("*/checkpoints/last.pt")), weights_only=True)
    assert not any(key.startswith("_orig_mod.") for key in checkpoint["model"])


class PinnedBatches(list):
    """Batches already in pinned memory, with the batch size train_one_epoch reads off its
    DataLoader (how many samples a step takes from the epoch)."""

    batch_size: int


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_no_host_device_sync_outside_log_steps_on_cuda(train_script, tmp_path, monkeypatch):
    device = torch.device("cuda")
    model, _, batch, args = model_of_this_task(train_script, "--log-every", "5", "--device", "cuda")
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = build_scheduler(optimizer, "cosine", 2, 20)
    batches = PinnedBatches(tuple(part.pin_memory() for part in batch) for _ in range(12))
    batches.batch_size = batch[0].size(0)
    criterion = train_script.task.build_criterion(args).to(device)
    log_training = train_script.engine.log_training

    def log_with_syncs_allowed(*args, **kwargs):  # the log step is where syncs belong
        torch.cuda.set_sync_debug_mode("default")
        try:
            return log_training(*args, **kwargs)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(train_script.engine, "log_training", log_with_syncs_allowed)
    torch.cuda.set_sync_debug_mode("error")  # any other sync raises
    try:
        with Trackers(tmp_path, SummaryWriter(tmp_path), {}) as trackers:
            step = TrainStep(model, criterion, optimizer, scheduler, device)
            run = train_script.Run(trackers, StopRequest(), save_last=lambda: None)
            train_script.train_one_epoch(step, batches, TrainState(), run, args)
    finally:
        torch.cuda.set_sync_debug_mode("default")
