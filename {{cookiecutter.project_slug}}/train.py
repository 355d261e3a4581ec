"""Train {{ cookiecutter.__model_class }} for this project's task ({{ cookiecutter.package_name }}/task.py).

Read top to bottom, in the order of the recipe: imports, seed, arguments, then main():
dataset transform -> dataset / dataloader -> network -> loss -> device -> optimizer ->
checkpoint -> TensorBoard writer -> main loop (train an epoch, evaluate, save checkpoints).
What differs between tasks (their flags, data, model config, loss, best metric, pictures)
comes from the task module; this file is the same for every task.

    python train.py                    # learns the task's built-in synthetic data, on any machine
    python train.py --help             # every flag, with its default
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
from torch.utils.tensorboard import SummaryWriter
from torchinfo import summary
from tqdm import tqdm

# The task module: what differs between tasks (a straight import: isort puts it first, whatever
# the package and model are called).
import {{ cookiecutter.package_name }}.task as task

# The model module under a fixed name, so no model_name answer can collide with a name here.
from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)
from {{ cookiecutter.package_name }}.data import (
    DEFAULT_NUM_WORKERS,
    DataBundle,
)
from {{ cookiecutter.package_name }}.engine import cli
from {{ cookiecutter.package_name }}.engine.checkpoint import (
    TrainState,
    save_checkpoint,
    save_epoch_checkpoints,
)
from {{ cookiecutter.package_name }}.engine.device import (
    DEVICE_CHOICES,
    select_device,
)
from {{ cookiecutter.package_name }}.engine.distributed import (
    barrier,
    gradient_sync,
    is_distributed,
    is_main_process,
    on_main_process,
    process_group,
    rank,
    sum_across_ranks,
    world_size,
    wrap_model,
)
from {{ cookiecutter.package_name }}.engine.errors import (
    DivergedError,
    UserError,
    run_cli,
)
from {{ cookiecutter.package_name }}.engine.graphs import (
    log_module_graph,
    require_torchviz,
    save_autograd_graph,
)
from {{ cookiecutter.package_name }}.engine.interrupt import StopRequest
from {{ cookiecutter.package_name }}.engine.loader import build_loader
from {{ cookiecutter.package_name }}.engine.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    build_optimizer,
    build_scheduler,
)
from {{ cookiecutter.package_name }}.engine.precision import (
    AMP_CHOICES,
    MixedPrecision,
)
from {{ cookiecutter.package_name }}.engine.prefetch import BackgroundLoader
from {{ cookiecutter.package_name }}.engine.reporting import (
    SilentWriter,
    log_hparams,
    log_training,
    log_validation,
    run_summary,
)
from {{ cookiecutter.package_name }}.engine.resume import (
    find_latest_checkpoint,
    open_run_dir,
    parse_resumed_args,
    restore_training,
)
from {{ cookiecutter.package_name }}.engine.run_dir import (
    RunDirLock,
    args_to_dict,
    save_text,
)
from {{ cookiecutter.package_name }}.engine.timing import StepTimer

# Below this many optimizer steps in all, a run rarely gets far: say so at the start.
FEW_STEPS = 200


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
    """Every flag, grouped; the defaults show in --help and are saved with each run."""
    parser = cli.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter
    )
    task.add_flags(parser)  # the task's own: its data set, model size, loss
    add = parser.add_argument_group("data").add_argument
    add("--image-size", type=cli.image_size, default=32, help="side of the square input")
    add(
        "--num-workers",
        type=cli.num_workers,
        default=DEFAULT_NUM_WORKERS,
        help="DataLoader worker processes (0: load in the training process)",
    )
    add(
        "--prefetch-thread",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="take batches from a background thread (prefetch_generator) that loads ahead; "
        "its hand-off costs ~0.07 ms a step, so turn it off when steps take ~1 ms",
    )
    add = parser.add_argument_group("optimisation").add_argument
    add("--epochs", type=cli.positive_int, default=5, help="passes over the training data")
    add(
        "--max-steps",
        type=cli.non_negative_int,
        default=0,
        help="stop after this many optimizer steps in all (0: no limit)",
    )
    add(
        "--batch-size",
        type=cli.positive_int,
        default=128,
        help="samples per micro-batch and process (under torchrun, each process takes this many)",
    )
    add(
        "--accum-steps",
        type=cli.positive_int,
        default=1,
        help="micro-batches per optimizer step: an effective batch of "
        "batch-size x accum-steps x processes",
    )
    add("--lr", type=cli.positive_float, default=3e-3, help="peak learning rate")
    add(
        "--weight-decay",
        type=cli.non_negative_float,
        default=0.05,
        help="decoupled weight decay (not on biases and norm scales)",
    )
    add("--optimizer", choices=OPTIMIZERS, default="adamw", help="optimizer")
    add("--scheduler", choices=SCHEDULERS, default="cosine", help="schedule after the warm-up")
    add(
        "--warmup-steps",
        type=cli.non_negative_int,
        default=50,
        help="optimizer steps of linear warm-up (at most a quarter of the run)",
    )
    add(
        "--norm",
        choices=architecture.NORMS,
        default="batch",
        help="normalisation layers; group needs no batch statistics (small batches per process)",
    )
    add(
        "--grad-clip",
        type=cli.non_negative_float,
        default=0.0,
        help="clip the gradient norm to this (0: no clipping)",
    )
    add = parser.add_argument_group("speed").add_argument
    add(
        "--amp",
        choices=AMP_CHOICES,
        default="auto",
        help="mixed precision; auto: bf16 on a CUDA GPU that has it, else off",
    )
    add(
        "--channels-last",
        action="store_true",
        help="NHWC memory layout (faster convolutions on tensor-core GPUs)",
    )
    add(
        "--compile",
        action="store_true",
        help="torch.compile the model (slower start, faster steps; checkpoints stay plain)",
    )
    add(
        "--sync-bn",
        action="store_true",
        help="under torchrun on GPUs: batch-norm statistics over all processes' batches",
    )
    add = parser.add_argument_group("run").add_argument
    add("--device", choices=DEVICE_CHOICES, default="auto", help="auto: cuda, then mps, then cpu")
    add("--seed", type=cli.seed, default=0, help="random seed")
    add("--deterministic", action="store_true", help="deterministic kernels (slower)")
    add(
        "--log-every",
        type=cli.positive_int,
        default=20,
        help="optimizer steps between logs; each log reads values back from the device",
    )
    add(
        "--ckpt-every-steps",
        type=cli.non_negative_int,
        default=0,
        help="also save last.pt every this many optimizer steps within an epoch (0: only at its end)",
    )
    add("--out-dir", type=Path, default=Path("runs"), help="where run folders go")
    add("--run-name", type=cli.folder_name, help="name of the run folder (default: a timestamp)")
    add(
        "--resume",
        type=Path,
        help="continue a run from its checkpoint, reusing its flags; auto: the newest last.pt "
        "under --out-dir (of --run-name, if given)",
    )
    add(
        "--log-graph",
        action="store_true",
        help="add the model's module graph to TensorBoard (Graphs tab; traced once at start)",
    )
    add(
        "--viz-graph",
        action="store_true",
        help="write torchviz's autograd graph of one step to the run folder (needs the viz extra)",
    )
    add("--smoke-test", action="store_true", help="two steps on tiny data in a temporary folder")
    add("--debug", action="store_true", help="show tracebacks of input errors")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags; with --resume, the ones not given again come from the checkpoint."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is None:
        return args
    if str(args.resume) == "auto":
        args.resume = find_latest_checkpoint(args.out_dir, args.run_name)
    resumed = parse_resumed_args(parser, argv, args.resume, task.NAME)
    resumed.resume = args.resume
    return resumed


@dataclass
class TrainResult:
    """What a finished run hands back: its folder, device, logged losses and best metric."""

    run_dir: Path
    device: torch.device
    losses: list[float]
    best_metric: float | None  # the best validation value of task.BEST_METRIC
    model: nn.Module  # the trained model, unwrapped (no DDP, no torch.compile)
    stopped_by: StopRequest | None = None  # set when a signal ended the run early


# ------------------------------------------------------------------------------ Main
def main(argv: list[str] | None = None) -> int:
    """Parse the flags, seed, then train (or run the smoke test)."""
    args = parse_args(argv)
    seed_everything(args.seed, args.deterministic)
    if args.smoke_test:
        return smoke_test(args)
    # Under torchrun: join the other processes (and leave the group however the run ends).
    with process_group(select_device(args.device)):
        result = train(args)
    return result.stopped_by.exit_code if result.stopped_by else 0


def train(args: argparse.Namespace) -> TrainResult:
    """The whole recipe, stage by stage."""
    run_started = time.perf_counter()
    if args.viz_graph:
        require_torchviz()  # now, not after the run
    # Dataset transform + dataset / dataloader (the device is picked first: only CUDA
    # wants pinned memory). Under torchrun each process loads its own share.
    data = task.build_data(args)
    device = select_device(args.device)
    pin = device.type == "cuda"  # page-locked memory makes host-to-GPU copies asynchronous
    shard = {"rank": rank(), "world_size": world_size()}
    train_loader = build_loader(
        data.train, args.batch_size, True, args.num_workers, args.seed, pin, **shard
    )
    val_loader = build_loader(
        data.val, args.batch_size, False, args.num_workers, args.seed, pin, **shard
    )
    batches_per_epoch = len(train_loader)  # the loader drops a partial batch
    if batches_per_epoch == 0:
        raise UserError(
            f"--batch-size {args.batch_size} exceeds the {len(train_loader.sampler)} training "
            f"samples of each of the {world_size()} process(es); lower it"
        )

    # Instantiate network
    model_config = task.model_config(args, data)
    model = architecture.{{ cookiecutter.__model_class }}(**model_config)

    # Create loss
    criterion = task.build_criterion(args)

    # Device setting (and the speed settings that come with it)
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    criterion.to(device)
    torch.set_float32_matmul_precision("high")  # TF32 matmuls where the GPU has them
    precision = MixedPrecision(args.amp, device)
    # Checkpoints and the summary use `model`; the loop runs it wrapped in DDP under torchrun,
    # and compiled if asked. Evaluation under DDP runs the plain model (see evaluate()).
    step_model = wrap_model(model, device, args.sync_bn)
    step_model = torch.compile(step_model) if args.compile else step_model
    eval_model = model if is_distributed() else step_model

    # Create optimizer, and its schedule (stepped once per optimizer step). The schedule spans
    # --epochs; --max-steps only stops the run, so a stopped run resumes on the same curve.
    optimizer = build_optimizer(model, args.optimizer, args.lr, args.weight_decay)
    steps_per_epoch = math.ceil(batches_per_epoch / args.accum_steps)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = min(args.warmup_steps, total_steps // 4)
    if total_steps < FEW_STEPS:
        tqdm.write(
            f"note: this run makes only {total_steps} optimizer steps; a small data set "
            "usually needs more --epochs or a smaller --batch-size"
        )
    scheduler = build_scheduler(optimizer, args.scheduler, warmup_steps, total_steps)

    # Load checkpoint if needed (on every rank), then the run folder (made by rank 0 alone,
    # and locked by it until the loop ends: a second process is refused, not mixed in).
    state = restore_training(args, model, optimizer, scheduler, precision)
    run_lock = RunDirLock()
    run_dir, is_new_run = on_main_process(
        lambda: open_run_dir(
            args,
            state,
            run_lock,
            world_size=world_size(),
            effective_batch=args.batch_size * args.accum_steps * world_size(),
        )
    )

    # Create TensorBoard writer (and, if asked, the autograd graph's picture)
    writer = create_writer(run_dir, is_new_run, state, model, data, args, device)
    if args.viz_graph and is_new_run and is_main_process():
        tqdm.write(save_autograd_graph(model, criterion, data.train, run_dir, device))

    # Everything a checkpoint holds besides the state, which the loop keeps changing.
    parts = {
        "task": task.NAME,
        "model": model,
        "model_config": model_config,
        "classes": data.classes,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "args": args_to_dict(args),
    }
    last_checkpoint = run_dir / "checkpoints" / "last.pt"

    def save_last() -> None:
        if is_main_process():
            save_checkpoint(last_checkpoint, state=state, scaler=precision.state_dict(), **parts)

    # Main loop
    losses: list[float] = []
    with run_lock, writer, StopRequest() as stop:
        try:
            while state.epoch < args.epochs and not reached_max_steps(state, args):
                started, epoch_label = time.perf_counter(), f"epoch {state.epoch + 1}/{args.epochs}"
                # A resumed epoch skips the batches it trained on before the stop (0 otherwise).
                done = min(state.step_in_epoch * args.accum_steps, batches_per_epoch)
                train_loader.sampler.set_epoch(state.epoch, skip=done * args.batch_size)
                losses += train_one_epoch(
                    step_model,
                    train_loader,
                    criterion,
                    optimizer,
                    scheduler,
                    device,
                    writer,
                    state,
                    args,
                    save_last,
                    stop,
                    precision,
                )
                if stop.requested or state.step_in_epoch < steps_per_epoch:
                    save_last()  # stopped part-way (a signal, --max-steps): validate later
                    break
                metrics = task.evaluate(eval_model, val_loader, device)
                state.epoch, state.step_in_epoch = state.epoch + 1, 0
                is_best = improves(metrics[task.BEST_METRIC], state.best_metric)
                if is_best:
                    state.best_metric = metrics[task.BEST_METRIC]
                if is_main_process():
                    save_epoch_checkpoints(
                        run_dir / "checkpoints",
                        is_best,
                        state=state,
                        scaler=precision.state_dict(),
                        **parts,
                    )
                seconds = time.perf_counter() - started
                line = f"{epoch_label}  step {state.global_step}  {task.describe(metrics)}"
                log_validation(writer, metrics, state.global_step, f"{line}  ({seconds:.1f} s)")
                if stop.requested:  # it came during the evaluation; last.pt is current
                    break
        except DivergedError as error:
            kept = (
                f"its last good checkpoint is {last_checkpoint}"
                if last_checkpoint.exists()
                else "no checkpoint was saved"
            )
            raise DivergedError(
                f"{error}, so the run stopped; {kept}; lower --lr (or lengthen --warmup-steps) and start again"
            ) from None
    barrier()  # no rank leaves while rank 0 still writes the last checkpoint
    if is_main_process() and not (stop.requested or args.smoke_test):
        elapsed = time.perf_counter() - run_started
        tqdm.write(
            run_summary(
                last_checkpoint.parent,
                state,
                args.epochs,
                args.max_steps,
                elapsed,
                task.describe_best,
            )
        )
    if stop.requested:
        launcher = "torchrun <the same flags> train.py" if is_distributed() else "python train.py"
        tqdm.write(
            f"stopped at step {state.global_step}; continue with: "
            f"{launcher} --resume {last_checkpoint}"
        )
        return TrainResult(run_dir, device, losses, state.best_metric, model, stop)
    return TrainResult(run_dir, device, losses, state.best_metric, model)


def create_writer(
    run_dir: Path,
    is_new_run: bool,
    state: TrainState,
    model: nn.Module,
    data: DataBundle,
    args: argparse.Namespace,
    device: torch.device,
) -> SummaryWriter:
    """A TensorBoard writer; a new run also gets the model summary and a look at its data.

    Under torchrun only rank 0 writes; the other ranks get a writer that discards.
    """
    if not is_main_process():
        return SilentWriter()
    # A resumed run drops the events logged after its checkpoint: no step appears twice.
    writer = SummaryWriter(run_dir, purge_step=None if is_new_run else state.global_step + 1)
    processes = world_size()
    batch_line = (
        f"effective batch: {args.batch_size} x {args.accum_steps} accumulated x {processes} "
        f"process(es) = {args.batch_size * args.accum_steps * processes}"
    )
    if not is_new_run:  # its summary and first look at the data are in the run folder already
        tqdm.write(
            f"resumed {run_dir} from step {state.global_step} (epoch {state.epoch + 1}, "
            f"{state.step_in_epoch} steps into it)  device: {device}  {batch_line}"
        )
        return writer
    with torch.random.fork_rng(devices=[]):  # the dummy input and samples draw random numbers
        input_size = (1, data.in_channels, args.image_size, args.image_size)
        model_summary = str(summary(model, input_size, device=device, verbose=0, mode="eval"))
        save_text(run_dir / "model_summary.txt", model_summary + "\n")
        writer.add_text("model/summary", f"```\n{model_summary}\n```")
        writer.add_image("data/train_samples", task.preview(data))
        log_hparams(writer, args_to_dict(args), task.HPARAM_METRICS)
        if args.log_graph:
            log_module_graph(writer, model, torch.zeros(input_size, device=device))
    tqdm.write(f"{model_summary}\nrun folder: {run_dir}  device: {device}  {batch_line}")
    return writer


def improves(value: float, best: float | None) -> bool:
    """Whether a validation value beats the best so far, in the task's direction."""
    if best is None:
        return True
    return value > best if task.HIGHER_IS_BETTER else value < best


