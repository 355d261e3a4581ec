"""Train {{ cookiecutter.__model_class }} for this project's task ({{ cookiecutter.package_name }}/task.py).

Read top to bottom, in the order of the recipe: imports, seed, arguments, then main():
dataset transform -> dataset / dataloader -> network -> loss -> device -> optimizer ->
checkpoint -> trackers (TensorBoard, ...) -> main loop (train an epoch, evaluate, save checkpoints).
What differs between tasks comes from the task (task.py), the machinery from engine/: this file
is the same for every task.

    python train.py                    # learns the task's built-in synthetic data, on any machine
    python train.py --config my.yaml   # flag defaults from a file (--help: every flag)
    torchrun --nproc_per_node=4 train.py   # the same script on 4 GPUs (DistributedDataParallel)
"""

# ---------------------------------------------------------------------------- Import
import argparse
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

import {{ cookiecutter.package_name }}.engine as engine
from {{ cookiecutter.package_name }}.engine import cli
from {{ cookiecutter.package_name }}.task import task  # what differs between tasks


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
def build_parser() -> argparse.ArgumentParser:
    """Every flag, grouped; --help shows the defaults, the README's table says more of each."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    task.add_flags(parser)  # the task's own: its data, model size, loss
    add = parser.add_argument_group("data").add_argument
    cli.add_data_flags(add, task)  # --dataset (the task's choices), --data-dir, --synthetic-size
    add("--num-workers", type=cli.num_workers, default=engine.DEFAULT_NUM_WORKERS,
        help="DataLoader workers")  # fmt: skip
    add("--prefetch-thread", action=argparse.BooleanOptionalAction, default=True,
        help="a loading thread")  # fmt: skip
    add = parser.add_argument_group("optimisation").add_argument
    add("--epochs", type=cli.positive_int, default=5, help="passes over the training data")
    add("--max-steps", type=cli.non_negative_int, default=0, help="optimizer steps (0: all)")
    add("--batch-size", type=cli.batch_size, default="auto",
        help="samples per micro-batch; auto: the largest of 128/64/32/16 with 30 steps an epoch")  # fmt: skip
    add("--accum-steps", type=cli.positive_int, default=1, help="micro-batches per update")
    add("--lr", type=cli.positive_float, default=3e-3, help="peak learning rate")
    add("--weight-decay", type=cli.non_negative_float, default=0.05, help="decoupled weight decay")
    add("--optimizer", choices=engine.OPTIMIZERS, default="adamw", help="optimizer")
    add("--scheduler", choices=engine.SCHEDULERS, default="cosine", help="after the warm-up")
    add("--warmup-steps", type=cli.non_negative_int, default=50, help="linear warm-up steps")
    add("--grad-clip", type=cli.non_negative_float, default=0.0, help="max grad norm (0: off)")
    add("--ema", type=cli.probability, default=0.0, help="EMA decay of the weights (0: off)")
    add = parser.add_argument_group("speed").add_argument
    add("--amp", choices=engine.AMP_CHOICES, default="auto", help="auto: bf16 on a CUDA GPU")
    add("--channels-last", action="store_true", help="NHWC memory layout")
    add("--compile", action="store_true", help="torch.compile the model")
    add("--sync-bn", action="store_true", help="BatchNorm over all processes (torchrun, CUDA)")
    add = parser.add_argument_group("run").add_argument
    add("--device", choices=engine.DEVICE_CHOICES, default="auto", help="auto: cuda, mps, cpu")
    add("--seed", type=cli.seed, default=0, help="random seed")
    add("--deterministic", action="store_true", help="deterministic kernels (slower)")
    add("--log-every", type=cli.positive_int, default=20, help="optimizer steps between logs")
    add("--ckpt-every-steps", type=cli.non_negative_int, default=0, help="last.pt every N steps")
    add("--keep-top-k", type=cli.non_negative_int, default=0, help="best epoch checkpoints kept")
    add("--out-dir", type=cli.folder_path, default=Path("runs"), help="where run folders go")
    add("--run-name", type=cli.folder_name, help="run folder name (default: a timestamp)")
    add("--resume", type=Path, help="checkpoint to continue, or auto: the newest last.pt")
    add("--config", type=Path, default=argparse.SUPPRESS, help="YAML/TOML file of flag defaults")
    add("--tracker", type=engine.tracker_names, default="tensorboard",
        help=f"where to log, comma-separated: {','.join(engine.TRACKERS)}")  # fmt: skip
    add("--log-checkpoints", action="store_true", help="best.pt to MLflow / W&B at the end")
    add("--log-graph", action="store_true", help="module graph in TensorBoard")
    add("--viz-graph", action="store_true", help="torchviz autograd graph (viz extra)")
    add("--smoke-test", action="store_true", help="two steps on tiny data in a temporary folder")
    add("--debug", action="store_true", help="show tracebacks of input errors")
    # Not flags: a resumed checkpoint's task entries; whether --resume auto starts the run.
    parser.set_defaults(recorded={}, auto_start=False)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, over --config FILE's values; with --resume, the rest from the checkpoint."""
    parser = build_parser()
    args = engine.parse_args_with_config(parser, argv)
    return engine.with_resume(parser, argv, args, task.NAME)


