"""What the loop reports: TensorBoard scalars, the tqdm postfix and one line per epoch."""

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

from ..errors import DivergedError
from .checkpoint import TrainState
from .timing import StepTimer


def log_training(
    writer: SummaryWriter,
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
    writer.add_scalar("train/loss", loss, step)
    writer.add_scalar("train/lr", lr, step)
    for name, value in perf.items():
        writer.add_scalar(f"perf/{name}", value, step)
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


def log_validation(writer: SummaryWriter, metrics: dict[str, float], step: int, line: str) -> None:
    """Write the validation metrics to TensorBoard (all but the sample count) and `line` to
    the terminal."""
    for name, value in metrics.items():
        if name != "samples":
            writer.add_scalar(f"val/{name}", value, step)
    tqdm.write(line)


class SilentWriter:
    """Stands in for SummaryWriter on ranks other than 0 under torchrun: takes every call
    (add_scalar, add_image, close, ...) and writes nothing, so the loop has one code path."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None

    def __enter__(self) -> "SilentWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


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
        lines.append(f"continue:  python train.py --resume {last} --max-steps 0")
    if best_pt.exists():
        lines.append(f"evaluate:  python test.py --checkpoint {best_pt}")
    return "\n".join(lines)


def log_hparams(writer: SummaryWriter, args: dict, metric_tags: tuple[str, ...]) -> None:
    """Every flag as a hyper-parameter in TensorBoard's HParams tab, in this run's own folder.

    SummaryWriter.add_hparams would write to a new sub-folder, a second run in TensorBoard's
    eyes; writing the plugin's summaries here instead ties the flags to this run's scalars, so
    the dashboard shows the latest values of `metric_tags` beside each run's flags.
    """
    values = {
        name: value if isinstance(value, bool | int | float | str) else str(value)
        for name, value in args.items()
    }
    experiment, session_start, session_end = hparams(values, dict.fromkeys(metric_tags, 0.0))
    for summary in (experiment, session_start, session_end):
        writer.file_writer.add_summary(summary)
