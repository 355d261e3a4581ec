"""What a run reports: training and validation scalars (to the trackers of tracking.py), the
tqdm postfix, the per-epoch and end-of-run lines, and pictures of the model (module graph,
autograd graph)."""

import argparse
import copy
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ..errors import DivergedError, UserError
from .checkpoint import RunCheckpoints, TrainState
from .devices import effective_batch, is_distributed, world_size
from .files import megabytes
from .loop import StepTimer, StopRequest
from .tracking import Trackers


def log_training(
    trackers: Trackers,
    progress: tqdm,
    timer: StepTimer,
    mean_loss: torch.Tensor,
    lr: float,
    step: int,
    num_workers: int = 0,
) -> float:
    """Read the loss back from the device (the loop's one sync point) and log it with timings.

    A non-finite loss stops the run here, before any checkpoint could save broken weights:
    checking only at log steps costs no extra sync on the steps in between.
    """
    loss = mean_loss.item()
    if not math.isfinite(loss):
        raise DivergedError(f"the training loss became {loss} by step {step}")
    perf = timer.report()
    perf_values = {f"perf/{name}": value for name, value in perf.items()}
    trackers.add_scalars({"train/loss": loss, "train/lr": lr, **perf_values}, step)
    progress.set_postfix(
        loss=f"{loss:.4f}",
        lr=f"{lr:.2e}",
        data_ms=f"{perf['data_ms']:.1f}",
        compute_ms=f"{perf['compute_ms']:.1f}",
        efficiency=f"{perf['compute_efficiency']:.0%}",
        samples_s=f"{perf['samples_per_s']:.0f}",
        refresh=False,
    )
    hint = timer.slow_data_hint(perf["compute_efficiency"], num_workers)
    if hint:
        tqdm.write(hint)
    return loss


def log_validation(trackers: Trackers, metrics: dict[str, float], step: int, line: str) -> None:
    """Log the validation metrics (all but the sample count) and write `line` to the terminal."""
    values = {f"val/{name}": value for name, value in metrics.items() if name != "samples"}
    trackers.add_scalars(values, step)
    tqdm.write(line)


def run_summary(
    checkpoints: Path,
    state: TrainState,
    epochs: int,
    max_steps: int,
    seconds: float,
    describe_best: Callable[[float], str],
) -> str:
    """The lines a finished (or --max-steps-stopped) run ends with: what it reached, where
    its checkpoints are, and the commands that come next; `describe_best` words the best metric."""
    best_pt, last = checkpoints / "best.pt", checkpoints / "last.pt"
    minutes, rest = divmod(round(seconds), 60)
    if state.epoch < epochs:  # --max-steps ended it
        reached = (
            f"stopped by --max-steps {max_steps} at step {state.global_step}, in epoch "
            f"{state.epoch + 1} of {epochs}"
        )
    else:
        reached = f"finished all {epochs} epoch(s), {state.global_step} steps"
    lines = [f"{reached} in {minutes}m{rest:02d}s"]
    if state.best_metric is not None:
        lines.append(f"best {describe_best(state.best_metric)}, saved in {best_pt}")
    lines.append(f"last checkpoint: {last}")
    if state.epoch < epochs:
        lines.append(f"continue:  {launch_command()} --resume {last} --max-steps 0")
    if best_pt.exists():
        lines.append(f"evaluate:  python test.py --checkpoint {best_pt}")
    return "\n".join(lines)


def launch_command() -> str:
    """How train.py was started: python, or torchrun with this run's process counts."""
    if not is_distributed():
        return "python train.py"
    per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    machines = world_size() // per_machine
    if machines == 1:
        return f"torchrun --nproc_per_node={per_machine} train.py"
    return (
        f"torchrun --nnodes={machines} --nproc_per_node={per_machine} <the same rendezvous "
        "flags> train.py"
    )


VIZ_INSTALL_HINT = (
    'pip install -e ".[viz]" (and Graphviz\'s dot: apt install graphviz, brew install graphviz)'
)