@dataclass
class TrainResult:
    """What a finished run hands back: its folder, device, logged losses and best metric."""

    run_dir: Path
    device: torch.device
    losses: list[float]
    best_metric: float | None  # the best value of task.BEST_METRIC (a --max-steps one too)
    model: nn.Module  # the trained model, unwrapped (no DDP, no torch.compile)
    stopped_by: engine.StopRequest | None = None  # set when a signal ended the run early
    ema: nn.Module | None = None  # --ema: the average of the weights (an AveragedModel)


@dataclass
class Run:
    """What the loop reports to and answers to: the trackers, a stop request, last.pt."""

    trackers: engine.Trackers
    stop: engine.StopRequest
    save_last: Callable[[], None]


# ------------------------------------------------------------------------------ Main
def main(argv: list[str] | None = None) -> int:
    """Parse the flags, seed, then train (or run the smoke test)."""
    args = parse_args(argv)
    seed_everything(args.seed, args.deterministic)
    if args.smoke_test:
        return smoke_test(args)
    # Under torchrun: join the other processes (and leave the group however the run ends).
    with engine.process_group(engine.select_device(args.device)):
        result = train(args)
    return result.stopped_by.exit_code if result.stopped_by else 0


def train(
    args: argparse.Namespace, keep_going: Callable[[int, float], bool] | None = None
) -> TrainResult:
    """The whole recipe, stage by stage. `keep_going(epoch, metric)`, when given, is asked
    after each validation whether to go on (sweep.py's pruning); False ends the run as a stop."""
    started = time.perf_counter()
    if args.viz_graph:
        engine.require_torchviz()  # now, not after the run
    # Dataset transform + dataset / dataloader (the device is picked first: only CUDA
    # wants pinned memory). Under torchrun each process loads its own share.
    data = task.build_data(args)
    vars(args).update(task.resolved_flags(data))  # e.g. a size left to pretrained weights
    engine.resolve_batch_size(args, len(data.train))  # --batch-size auto: fitted to the data
    device = engine.select_device(args.device)
    train_loader, val_loader = engine.build_loaders(
        data.train, data.val, device, args, data.train_sample_weights, data.train_batch_transform
    )

    # Instantiate network (--arch; --pretrained weights, but a resumed run has its own), loss
    model_config = task.model_config(args, data)
    model = task.build_model(model_config)
    if args.resume is None:
        task.load_pretrained(model, args, data)
    criterion = task.build_criterion(args)

    # Device setting. Checkpoints and the summary use `model`; the loop runs it wrapped in
    # DDP under torchrun, and compiled if asked; validation measures the plain model (or the
    # --ema average of the weights, a copy on the device).
    step_model = engine.place_model(model, criterion, device, args)
    ema = engine.build_ema(model, args.ema)
    measured = engine.validation_model(model, step_model, ema)
    validation = engine.Validation(task, measured, val_loader, device)

    # Create optimizer (the task's parameter groups, e.g. head and backbone), its schedule
    # (stepped once per optimizer step) and mixed precision
    groups = task.parameter_groups(model, args)
    optimizer, scheduler = engine.build_optimization(groups, len(train_loader), args)
    precision = engine.MixedPrecision(args.amp, device)
    step = engine.TrainStep(step_model, criterion, optimizer, scheduler, device, precision,
                            args.grad_clip, args.accum_steps, args.channels_last, ema)  # fmt: skip

    # Load checkpoint if needed (every rank), then the run folder, its trackers, its checkpoints.
    state, run_dir, run_lock, trackers, checkpoints = open_run(
        step, model, model_config, data, args
    )

    # Main loop: train an epoch, evaluate, save checkpoints; a stop signal saves and ends it.
    losses: list[float] = []
    part_way = None  # the value of the validation where --max-steps ends a run mid-epoch
    with run_lock, trackers, engine.StopRequest() as stop, checkpoints.explain_divergence():
        run = Run(trackers, stop, checkpoints.save_last)
        while state.epoch < args.epochs and not reached_max_steps(state, args):
            epoch_started = time.perf_counter()
            # Training mode, but for what --freeze-backbone keeps frozen. DDP syncs only the
            # parameters that were trainable when it wrapped the model: a new set, a new DDP.
            if task.set_train_mode(model, state.epoch, args) and engine.is_distributed():
                step.model = engine.place_model(model, criterion, device, args)
            # A resumed epoch goes on after the samples it trained on before the stop (none
            # otherwise), the rest dealt out over this run's processes, however many.
            train_loader.sampler.set_epoch(state.epoch, consumed=state.samples_in_epoch)
            losses += train_one_epoch(step, train_loader, state, run, args)
            epoch_done = train_loader.sampler.finished(state.samples_in_epoch, args.batch_size)
            if stop.requested or not epoch_done:  # stopped part-way (a signal, --max-steps)
                checkpoints.save_last()
                part_way = None if stop.requested else validation.part_way(trackers, state)
                break
            value = validation.end_of_epoch(
                stop, checkpoints, trackers, state, epoch_started, args.epochs
            )
            if value is None or stop.requested:  # last.pt is current
                break
            if keep_going is not None and not keep_going(state.epoch, value):
                break
    engine.barrier()  # no rank leaves while rank 0 still writes the last checkpoint
    if engine.is_main_process() and not args.smoke_test:
        seconds = time.perf_counter() - started
        tqdm.write(engine.end_lines(checkpoints, stop, args, seconds, task.describe_best))
    best = validation.best_of(state.best_metric, part_way)
    return TrainResult(run_dir, device, losses, best, model, stop if stop.requested else None, ema)


