"""What this project's task is: image classification (an image in, a class out).

The one place train.py learns what differs between tasks: the task's own flags, its data, the
model's config, the loss, the metric that picks best.pt, and what it shows in TensorBoard.
A project of another task has another task.py with the same names; train.py stays the same.
"""

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from torchvision.transforms import v2

# Absolute, so isort keeps it apart from the model module's import whatever the model is called.
import {{ cookiecutter.package_name }}.backbones as backbones

from . import {{ cookiecutter.model_name }} as architecture
from .data import (
    DATASETS,
    TASK,
    DataBundle,
    InputFormat,
    build_datasets,
    image_transforms,
    inverse_class_frequency,
    mix_batches,
    preview_grid,
)
from .engine import cli
from .engine.devices import sum_across_ranks
from .errors import UserError
from .image_files import FoundImage
from .ops import topk_correct
from .predictions import Predictions, card_classes

NAME = TASK
# The validation metric that picks best.pt, and whether a higher value is better.
BEST_METRIC, HIGHER_IS_BETTER = "accuracy", True
# The validation metrics beside the HParams dashboard's flags (their latest values).
HPARAM_METRICS = ("val/accuracy", "val/top5_accuracy", "val/loss", "train/loss")
# Called with each evaluated batch as (images, logits, targets), as test.py's hook expects.
BatchHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
# test.py: the task's own data settings (the checkpoint's unless given) and its batch size.
EVAL_SETTINGS, EVAL_BATCH_SIZE = ("download",), 256
# predict.py and export.py: the training flags a prediction needs (kept in model cards).
PREDICT_SETTINGS = ()
# export.py: the input dimensions an exported model takes at any size (0: the batch).
EXPORT_DYNAMIC_DIMS = (0,)
# train.py --smoke-test: the smallest settings of this task that still train (own network).
SMOKE_SETTINGS = {"synthetic_size": 16, "image_size": 16, "width": 8,
                  "arch": backbones.OWN_ARCH, "pretrained": "none", "freeze_backbone": False,
                  "unfreeze_at_epoch": None}  # fmt: skip
