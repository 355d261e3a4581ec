"""Validation during training: what it measures, the checkpoints an epoch's result picks, the
lines and logged values it gives, and a new run's first look at its model and data."""

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchinfo import summary
from tqdm import tqdm

from .checkpoint import RunCheckpoints, TrainState
from .devices import is_distributed
from .loop import StopRequest
from .reporting import log_module_graph, log_validation, save_autograd_graph
from .runs import args_to_dict
from .task_base import Task
from .tracking import Trackers


def validation_model(model: nn.Module, step_model: nn.Module, ema) -> nn.Module:
    """What validation measures: the --ema average when there is one, else the model as the
    loop runs it (compiled if asked), but never DDP's wrapper: the shards may differ by one
    batch, and DDP's forward would wait for a rank that has none left."""
    if ema is not None:
        return ema.module
    return model if is_distributed() else step_model


@dataclass
class Validation:
    """The task's evaluation of the model validation measures, on the validation loader."""

    task: Task
    model: nn.Module
    loader: DataLoader
    device: torch.device

    def end_of_epoch(
        self,
        stop: StopRequest,
        checkpoints: RunCheckpoints,
        trackers: Trackers,
        state: TrainState,
        epoch_started: float,
        epochs: int,
    ) -> float | None:
        """Evaluate the epoch's weights, then save last.pt (best.pt, the top-k files when the
        metric is among the best); returns the metric. A stop signal ends the validation at its
        next batch: None then, last.pt holding the epoch's training (a resume validates it)."""
        task = self.task
        metrics = stop.evaluate_unless_stopped(task.evaluate, self.model, self.loader, self.device)
        if metrics is None:
            checkpoints.save_last()
            return None
        state.next_epoch()
        value = metrics[task.BEST_METRIC]  # picks best.pt (and the --keep-top-k files)
        checkpoints.save_epoch(value, task.HIGHER_IS_BETTER, task.BEST_METRIC)
        line = f"epoch {state.epoch}/{epochs}  step {state.global_step}  "
        line += f"{task.describe(metrics)}  ({time.perf_counter() - epoch_started:.1f} s)"
        log_validation(trackers, metrics, state.global_step, line)
        for tag, image in task.validation_images(task.latest_sums).items():
            trackers.tensorboard.add_image(tag, image, state.global_step)
        return value

    def part_way(self, trackers: Trackers, state: TrainState) -> float:
        """Validate the weights of a run that --max-steps ended mid-epoch (a sweep's trial
        budgeted in steps needs a result); best.pt stays the best of whole epochs."""
        metrics = self.task.evaluate(self.model, self.loader, self.device)
        line = f"step {state.global_step} (part-way through epoch {state.epoch + 1}, --max-steps)"
        log_validation(
            trackers, metrics, state.global_step, f"{line}  {self.task.describe(metrics)}"
        )
        return metrics[self.task.BEST_METRIC]

    def best_of(self, *values: float | None) -> float | None:
        """The best of the metric's measured values (None: not measured)."""
        measured = [value for value in values if value is not None]
        return (max if self.task.HIGHER_IS_BETTER else min)(measured, default=None)


def log_first_look(
    task: Task, trackers: Trackers, model: nn.Module, criterion: nn.Module, data, args
) -> None:
    """A new run's model summary (printed, saved, tracked), samples, flags and graphs."""
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]):  # the example input and samples may draw numbers
        example = task.example_input(data).to(device)  # one sample, as the model takes it
        model_summary = str(summary(model, input_data=example, verbose=0, mode="eval"))
        tqdm.write(model_summary)
        trackers.log_text("model/summary", model_summary, "model_summary.txt")
        trackers.log_params(args_to_dict(args), task.HPARAM_METRICS)
        preview = task.preview(data)
        if preview is not None:
            trackers.tensorboard.add_image("data/train_samples", preview)
        if args.log_graph:
            log_module_graph(trackers.tensorboard, model, example)
    if args.viz_graph:
        graph = save_autograd_graph(model, criterion, data.train, trackers.run_dir, device)
        tqdm.write(graph)