def open_run(
    step: engine.TrainStep, model: nn.Module, model_config: dict, data, args: argparse.Namespace
) -> tuple:
    """The training state (a resumed run's, on every rank), the run folder (rank 0 makes it and
    locks it until the loop ends), its trackers (a resumed run continues its own; a new run gets
    a first look at its model and data) and its checkpoints (which keep the trackers' run ids)."""
    parts = (model, step.optimizer, step.scheduler, step.precision, step.ema)
    state = engine.restore_training(args, *parts, train_size=len(data.train))
    run_lock = engine.RunDirLock()
    run_dir, is_new_run = engine.on_main_process(lambda: engine.open_run_dir(args, state, run_lock))
    trackers = engine.open_trackers(args, run_dir, is_new_run, state)
    if is_new_run and engine.is_main_process():
        engine.log_first_look(task, trackers, model, step.criterion, data, args)
    checkpoints = engine.RunCheckpoints(
        run_dir / "checkpoints", state, step.precision.state_dict, task=task.NAME, model=model,
        model_config=model_config, extras=task.checkpoint_extras(data),
        optimizer=step.optimizer, scheduler=step.scheduler, args=engine.args_to_dict(args),
        ema=step.ema, keep_top_k=args.keep_top_k, trackers=trackers.run_ids,
    )  # fmt: skip
    if engine.is_main_process():
        tqdm.write(engine.start_line(run_dir, is_new_run, state, step.device, args))
    return state, run_dir, run_lock, trackers, checkpoints


def reached_max_steps(state: engine.TrainState, args: argparse.Namespace) -> bool:
    """True once --max-steps optimizer steps are done (never when it is 0)."""
    return bool(args.max_steps) and state.global_step >= args.max_steps