DEFAULT_IMAGE_SIZE = 32  # --image-size when neither it nor pretrained weights set one


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of this task (its data, model and loss), one group in --help."""
    add = parser.add_argument_group("task: classification").add_argument
    add("--dataset", choices=DATASETS, default="synthetic", help="data set to train on")
    add("--data-dir", type=Path, default=Path("data"),
        help="folder with train/<class>/ and val/<class>/ (--dataset folder), or where "
        "torchvision's files are")  # fmt: skip
    add("--download", action="store_true", help="download a torchvision data set if missing")
    add("--synthetic-size", type=cli.positive_int, default=8_000,
        help="training images of --dataset synthetic (validation gets a fifth)")  # fmt: skip
    add("--hflip", action=argparse.BooleanOptionalAction, default=True,
        help="mirror training images at random (folder, cifar10); --no-hflip for text, digits")  # fmt: skip
    add("--label-smoothing", type=cli.probability, default=0.1, help="label smoothing")
    add("--mixup", type=cli.non_negative_float, default=0.0, metavar="ALPHA",
        help="MixUp of training batches with Beta(ALPHA, ALPHA) weights (0: off)")  # fmt: skip
    add("--cutmix", type=cli.non_negative_float, default=0.0, metavar="ALPHA",
        help="CutMix of training batches (0: off; with --mixup, one of the two per batch)")  # fmt: skip
    add("--balanced-sampling", action="store_true",
        help="draw training images inversely to their class's frequency (skewed folders)")  # fmt: skip
    add = parser.add_argument_group("task: network and fine-tuning").add_argument
    add("--arch", type=backbones.arch, default=backbones.OWN_ARCH,
        help="this project's network or a torchvision classifier (--list-archs names them)")  # fmt: skip
    add("--list-archs", action=backbones.ListArchs, help="print the --arch names and exit")
    add("--width", type=cli.positive_int, default=16,
        help=f"{backbones.OWN_ARCH}: channels of the first stage")  # fmt: skip
    add("--pretrained", default="none",
        help="start from: none, imagenet (torchvision's weights of --arch, via torch's hub "
        "cache), or a weights file (a state dict, or a checkpoint of this project)")  # fmt: skip
    add("--freeze-backbone", action="store_true", help="train only the classifier head")
    add("--unfreeze-at-epoch", type=cli.positive_int,
        help="with --freeze-backbone: train every layer from this epoch on (1 is the first)")  # fmt: skip
    add("--backbone-lr-scale", type=cli.non_negative_float, default=1.0,
        help="the backbone's learning rate as a fraction of --lr (the head gets --lr)")  # fmt: skip


def build_data(args: argparse.Namespace) -> DataBundle:
    """The train and val splits with their transforms (in the input format of the pretrained
    weights, or of the checkpoint being resumed or evaluated, unless flags say otherwise), and
    how training batches are drawn."""
    # getattr: test.py passes the args of checkpoints made before these flags existed.
    if getattr(args, "unfreeze_at_epoch", None) is not None and not args.freeze_backbone:
        raise UserError("--unfreeze-at-epoch needs --freeze-backbone; add it or drop the epoch")
    data = build_datasets(
        args.dataset, args.data_dir, input_format(args), args.download, args.seed,
        args.synthetic_size, args.hflip,
    )  # fmt: skip
    if getattr(args, "balanced_sampling", False):
        data.train_sample_weights = inverse_class_frequency(data.train.targets)
    mixup, cutmix = getattr(args, "mixup", 0.0), getattr(args, "cutmix", 0.0)
    data.train_batch_transform = mix_batches(mixup, cutmix, data.num_classes)
    return data


def input_format(args: argparse.Namespace) -> InputFormat:
    """--image-size, else the weights' own size; the weights' normalisation, if any."""
    arch = getattr(args, "arch", backbones.OWN_ARCH)  # older checkpoints: the own network
    recorded = args.preprocessing or backbones.pretrained_preprocessing(
        arch, getattr(args, "pretrained", "none")
    )
    recorded = recorded or {}
    size = args.image_size or recorded.get("image_size") or DEFAULT_IMAGE_SIZE
    resize = recorded.get("resize_size") if size == recorded.get("image_size") else None
    mean, std = recorded.get("mean"), recorded.get("std")
    rgb = arch != backbones.OWN_ARCH or recorded.get("in_channels") == 3
    return InputFormat(size, resize, mean and tuple(mean), std and tuple(std), rgb)


def model_config(args: argparse.Namespace, data: DataBundle) -> dict:
    """The keyword arguments that build the model; checkpoints keep them to rebuild it."""
    return backbones.model_config(
        args.arch, data.num_classes, data.in_channels, data.image_size,
        width=args.width, norm=args.norm,
    )  # fmt: skip


def build_model(config: dict) -> nn.Module:
    """The network of a model config: this project's own, or a torchvision classifier."""
    return backbones.build_model(config)


def load_pretrained(model: nn.Module, args: argparse.Namespace, data: DataBundle) -> None:
    """--pretrained: ImageNet weights or a weights file, the head re-initialised for new classes."""
    backbones.load_pretrained(model, args.arch, args.pretrained, data.classes)


def parameter_groups(model: nn.Module, args: argparse.Namespace) -> list:
    """(parameters, learning-rate scale) pairs: the head at --lr, the backbone scaled."""
    return backbones.parameter_groups(model, model.num_classes, args.backbone_lr_scale)


def set_train_mode(model: nn.Module, epoch: int, args: argparse.Namespace) -> bool:
    """Training mode for `epoch` (0-based): with --freeze-backbone, only the head trains (and the
    backbone's batch-norm statistics stay) until --unfreeze-at-epoch. Returns whether the set of
    trainable parameters changed."""
    model.train()
    unfreeze_at = args.unfreeze_at_epoch
    frozen = args.freeze_backbone and (unfreeze_at is None or epoch + 1 < unfreeze_at)
    return backbones.set_backbone_frozen(model, model.num_classes, frozen)


def build_criterion(args: argparse.Namespace) -> nn.Module:
    """Cross-entropy with label smoothing; it takes the soft targets of --mixup/--cutmix too."""
    return architecture.ClassificationLoss(args.label_smoothing)


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device, on_batch: BatchHook | None = None
) -> dict[str, float]:
    """Mean cross-entropy (without label smoothing), top-1 and top-5 accuracy over `loader`.

    Sums stay on the device (float32 and int64: MPS has no float64) and are read once, at
    the end. Under torchrun each rank evaluates its own shard and the sums are added up over
    the ranks, so every rank gets the numbers one process would get on the whole split.
    Pass the plain model, not DDP: the shards may differ by one batch, and DDP's forward
    would wait for a rank that has none left.
    """
    model.eval()
    loss_sum = torch.zeros((), device=device)
    counts = torch.zeros(3, device=device, dtype=torch.int64)  # top-1, top-5, samples
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        logits = model(images)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        counts[:2] += topk_correct(logits, targets, ks=(1, 5))
        counts[2] += targets.size(0)
        if on_batch is not None:
            on_batch(images, logits, targets)
    sum_across_ranks(loss_sum)
    top1, top5, count = sum_across_ranks(counts).tolist()
    if count == 0:
        raise ValueError("the evaluation split is empty")
    return {
        "loss": loss_sum.item() / count,
        "accuracy": top1 / count,
        "top5_accuracy": top5 / count,
        "samples": count,
    }


