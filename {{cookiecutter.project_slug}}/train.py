"""Train {{ cookiecutter.__model_class }} on an image classification set.

Read top to bottom, in the order of the recipe: imports, seed, arguments, then main():
dataset transform -> dataset / dataloader -> network -> loss -> device -> optimizer ->
checkpoint -> TensorBoard writer -> main loop (train an epoch, evaluate, save checkpoints).

    python train.py                    # learns the built-in synthetic shapes, on any machine
    python train.py --help             # every flag, with its default
"""

# ---------------------------------------------------------------------------- Import
import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from torchinfo import summary
from tqdm import tqdm

from {{ cookiecutter.package_name }} import {{ cookiecutter.model_name }}
from {{ cookiecutter.package_name }}.data import DATASETS, build_datasets, build_loader, preview_grid
from {{ cookiecutter.package_name }}.engine.checkpoint import TrainState, save_checkpoint
from {{ cookiecutter.package_name }}.engine.cli import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
)
from {{ cookiecutter.package_name }}.engine.device import DEVICE_CHOICES, select_device
from {{ cookiecutter.package_name }}.engine.errors import UserError, run_cli
from {{ cookiecutter.package_name }}.engine.evaluation import evaluate
from {{ cookiecutter.package_name }}.engine.optim import OPTIMIZERS, SCHEDULERS, build_optimizer, build_scheduler
from {{ cookiecutter.package_name }}.engine.prefetch import BackgroundLoader
from {{ cookiecutter.package_name }}.engine.resume import resume_or_start
from {{ cookiecutter.package_name }}.engine.run_dir import args_to_dict
from {{ cookiecutter.package_name }}.engine.timing import StepTimer

# Two workers keep a GPU fed on small images; more than 8 rarely helps and costs memory.
DEFAULT_NUM_WORKERS = min(8, max(0, (os.cpu_count() or 1) - 1))


# ------------------------------------------------------------------------------ Seed
def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (every device); optionally demand deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CPU and every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it
        torch.use_deterministic_algorithms(True)
    # cuDNN's autotuner picks the fastest kernels, but they may differ from run to run.
    torch.backends.cudnn.benchmark = not deterministic


# ------------------------------------------------------------------------- Argparse
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every default shows in --help and is saved with the run."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=DATASETS, default="synthetic", help="data set to train on")
    data.add_argument("--data-dir", type=Path, default=Path("data"),
                      help="folder with train/ and val/ (--dataset folder), or of torchvision's files")
    data.add_argument("--download", action="store_true", help="download a torchvision set if missing")
    data.add_argument("--image-size", type=positive_int, default=32, help="side of the square input")
    data.add_argument("--synthetic-size", type=positive_int, default=8_000,
                      help="training samples of --dataset synthetic (validation gets a fifth)")
    data.add_argument("--num-workers", type=non_negative_int, default=DEFAULT_NUM_WORKERS,
                      help="DataLoader worker processes (0: load in a background thread)")
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--epochs", type=positive_int, default=5, help="passes over the training set")
    optim.add_argument("--max-steps", type=non_negative_int, default=0,
                       help="stop after this many optimizer steps in all (0: no limit)")
    optim.add_argument("--batch-size", type=positive_int, default=128, help="samples per micro-batch")
    optim.add_argument("--accum-steps", type=positive_int, default=1,
                       help="micro-batches per optimizer step: a virtual batch of batch-size x this")
    optim.add_argument("--lr", type=positive_float, default=3e-3, help="peak learning rate")
    optim.add_argument("--weight-decay", type=non_negative_float, default=0.05,
                       help="decoupled weight decay (not applied to biases and norm scales)")
    optim.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="optimizer")
    optim.add_argument("--scheduler", choices=SCHEDULERS, default="cosine",
                       help="learning-rate schedule after the warm-up")
    optim.add_argument("--warmup-steps", type=non_negative_int, default=50,
                       help="optimizer steps of linear learning-rate warm-up")
    optim.add_argument("--label-smoothing", type=probability, default=0.1, help="label smoothing")
    optim.add_argument("--width", type=positive_int, default=16, help="channels of the first stage")
    run = parser.add_argument_group("run")
    run.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                     help="auto: cuda, then mps, then cpu")
    run.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    run.add_argument("--deterministic", action="store_true",
                     help="deterministic kernels: reproducible bit for bit, somewhat slower")
    run.add_argument("--log-every", type=positive_int, default=20,
                     help="optimizer steps between logs (each log reads values back from the device)")
    run.add_argument("--out-dir", type=Path, default=Path("runs"), help="where run folders go")
    run.add_argument("--run-name", help="name of the run folder (default: a timestamp)")
    run.add_argument("--resume", type=Path, help="continue from this checkpoint (a last.pt)")
    run.add_argument("--smoke-test", action="store_true",
                     help="two optimizer steps on tiny synthetic data in a temporary folder")
    run.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    return parser.parse_args(argv)


