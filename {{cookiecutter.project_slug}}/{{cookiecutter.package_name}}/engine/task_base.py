"""The Task interface: every member the shared scripts ask a task for, with its default.

A task (task.py) subclasses `Task` and makes one instance, `task = MyTask()`; train.py,
test.py, predict.py, export.py and sweep.py use only the members below. The abstract ones are
required (NAME, BEST_METRIC, HIGHER_IS_BETTER and the methods under "required methods"): a
subclass that lacks one cannot be instantiated, and the error names it. Everything else has a
working default, so a new task starts with the twelve required members and overrides a default
only where it needs more.
"""

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from ..input_files import InputFile, InputKind
from .devices import sum_across_ranks

# Called with each evaluated batch as (inputs, outputs, targets) (test.py's hook).
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
# What a subclass must set or define; the rest of the members have working defaults.
REQUIRED_ATTRIBUTES = ("NAME", "BEST_METRIC", "HIGHER_IS_BETTER")
REQUIRED_METHODS = (
    "add_flags", "build_data", "model_config", "checkpoint_extras", "build_criterion",
    "batch_sums", "metrics",
    "add_predict_flags", "prediction_reader", "open_predictions", "export_examples",
)  # fmt: skip


class Task:
    """What a task is to the shared scripts: its flags, data, model, loss and metrics, and
    what test.py, predict.py and export.py need of it."""

    # ------------------------------------------------------------------ required
    NAME: ClassVar[str]  # the task's name, stored in checkpoints and model cards
    BEST_METRIC: ClassVar[str]  # the validation metric that picks best.pt (a key of metrics())
    HIGHER_IS_BETTER: ClassVar[bool]  # its direction

    # ------------------------------------------------------------------ defaults
    # The data flags the scripts declare for every task (engine.cli.add_data_flags): the
    # --dataset choices ("synthetic" among them: the smoke test and the tests train on it, with
    # nothing to download), what --data-dir holds, and --synthetic-size's default.
    DATASETS: ClassVar[tuple[str, ...]] = ("synthetic",)
    DATA_DIR_HELP: ClassVar[str] = "folder of the data (--dataset folder)"
    SYNTHETIC_SIZE: ClassVar[int] = 1_000
    # The model class build_model() instantiates with a model config as keyword arguments.
    MODEL_CLASS: ClassVar[type[nn.Module] | None] = None
    # train.py --smoke-test: settings that make the task tiny (merged over engine's own).
    SMOKE_SETTINGS: ClassVar[dict[str, Any]] = {}
    # test.py: the task's own data flags, read from the checkpoint unless given (add_eval_flags
    # declares them), and its evaluation batch size.
    EVAL_SETTINGS: ClassVar[tuple[str, ...]] = ()
    EVAL_BATCH_SIZE: ClassVar[int] = 256
    # predict.py and export.py: the training flags a prediction needs (kept in model cards).
    PREDICT_SETTINGS: ClassVar[tuple[str, ...]] = ()
    # predict.py's inputs: what they are called, the suffixes a folder search picks up (none:
    # every file) and an example glob pattern for its messages.
    INPUTS: ClassVar[InputKind] = InputKind("input")

    def __init__(self) -> None:
        missing = missing_members(type(self))
        if missing:
            raise TypeError(
                f"Can't instantiate task class {type(self).__name__} without {', '.join(missing)}"
            )
        # The summed batch_sums() of the latest evaluate(), for validation_images().
        self.latest_sums: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ required methods
    # (each subclass defines them; these bodies only state the signatures)
    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        """train.py's flags of this task (its data, model and loss)."""
        raise NotImplementedError

    def build_data(self, args: argparse.Namespace) -> Any:
        """The train and val splits (`.train`, `.val`) and what the model needs to know of them;
        optional fields the loader reads: `train_sample_weights`, `train_batch_transform`."""
        raise NotImplementedError

    def build_eval_data(self, args: argparse.Namespace) -> Any:
        """test.py's data (`args`: the checkpoint's flags, test.py's settings over them, and
        `recorded`, the checkpoint's task extras): what build_data builds, by default. A task
        whose data can be evaluated without its train split overrides it, so a folder of
        held-out data needs no train/."""
        return self.build_data(args)

    def model_config(self, args: argparse.Namespace, data: Any) -> dict:
        """The keyword arguments that build the model; checkpoints keep them to rebuild it."""
        raise NotImplementedError

    def checkpoint_extras(self, data: Any) -> dict[str, Any]:
        """The task's own entries of every checkpoint (plain values: e.g. the class names, how
        inputs are fed; {} when the model config says it all), beside the engine's. Model cards
        carry them to predict.py and export.py, and a run resumed or evaluated from a checkpoint
        finds them in `args.recorded`."""
        raise NotImplementedError

    def build_criterion(self, args: argparse.Namespace) -> nn.Module:
        """The training loss, an nn.Module called as criterion(outputs, targets)."""
        raise NotImplementedError

    def batch_sums(
        self, inputs: torch.Tensor, outputs: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One evaluated batch's metric sums (tensors on the device; integer counts where a
        metric is a count, so that sums over processes are exact)."""
        raise NotImplementedError

    def metrics(self, sums: dict[str, torch.Tensor], samples: int) -> dict[str, float]:
        """The validation metrics from the sums over the whole split (all processes)."""
        raise NotImplementedError

    def add_predict_flags(self, parser: argparse.ArgumentParser) -> None:
        """predict.py's flags of this task: what open_predictions() reads (where the outputs go,
        how many classes a record lists, ...)."""
        raise NotImplementedError

    def prediction_reader(self, card: dict) -> Callable[[Path], torch.Tensor]:
        """predict.py: reads one input file (its path) as the model's input tensor, fed as
        evaluation fed the data. Loader workers call it, so it must pickle (an instance of a
        small class, not a closure); a file it cannot use raises a UserError naming it (or an
        OSError or ValueError), which becomes that input's error record."""
        raise NotImplementedError

    def open_predictions(
        self, args: argparse.Namespace, card: dict, inputs: list[InputFile]
    ) -> Any:
        """predict.py: a context manager whose `add(predictor, batch)` writes the prediction of
        each input of an engine.PredictionBatch (JSON records on stdout, in input order; files
        where the task's flags say), with `failed` and `summary()` for the end of the run."""
        raise NotImplementedError

    def export_examples(self, card: dict) -> list[torch.Tensor]:
        """export.py's example inputs: the first traces the model, each checks the file; the
        file takes any size in the dimensions where their sizes differ (vary the batch, with a
        batch of 1 among them, and whatever else the model takes at any size)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ defaults
    @property
    def HPARAM_METRICS(self) -> tuple[str, ...]:  # noqa: N802 (read like the constants above)
        """The metrics shown beside the HParams dashboard's flags (their latest values)."""
        return (f"val/{self.BEST_METRIC}", "val/loss", "train/loss")

    def resolved_flags(self, data: Any) -> dict[str, Any]:
        """Flags whose value the data decided (e.g. an input size left to pretrained weights):
        train.py records them in the run's args. None by default."""
        return {}

    def card_problem(self, card: dict) -> str | None:
        """What is wrong with the task's own entries of a model card (edited by hand, damaged),
        or None; the engine checks its own entries and that model_config builds the model."""
        return None

    def build_model(self, config: dict) -> nn.Module:
        """The network of a model config: MODEL_CLASS(**config)."""
        if self.MODEL_CLASS is None:
            raise TypeError(f"{type(self).__name__} sets no MODEL_CLASS nor its own build_model")
        return self.MODEL_CLASS(**config)

    def load_pretrained(self, model: nn.Module, args: argparse.Namespace, data: Any) -> None:
        """Start the model from pretrained weights: none by default."""

    def parameter_groups(self, model: nn.Module, args: argparse.Namespace) -> list:
        """(parameters, learning-rate scale) pairs: every parameter at --lr by default."""
        return [(list(model.parameters()), 1.0)]

    def set_train_mode(self, model: nn.Module, epoch: int, args: argparse.Namespace) -> bool:
        """Training mode for `epoch` (0-based); returns whether the set of trainable parameters
        changed (DDP then wraps the model anew). Default: everything trains, always."""
        model.train()
        return False

    def preview(self, data: Any) -> torch.Tensor | None:
        """A first look at the training data for TensorBoard (an image, CHW), or None."""
        return None

    def example_input(self, data: Any) -> torch.Tensor:
        """One input batch of one sample (the model summary and graph trace it): by default the
        first validation sample's input."""
        inputs = data.val[0][0]
        return torch.as_tensor(inputs).unsqueeze(0)

    def log_step_images(
        self,
        writer: SummaryWriter,
        step: int,
        batch: tuple[torch.Tensor, ...],
        args: argparse.Namespace,
    ) -> None:
        """Pictures of a training step (inputs, outputs, targets): none by default."""

    def validation_images(self, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pictures of a validation, drawn from its summed batch_sums() (a confusion matrix,
        say): TensorBoard tag -> (3, H, W) image in [0, 1], logged after each epoch's
        validation. None by default."""
        return {}

    @torch.inference_mode()
    def evaluate(
        self,
        model: nn.Module,
        loader: DataLoader,
        device: torch.device,
        on_batch: BatchHook | None = None,
    ) -> dict[str, float]:
        """The validation metrics over `loader`: batch_sums() summed over the batches and over
        the processes, then metrics(), plus `samples`.

        Sums stay on the device and are read once, at the end. Under torchrun each rank
        evaluates its own shard and the sums are added up over the ranks, so every rank gets
        the numbers one process would get on the whole split. Pass the plain model, not DDP:
        the shards may differ by one batch, and DDP's forward would wait for a rank that has
        none left.
        """
        model.eval()
        sums: dict[str, torch.Tensor] = {}
        samples = torch.zeros((), dtype=torch.int64, device=device)
        for inputs, targets in loader:
            inputs = inputs.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            outputs = model(inputs)
            for name, value in self.batch_sums(inputs, outputs, targets).items():
                sums[name] = sums[name] + value if name in sums else value
            samples += targets.size(0)
            if on_batch is not None:
                on_batch(inputs, outputs, targets)
        count = int(sum_across_ranks(samples).item())
        if count == 0:
            raise ValueError("the evaluation split is empty")
        for name in sorted(sums):  # every rank reduces in the same order
            sum_across_ranks(sums[name])
        self.latest_sums = sums
        return {**self.metrics(sums, count), "samples": count}

    def prediction_outputs(self, args: argparse.Namespace) -> list[Path]:
        """Folders predict.py writes into, which it leaves out of the input folders it searches:
        none by default (records go to stdout or one file)."""
        return []

    def describe(self, metrics: dict) -> str:
        """The validation scores in the line train.py prints after each epoch."""
        best = metrics[self.BEST_METRIC]
        return f"val loss {metrics['loss']:.4f}  val {self.BEST_METRIC} {best:.4g}"

    def describe_best(self, value: float) -> str:
        """The best value of BEST_METRIC, as the end-of-run summary names it."""
        return f"val {self.BEST_METRIC}: {value:.4g}"

    def add_eval_flags(self, parser: argparse.ArgumentParser) -> None:
        """test.py's flags of this task (those of EVAL_SETTINGS among them): none by default."""

    def check_data(self, checkpoint: dict, data: Any) -> None:
        """Refuse evaluation data that does not suit the checkpoint: anything suits by default."""

    def evaluation_hook(self, args: argparse.Namespace) -> tuple[BatchHook | None, list[Path]]:
        """What test.py runs on each evaluated batch, and the files it wrote: none by default."""
        return None, []

    def report_lines(
        self, metrics: dict, settings: dict, data: Any, saved: list[Path]
    ) -> list[str]:
        """test.py's lines above its JSON: the split and every metric."""
        scores = "   ".join(
            f"{name} {value:.4g}" for name, value in metrics.items() if name != "samples"
        )
        return [f"data        {settings['dataset']} val split, {metrics['samples']} samples",
                f"metrics     {scores}"]  # fmt: skip


def missing_members(task: type[Task]) -> list[str]:
    """The required members a task class lacks (empty when it has them all)."""
    attributes = [name for name in REQUIRED_ATTRIBUTES if not hasattr(task, name)]
    methods = [name for name in REQUIRED_METHODS if getattr(task, name) is getattr(Task, name)]
    return attributes + methods
