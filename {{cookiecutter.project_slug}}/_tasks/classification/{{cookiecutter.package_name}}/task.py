"""What this project's task is: image classification (an image in, a class out).

The one place the scripts learn what differs between tasks: the task's own flags, its data, the
model's config, the loss, the metrics and the one that picks best.pt, what it shows in
TensorBoard, and what predict.py and export.py need. It implements engine/task_base.py's Task
interface (which says what each member is for); train.py stays the same for every task.
"""

import argparse
import reprlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
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
from .engine.task_base import Task
from .errors import UserError
from .image_files import IMAGES, ImageReader
from .input_files import InputFile
from .ops import topk_correct
from .predictions import CheckResizable, Predictions
from .preprocessing import preprocessing_problem

DEFAULT_IMAGE_SIZE = 32  # --image-size when neither it nor pretrained weights set one


class Classification(Task):
    """An image in, one of the data's classes out (cross-entropy; accuracy picks best.pt)."""

    NAME = TASK
    INPUTS = IMAGES
    DATASETS = DATASETS
    DATA_DIR_HELP = "train/<class>/ and val/<class>/ (--dataset folder), or torchvision's files"
    SYNTHETIC_SIZE = 8_000
    BEST_METRIC, HIGHER_IS_BETTER = "accuracy", True
    HPARAM_METRICS = ("val/accuracy", "val/top5_accuracy", "val/loss", "train/loss")
    EVAL_SETTINGS = ("image_size", "download")
    # The smallest settings of this task that still train (the own network).
    SMOKE_SETTINGS = {"synthetic_size": 16, "image_size": 16, "width": 8,
                      "arch": backbones.OWN_ARCH, "pretrained": "none", "freeze_backbone": False,
                      "unfreeze_at_epoch": None}  # fmt: skip

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        """The flags of this task (its data, model and loss), one group in --help."""
        add = parser.add_argument_group("task: classification").add_argument
        add("--download", action="store_true", help="download a torchvision data set if missing")
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
        add("--norm", choices=architecture.NORMS, default="batch",
            help=f"{backbones.OWN_ARCH}: normalisation layers")  # fmt: skip
        add("--image-size", type=cli.image_size,
            help="side of the square input (default: the pretrained weights', else 32)")  # fmt: skip
        add("--pretrained", default="none",
            help="start from: none, imagenet (torchvision's weights of --arch, via torch's hub "
            "cache), or a weights file (a state dict, or a checkpoint of this project)")  # fmt: skip
        add("--freeze-backbone", action="store_true", help="train only the classifier head")
        add("--unfreeze-at-epoch", type=cli.positive_int,
            help="with --freeze-backbone: train every layer from this epoch on (1 is the first)")  # fmt: skip
        add("--backbone-lr-scale", type=cli.non_negative_float, default=1.0,
            help="the backbone's learning rate as a fraction of --lr (the head gets --lr)")  # fmt: skip

    def build_data(self, args: argparse.Namespace) -> DataBundle:
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

    def resolved_flags(self, data: DataBundle) -> dict:
        """The input size chosen when --image-size was left to the pretrained weights."""
        return {"image_size": data.image_size}

    def checkpoint_extras(self, data: DataBundle) -> dict:
        """The class names (index -> name) and how images are fed (size, normalisation)."""
        return {"classes": data.classes, "preprocessing": data.preprocessing}

    def card_problem(self, card: dict) -> str | None:
        """The classes (names, as many as the model's outputs) and the preprocessing."""
        classes = card.get("classes")
        if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
            return f"classes is {reprlib.repr(classes)}, not a list of names"
        outputs = card["model_config"].get("num_classes")
        if not classes or len(classes) != outputs:
            return f"classes lists {len(classes)} names for a model of {outputs} outputs"
        return preprocessing_problem(card.get("preprocessing"))

    def model_config(self, args: argparse.Namespace, data: DataBundle) -> dict:
        """The keyword arguments that build the model; checkpoints keep them to rebuild it."""
        return backbones.model_config(
            args.arch, data.num_classes, data.in_channels, data.image_size,
            width=args.width, norm=args.norm,
        )  # fmt: skip

    def build_model(self, config: dict) -> nn.Module:
        """The network of a model config: this project's own, or a torchvision classifier."""
        return backbones.build_model(config)

    def load_pretrained(self, model: nn.Module, args: argparse.Namespace, data: DataBundle) -> None:
        """--pretrained: ImageNet weights or a weights file, the head re-initialised for new classes."""
        backbones.load_pretrained(model, args.arch, args.pretrained, data.classes)

    def parameter_groups(self, model: nn.Module, args: argparse.Namespace) -> list:
        """(parameters, learning-rate scale) pairs: the head at --lr, the backbone scaled."""
        return backbones.parameter_groups(model, model.num_classes, args.backbone_lr_scale)

    def set_train_mode(self, model: nn.Module, epoch: int, args: argparse.Namespace) -> bool:
        """Training mode for `epoch` (0-based): with --freeze-backbone, only the head trains (and the
        backbone's batch-norm statistics stay) until --unfreeze-at-epoch. Returns whether the set of
        trainable parameters changed."""
        model.train()
        unfreeze_at = args.unfreeze_at_epoch
        frozen = args.freeze_backbone and (unfreeze_at is None or epoch + 1 < unfreeze_at)
        return backbones.set_backbone_frozen(model, model.num_classes, frozen)

    def build_criterion(self, args: argparse.Namespace) -> nn.Module:
        """Cross-entropy with label smoothing; it takes the soft targets of --mixup/--cutmix too."""
        return architecture.ClassificationLoss(args.label_smoothing)

    def batch_sums(
        self, images: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Summed cross-entropy (without label smoothing, float32: MPS has no float64) and the
        top-1 and top-5 hits (int64 counts: exact over any number of processes)."""
        hits = topk_correct(logits, targets, ks=(1, 5))
        return {"loss": F.cross_entropy(logits, targets, reduction="sum"), "hits": hits}

    def metrics(self, sums: dict[str, torch.Tensor], samples: int) -> dict[str, float]:
        """Mean cross-entropy, top-1 and top-5 accuracy."""
        top1, top5 = sums["hits"].tolist()
        return {
            "loss": sums["loss"].item() / samples,
            "accuracy": top1 / samples,
            "top5_accuracy": top5 / samples,
        }

    def describe(self, metrics: dict) -> str:
        """The validation scores in the line train.py prints after each epoch."""
        return f"val loss {metrics['loss']:.4f}  val accuracy {metrics['accuracy']:.2%}"

    def describe_best(self, value: float) -> str:
        """The best value of BEST_METRIC, as the end-of-run summary names it."""
        return f"val accuracy: {value:.2%}"

    def preview(self, data: DataBundle) -> torch.Tensor:
        """A grid of training samples, for a first look at what the model is fed."""
        return preview_grid(data.train, data.mean, data.std)

    def add_eval_flags(self, parser: argparse.ArgumentParser) -> None:
        """test.py's flags of this task."""
        add = parser.add_argument
        add("--image-size", type=cli.image_size, help="default: the checkpoint's")
        add("--download", action="store_true", help="download a torchvision set")

    def check_data(self, checkpoint: dict, data: DataBundle) -> None:
        """Refuse data whose classes are not the ones the checkpoint was trained on."""
        if data.classes != checkpoint["classes"]:
            raise UserError(
                f"the checkpoint was trained on the classes {checkpoint['classes']}, "
                f"but this data has {data.classes}; evaluate it on matching data"
            )

    def report_lines(
        self, metrics: dict, settings: dict, data: DataBundle, saved: list[Path]
    ) -> list[str]:
        """test.py's lines above its JSON: the data and the scores."""
        return [
            f"data        {settings['dataset']} val split, {metrics['samples']} samples, "
            f"{len(data.classes)} classes",
            f"accuracy    {metrics['accuracy']:.2%}   top-5 {metrics['top5_accuracy']:.2%}   "
            f"loss {metrics['loss']:.4f}",
        ]

    def add_predict_flags(self, parser: argparse.ArgumentParser) -> None:
        """predict.py's flags of this task: how many classes a record lists, and where it goes."""
        add = parser.add_argument_group("task: classification").add_argument
        add("--top-k", type=cli.positive_int, default=5,
            help="classes listed per image, most probable first (at most the class count)")  # fmt: skip
        add("--output", type=Path,
            help="write the records to FILE.csv or FILE.jsonl (default: JSON lines on stdout)")  # fmt: skip

    def prediction_reader(self, card: dict) -> ImageReader:
        """An image file as the model's input, as evaluation fed it: RGB, resized, centre-cropped,
        normalised, and grey when the model takes one channel (a strip too long to resize in
        memory is a ValueError: that image's record says so)."""
        form = card["preprocessing"]
        evaluation = image_transforms(
            form["image_size"], tuple(form["mean"]), tuple(form["std"]), train=False, hflip=False,
            resize_size=form.get("resize_size"),
        )  # fmt: skip
        check = CheckResizable(form.get("resize_size") or form["image_size"])  # as evaluation
        if form["in_channels"] == 1:
            return ImageReader(v2.Compose([check, v2.Grayscale(), evaluation]))
        return ImageReader(v2.Compose([check, evaluation]))

    def open_predictions(
        self, args: argparse.Namespace, card: dict, images: list[InputFile]
    ) -> Predictions:
        """predict.py's records: the predicted class, its probability and the top-k, per image."""
        return Predictions(card["classes"], args.top_k, args.output)

    def export_examples(self, card: dict) -> list[torch.Tensor]:
        """export.py's inputs: the first traces the model, each checks the exported file (batches
        of 2, 1 and 3 at the card's input size; seeded, so every export is checked alike)."""
        generator = torch.Generator().manual_seed(0)
        size, channels = card["preprocessing"]["image_size"], card["preprocessing"]["in_channels"]
        return [torch.randn(n, channels, size, size, generator=generator) for n in (2, 1, 3)]


task = Classification()


def input_format(args: argparse.Namespace) -> InputFormat:
    """--image-size, else the weights' own size; the weights' normalisation, if any."""
    arch = getattr(args, "arch", backbones.OWN_ARCH)  # older checkpoints: the own network
    recorded = args.recorded.get("preprocessing") or backbones.pretrained_preprocessing(
        arch, getattr(args, "pretrained", "none")
    )
    recorded = recorded or {}
    size = args.image_size or recorded.get("image_size") or DEFAULT_IMAGE_SIZE
    resize = recorded.get("resize_size") if size == recorded.get("image_size") else None
    mean, std = recorded.get("mean"), recorded.get("std")
    rgb = arch != backbones.OWN_ARCH or recorded.get("in_channels") == 3
    return InputFormat(size, resize, mean and tuple(mean), std and tuple(std), rgb)