def reached_max_steps(state: TrainState, args: argparse.Namespace) -> bool:
    """True once --max-steps optimizer steps are done (never when it is 0)."""
    return bool(args.max_steps) and state.global_step >= args.max_steps


# ------------------------------------------------------------------------- Main loop
def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    writer: SummaryWriter,
    state: TrainState,
    args: argparse.Namespace,
    save_last: Callable[[], None] | None = None,
    stop: StopRequest | None = None,
    precision: MixedPrecision | None = None,
) -> list[float]:
    """One pass over the training data (or what is left of it); returns the losses it logged.

    It ends early at --max-steps or when `stop` is requested, always after an optimizer step.
    """
    model.train()
    precision = precision or MixedPrecision("off", device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    timer = StepTimer(device)
    accum, num_batches, processes = args.accum_steps, len(loader), world_size()
    step_losses, logged = [], []  # kept on the device: no sync until a log step reads them
    optimizer.zero_grad(set_to_none=True)
    # Use prefetch_generator and tqdm to iterate through data. The bar is moved by hand after
    # each batch: iterating tqdm counts a batch only when the next one is asked for, so a loop
    # that stops (end of epoch, --max-steps, a signal) would end one short.
    load_ahead = BackgroundLoader if args.prefetch_thread else contextlib.nullcontext
    with (
        load_ahead(loader) as batches,
        tqdm(
            total=num_batches,
            desc=f"epoch {state.epoch + 1}/{args.epochs}",
            mininterval=0.5,
            dynamic_ncols=True,
            disable=not is_main_process(),
        ) as progress,
    ):
        for index, (images, targets) in enumerate(batches):
            images = images.to(device, non_blocking=True, memory_format=memory_format)
            targets = targets.to(device, non_blocking=True)
            timer.data_ready()
            # Forward / backward. The loss is divided by the size of its accumulation group
            # (the last group of an epoch may be short), so the update uses the mean gradient.
            # Under DDP only a group's last micro-batch all-reduces the gradients.
            is_update = (index + 1) % accum == 0 or index + 1 == num_batches
            group_size = min(accum, num_batches - index // accum * accum)
            with gradient_sync(model, enabled=is_update):
                with precision.autocast():
                    outputs = model(images)
                    loss = criterion(outputs, targets)
                precision.backward(loss, group_size)
            step_losses.append(loss.detach())
            if is_update:
                lr = optimizer.param_groups[0]["lr"]  # the rate this step uses (a float: no sync)
                precision.step(model, optimizer, args.grad_clip)
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.global_step += 1
                state.step_in_epoch += 1
            # The processes step in lockstep, so samples/s counts all of them.
            timer.step_done(targets.size(0) * processes)
            progress.update()
            if not is_update:
                continue
            # Update writer: every --log-every optimizer steps, at the end of the epoch, before
            # a checkpoint and on a stop (a log step checks that the loss is still finite).
            at_end = index + 1 == num_batches or reached_max_steps(state, args)
            checkpoint_due = (
                save_last is not None
                and args.ckpt_every_steps > 0
                and state.global_step % args.ckpt_every_steps == 0
            )
            stopping = stop is not None and stop.requested
            if state.global_step % args.log_every == 0 or at_end or checkpoint_due or stopping:
                if stop is not None:
                    stop.agree(device)  # under torchrun, a signal on any rank stops them all here
                    stopping = stop.requested
                mean_loss = sum_across_ranks(torch.stack(step_losses).mean()) / processes
                logged.append(
                    log_training(
                        writer, progress, timer, mean_loss, lr, state.global_step, args.num_workers
                    )
                )
                step_losses.clear()
            if is_main_process():
                task.log_step_images(writer, state.global_step, (images, outputs, targets), args)
            if checkpoint_due:
                save_last()
            if at_end or stopping:
                break
    return logged


# ------------------------------------------------------------------------ Smoke test
def smoke_test(args: argparse.Namespace) -> int:
    """Two optimizer steps on tiny synthetic data in a temporary folder; ends with a JSON line."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="smoke-test-") as scratch:
        tiny = {
            "dataset": "synthetic",
            **task.SMOKE_SETTINGS,
            "batch_size": 8,
            "accum_steps": 1,
            "epochs": 1,
            "max_steps": 2,
            "log_every": 1,
            "num_workers": 0,
            "out_dir": Path(scratch),
            "run_name": "smoke",
            "resume": None,
        }
        result = train(argparse.Namespace(**{**vars(args), **tiny}))
    losses = result.losses
    passed = len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    print(
        json.dumps(
            {
                "device": result.device.type,
                "steps": len(losses),
                "loss_first": losses[0] if losses else None,
                "loss_last": losses[-1] if losses else None,
                "seconds": round(time.perf_counter() - started, 2),
                "ok": passed,
            }
        )
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="train.py"))