# ------------------------------------------------------------------------- Main loop
def train_one_epoch(
    step: engine.TrainStep, loader: DataLoader, state: engine.TrainState, run: Run, args
) -> list[float]:
    """One pass over the training data (or what is left of it); returns the losses it logged.

    It ends early at --max-steps or when a stop is requested, always after an optimizer step.
    """
    timer, accum = engine.StepTimer(step.device), step.accum_steps
    num_batches, processes = len(loader), engine.world_size()
    # Where this pass starts in the epoch's order, and the samples a batch takes from it.
    first_sample, batch_samples = state.samples_in_epoch, loader.batch_size * processes
    step_losses, logged = [], []  # kept on the device: no sync until a log step reads them
    step.optimizer.zero_grad(set_to_none=True)
    # Use prefetch_generator and tqdm to iterate through data. The bar is moved by hand after
    # each batch: iterating tqdm counts a batch only when the next one is asked for, so a loop
    # that stops (end of epoch, --max-steps, a signal) would end one short.
    load_ahead = engine.BackgroundLoader if args.prefetch_thread else contextlib.nullcontext
    with load_ahead(loader) as batches, progress_bar(num_batches, state, args) as progress:
        for index, batch in enumerate(batches):
            inputs, targets = step.to_device(*batch)
            timer.data_ready()
            # Forward / backward. The loss is divided by the size of its accumulation group
            # (the last group of an epoch may be short), so the update uses the mean gradient.
            # Under DDP only a group's last micro-batch all-reduces the gradients.
            is_update = (index + 1) % accum == 0 or index + 1 == num_batches
            group_size = min(accum, num_batches - index // accum * accum)
            with engine.gradient_sync(step.model, enabled=is_update):
                with step.precision.autocast():
                    outputs = step.model(inputs)
                    loss = step.criterion(outputs, targets)
                step.precision.backward(loss, group_size)
            step_losses.append(loss.detach())
            if is_update:
                lr = step.optimizer.param_groups[0]["lr"]  # the rate this step uses (no sync)
                step.precision.step(step.model, step.optimizer, step.grad_clip)  # clip, step
                step.update_ema()  # --ema: average in the new weights
                step.scheduler.step()
                step.optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.step_in_epoch += 1
                state.samples_in_epoch = first_sample + (index + 1) * batch_samples
                run.stop.poll()  # under torchrun: has any process had a stop signal?
            timer.step_done(targets.size(0) * processes)  # the processes step in lockstep
            progress.update()
            if not is_update:
                continue
            # Update writer: every --log-every optimizer steps, at the end of the epoch, before
            # a checkpoint and on a stop (a log step checks that the loss is still finite).
            at_end = index + 1 == num_batches or reached_max_steps(state, args)
            every = args.ckpt_every_steps
            checkpoint_due = every > 0 and state.global_step % every == 0
            log_due = state.global_step % args.log_every == 0 or at_end or checkpoint_due
            if log_due or run.stop.requested:
                mean_loss = engine.sum_across_ranks(torch.stack(step_losses).mean()) / processes
                logged.append(engine.log_training(run.trackers, progress, timer, mean_loss, lr,
                                                  state.global_step, args.num_workers))  # fmt: skip
                step_losses.clear()
            if engine.is_main_process():
                task.log_step_images(
                    run.trackers.tensorboard, state.global_step, (inputs, outputs, targets), args
                )
            if checkpoint_due:
                run.save_last()
            if at_end or run.stop.requested:
                break
    return logged


def progress_bar(num_batches: int, state: engine.TrainState, args: argparse.Namespace) -> tqdm:
    """The epoch's tqdm bar, on rank 0 only (the others would print over it)."""
    description = f"epoch {state.epoch + 1}/{args.epochs}"
    return tqdm(total=num_batches, desc=description, mininterval=0.5, dynamic_ncols=True,
                disable=not engine.is_main_process())  # fmt: skip


# ------------------------------------------------------------------------ Smoke test
def smoke_test(args: argparse.Namespace) -> int:
    """Two optimizer steps on tiny synthetic data in a temporary folder; ends with a JSON line."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="smoke-test-") as scratch:
        tiny = {**engine.SMOKE_SETTINGS, **task.SMOKE_SETTINGS, "out_dir": Path(scratch)}
        result = train(argparse.Namespace(**{**vars(args), **tiny}))
    losses = result.losses
    passed = len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    first, last = (losses[0], losses[-1]) if losses else (None, None)
    report = {"device": result.device.type, "steps": len(losses), "loss_first": first,
              "loss_last": last, "seconds": round(time.perf_counter() - started, 2),
              "ok": passed}  # fmt: skip
    print(json.dumps(report))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(engine.run_cli(main, prog="train.py"))