def describe(metrics: dict) -> str:
    """The validation scores in the line train.py prints after each epoch."""
    return f"val loss {metrics['loss']:.4f}  val accuracy {metrics['accuracy']:.2%}"


def describe_best(value: float) -> str:
    """The best value of BEST_METRIC, as the end-of-run summary names it."""
    return f"val accuracy: {value:.2%}"


def preview(data: DataBundle) -> torch.Tensor:
    """A grid of training samples, for a first look at what the model is fed."""
    return preview_grid(data.train, data.mean, data.std)


def log_step_images(
    writer: SummaryWriter, step: int, batch: tuple[torch.Tensor, ...], args: argparse.Namespace
) -> None:
    """Pictures of a training step: a classifier's are its inputs, shown once by preview()."""


def add_eval_flags(parser: argparse.ArgumentParser) -> None:
    """test.py's flags of this task."""
    parser.add_argument("--download", action="store_true", help="download a torchvision set")


def check_data(checkpoint: dict, data: DataBundle) -> None:
    """Refuse data whose classes are not the ones the checkpoint was trained on."""
    if data.classes != checkpoint["classes"]:
        raise UserError(
            f"the checkpoint was trained on the classes {checkpoint['classes']}, "
            f"but this data has {data.classes}; evaluate it on matching data"
        )


def evaluation_hook(args: argparse.Namespace) -> tuple[None, list[Path]]:
    """What test.py runs on each evaluated batch: nothing for a classifier."""
    return None, []


def report_lines(metrics: dict, settings: dict, data: DataBundle, saved: list[Path]) -> list[str]:
    """test.py's lines above its JSON: the data and the scores."""
    return [
        f"data        {settings['dataset']} val split, {metrics['samples']} samples, "
        f"{len(data.classes)} classes",
        f"accuracy    {metrics['accuracy']:.2%}   top-5 {metrics['top5_accuracy']:.2%}   "
        f"loss {metrics['loss']:.4f}",
    ]


def add_predict_flags(parser: argparse.ArgumentParser) -> None:
    """predict.py's flags of this task: how many classes a record lists, and where it goes."""
    add = parser.add_argument_group("task: classification").add_argument
    add("--top-k", type=cli.positive_int, default=5,
        help="classes listed per image, most probable first (at most the class count)")  # fmt: skip
    add("--output", type=Path,
        help="write the records to FILE.csv or FILE.jsonl (default: JSON lines on stdout)")  # fmt: skip


def prediction_transform(card: dict) -> Callable[[Image.Image], torch.Tensor]:
    """An RGB image as the model's input, as evaluation fed it: resized, centre-cropped,
    normalised, and grey when the model takes one channel."""
    form = card["preprocessing"]
    evaluation = image_transforms(
        form["image_size"], tuple(form["mean"]), tuple(form["std"]), train=False, hflip=False,
        resize_size=form.get("resize_size"),
    )  # fmt: skip
    if form["in_channels"] == 1:
        return v2.Compose([v2.Grayscale(), evaluation])
    return evaluation


def open_predictions(args: argparse.Namespace, card: dict, images: list[FoundImage]) -> Predictions:
    """predict.py's records: the predicted class, its probability and the top-k, per image."""
    return Predictions(card_classes(card), args.top_k, args.output)


def export_examples(card: dict) -> list[torch.Tensor]:
    """export.py's inputs: the first traces the model, each checks the exported file (batches
    of 2, 1 and 3 at the card's input size; seeded, so every export is checked alike)."""
    generator = torch.Generator().manual_seed(0)
    size, channels = card["preprocessing"]["image_size"], card["preprocessing"]["in_channels"]
    return [torch.randn(n, channels, size, size, generator=generator) for n in (2, 1, 3)]