def require_torchviz() -> None:
    """Fail before training starts, rather than after it, when --viz-graph cannot work."""
    try:
        import torchviz  # noqa: F401
    except ImportError:
        raise UserError(
            f"--viz-graph needs torchviz, which is not installed; {VIZ_INSTALL_HINT}"
        ) from None


def log_module_graph(writer: SummaryWriter, model: nn.Module, example: torch.Tensor) -> None:
    """The model's module graph in TensorBoard's Graphs tab (traced in eval mode, so the
    trace leaves batch-norm statistics as they are)."""
    was_training = model.training
    model.eval()
    try:
        writer.add_graph(model, example)
    finally:
        model.train(was_training)


def save_autograd_graph(
    model: nn.Module, criterion: nn.Module, dataset: Dataset, run_dir: Path, device: torch.device
) -> str:
    """Write <run_dir>/autograd_graph.dot (and .svg when Graphviz is installed); return one line
    saying what was written.

    A copy of the model runs the forward pass, so the training run's batch-norm statistics and
    gradients stay untouched.
    """
    from torchviz import make_dot

    twin = copy.deepcopy(model).train()
    images, targets = (part.to(device) for part in default_collate([dataset[0], dataset[1]]))
    loss = criterion(twin(images), targets)
    graph = make_dot(loss, params=dict(twin.named_parameters()))
    source = run_dir / "autograd_graph.dot"
    source.write_text(graph.source)
    if shutil.which("dot") is None:
        return f"wrote {source}; render it with Graphviz's dot (not installed here): dot -Tsvg -O {source}"
    graph.render(run_dir / "autograd_graph", format="svg", cleanup=True)
    return f"wrote {source} and {source.with_suffix('.svg')}"


def start_line(
    run_dir: Path,
    is_new_run: bool,
    state: TrainState,
    device: torch.device,
    args: argparse.Namespace,
) -> str:
    """Where the run writes (or what it resumes), its device and its effective batch."""
    processes = world_size()
    batch = (
        f"effective batch: {args.batch_size} x {args.accum_steps} accumulated x {processes} "
        f"process(es) = {effective_batch(args)}"
    )
    if is_new_run:
        return f"run folder: {run_dir}  device: {device}  {batch}"
    return (
        f"resumed {run_dir} from step {state.global_step} (epoch {state.epoch + 1}, "
        f"{state.step_in_epoch} steps into it)  device: {device}  {batch}"
    )


def end_lines(
    checkpoints: RunCheckpoints,
    stop: StopRequest,
    args: argparse.Namespace,
    seconds: float,
    describe_best: Callable[[float], str],
) -> str:
    """What a run ends with: the summary and next commands, or how to continue after a stop."""
    last, state = checkpoints.last, checkpoints.state
    if stop.requested:
        line = (
            f"stopped at step {state.global_step}; continue with: {launch_command()} "
            f"--resume {last}"
        )
        return "\n".join([line, *stop_timing_line(checkpoints, stop)])
    checkpoints = last.parent
    return run_summary(checkpoints, state, args.epochs, args.max_steps, seconds, describe_best)


def stop_timing_line(checkpoints: RunCheckpoints, stop: StopRequest) -> list[str]:
    """How long the stop took, to size a scheduler's grace period by ([] before a save)."""
    saved_in = checkpoints.last_save_seconds
    if saved_in is None:
        return []
    size = megabytes(checkpoints.last.stat().st_size)
    line = f"{stop.name}: last.pt ({size}) saved in {saved_in:.2f} s"
    if stop.received_at is not None:  # the signal came to this process (rank 0)
        line += f", {time.perf_counter() - stop.received_at:.2f} s after the signal"
    return [
        f"{line}; give the scheduler's grace period (SLURM --signal=...@SECONDS, torchrun "
        "--shutdown-timeout) more than that"
    ]