@dataclass
class TrainResult:
    """What a finished run hands back: its folder, device, logged losses and best accuracy."""

    run_dir: Path
    device: torch.device
    losses: list[float]
    best_accuracy: float | None


# ------------------------------------------------------------------------------ Main
def main(argv: list[str] | None = None) -> int:
    """Parse the flags, then train (or run the smoke test)."""
    args = parse_args(argv)
    if args.smoke_test:
        return smoke_test(args)
    train(args)
    return 0


def train(args: argparse.Namespace) -> TrainResult:
    """The whole recipe, stage by stage."""
    seed_everything(args.seed, args.deterministic)

    # Dataset transform + dataset / dataloader
    data = build_datasets(args.dataset, args.data_dir, args.image_size, args.download, args.seed,
                          synthetic_sizes=(args.synthetic_size, max(args.synthetic_size // 5, 1)))
    device = select_device(args.device)
    pin = device.type == "cuda"  # page-locked memory makes host-to-GPU copies asynchronous
    train_loader = build_loader(data.train, args.batch_size, True, args.num_workers, args.seed, pin)
    val_loader = build_loader(data.val, args.batch_size, False, args.num_workers, args.seed, pin)
    if len(train_loader) == 0:
        raise UserError(f"--batch-size {args.batch_size} exceeds the {len(data.train)} training "
                        "samples; lower it")

    # Instantiate network
    model_config = {"in_channels": data.in_channels, "num_classes": data.num_classes,
                    "width": args.width}
    model = {{ cookiecutter.model_name }}.{{ cookiecutter.__model_class }}(**model_config)

    # Create loss
    criterion = {{ cookiecutter.model_name }}.ClassificationLoss(args.label_smoothing)

    # Device setting
    model.to(device)
    criterion.to(device)
    with torch.random.fork_rng(devices=[]):  # the summary's dummy input must not shift the RNG
        model_summary = str(summary(model, input_size=(1, data.in_channels, args.image_size,
                                                       args.image_size), device=device, verbose=0,
                                    mode="eval", depth=4))

    # Create optimizer (and its learning-rate schedule, stepped once per optimizer step)
    optimizer = build_optimizer(model, args.optimizer, args.lr, args.weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / args.accum_steps)
    total_steps = steps_per_epoch * args.epochs
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    scheduler = build_scheduler(optimizer, args.scheduler, args.warmup_steps, total_steps)

    # Load checkpoint if needed (or start a new run folder)
    state, run_dir, is_new_run = resume_or_start(args, model, optimizer, scheduler,
                                                 virtual_batch=args.batch_size * args.accum_steps)

    # Create TensorBoard writer (a resumed run drops events logged after its checkpoint)
    writer = SummaryWriter(run_dir, purge_step=None if is_new_run else state.global_step + 1)
    if is_new_run:
        (run_dir / "model_summary.txt").write_text(model_summary + "\n")
        writer.add_text("model/summary", f"```\n{model_summary}\n```")
        with torch.random.fork_rng(devices=[]):
            writer.add_image("data/train_samples", preview_grid(data.train, data.mean, data.std))
    tqdm.write(model_summary)
    tqdm.write(f"run folder: {run_dir}  device: {device}  virtual batch: "
               f"{args.batch_size} x {args.accum_steps} = {args.batch_size * args.accum_steps}")

    # Main loop
    losses: list[float] = []
    with writer:
        while state.epoch < args.epochs and not reached_max_steps(state, args):
            epoch_start = time.perf_counter()
            train_loader.sampler.set_epoch(state.epoch, skip=state.step_in_epoch
                                           * args.accum_steps * args.batch_size)
            losses += train_one_epoch(model, train_loader, criterion, optimizer, scheduler,
                                      device, writer, state, args)
            metrics = evaluate(model, val_loader, criterion, device)
            if not reached_max_steps(state, args) or state.step_in_epoch == steps_per_epoch:
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
            is_best = state.best_metric is None or metrics["accuracy"] > state.best_metric
            if is_best:
                state.best_metric = metrics["accuracy"]
            save_run_checkpoints(run_dir, is_best, model, model_config, data.classes, optimizer,
                                 scheduler, state, args)
            log_validation(writer, metrics, state, time.perf_counter() - epoch_start, args)
    return TrainResult(run_dir, device, losses, state.best_metric)


def reached_max_steps(state: TrainState, args: argparse.Namespace) -> bool:
    """True once --max-steps optimizer steps are done (never when it is 0)."""
    return bool(args.max_steps) and state.global_step >= args.max_steps


# ------------------------------------------------------------------------- Main loop
def train_one_epoch(model, loader, criterion, optimizer, scheduler, device, writer, state, args):
    """One pass over the training data (or what is left of it); returns the losses it logged."""
    model.train()
    timer = StepTimer(device)
    accum, num_batches = args.accum_steps, len(loader)
    loss_sum = torch.zeros((), device=device)  # summed on the device: no sync until a log step
    batches_since_log, logged = 0, []
    optimizer.zero_grad(set_to_none=True)
    # tqdm shows the postfix set at each log step; mininterval keeps its own cost negligible.
    with BackgroundLoader(loader) as batches, tqdm(batches, total=num_batches, mininterval=0.5,
                                                   desc=f"epoch {state.epoch + 1}/{args.epochs}",
                                                   dynamic_ncols=True) as progress:
        for index, (images, targets) in enumerate(progress):
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            timer.data_ready()
            # Forward / backward. The loss is divided by the size of its accumulation group
            # (the last group of an epoch may be short), so the update uses the mean gradient.
            group_size = min(accum, num_batches - index // accum * accum)
            loss = criterion(model(images), targets)
            (loss / group_size).backward()
            loss_sum += loss.detach()
            batches_since_log += 1
            is_update = (index + 1) % accum == 0 or index + 1 == num_batches
            if is_update:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.step_in_epoch += 1
            timer.step_done(targets.size(0))
            # Update writer, every --log-every optimizer steps only.
            if is_update and state.global_step % args.log_every == 0:
                logged.append(log_training(writer, progress, timer, loss_sum / batches_since_log,
                                           optimizer, state.global_step))
                loss_sum.zero_()
                batches_since_log = 0
            if is_update and reached_max_steps(state, args):
                break
    return logged


def log_training(writer, progress, timer, mean_loss, optimizer, step: int) -> float:
    """Read the loss back from the device (this loop's one sync point) and log it with timings."""
    loss = mean_loss.item()
    lr = optimizer.param_groups[0]["lr"]
    perf = timer.report()
    writer.add_scalar("train/loss", loss, step)
    writer.add_scalar("train/lr", lr, step)
    for name, value in perf.items():
        writer.add_scalar(f"perf/{name}", value, step)
    progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", data_ms=f"{perf['data_ms']:.1f}",
                         compute_ms=f"{perf['compute_ms']:.1f}",
                         efficiency=f"{perf['compute_efficiency']:.0%}",
                         samples_s=f"{perf['samples_per_s']:.0f}", refresh=False)
    return loss


def log_validation(writer, metrics: dict, state: TrainState, seconds: float, args) -> None:
    """Write the validation metrics to TensorBoard and one line to the terminal."""
    for name in ("loss", "accuracy", "top5_accuracy"):
        writer.add_scalar(f"val/{name}", metrics[name], state.global_step)
    tqdm.write(f"epoch {state.epoch}/{args.epochs}  step {state.global_step}  "
               f"val loss {metrics['loss']:.4f}  val accuracy {metrics['accuracy']:.2%}  "
               f"best {state.best_metric:.2%}  ({seconds:.1f} s)")


def save_run_checkpoints(run_dir, is_best, model, model_config, classes, optimizer, scheduler,
                         state, args) -> None:
    """Save checkpoints/last.pt, and checkpoints/best.pt when validation accuracy improved."""
    names = ["last.pt", "best.pt"] if is_best else ["last.pt"]
    for name in names:
        save_checkpoint(run_dir / "checkpoints" / name, model=model, model_config=model_config,
                        classes=classes, optimizer=optimizer, scheduler=scheduler, state=state,
                        args=args_to_dict(args))


# ------------------------------------------------------------------------ Smoke test
def smoke_test(args: argparse.Namespace) -> int:
    """Two optimizer steps on tiny synthetic data in a temporary folder; ends with a JSON line."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="smoke-test-") as scratch:
        smoke_args = argparse.Namespace(**{
            **vars(args), "dataset": "synthetic", "synthetic_size": 16, "image_size": 16,
            "width": 8, "batch_size": 8, "accum_steps": 1, "epochs": 1, "max_steps": 2,
            "log_every": 1, "num_workers": 0,
            "out_dir": Path(scratch), "run_name": "smoke", "resume": None,
        })
        result = train(smoke_args)
    losses = result.losses
    passed = len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    print(json.dumps({"device": result.device.type, "steps": len(losses),
                      "loss_first": losses[0] if losses else None,
                      "loss_last": losses[-1] if losses else None,
                      "seconds": round(time.perf_counter() - started, 2), "ok": passed}))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="train.py"))
