"""What this project's task is: semantic segmentation (an image in, a class for every pixel out).

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
from torch.utils.tensorboard import SummaryWriter

# Absolute, so isort keeps it apart from the model module's import whatever the model is called.
import {{ cookiecutter.package_name }}.backbones as backbones

from . import {{ cookiecutter.model_name }} as architecture
from .data import (
    DATASETS,
    SPLITS,
    TASK,
    DataBundle,
    build_datasets,
    class_palette,
    mask_grid,
    preview_grid,
)
from .engine import cli
from .engine.task_base import Task
from .errors import UserError
from .image_files import IMAGES, ImageReader
from .input_files import InputFile
from .masks import read_class_names
from .ops import confusion_image
from .predictions import (
    Predictions,
    SegmentationInput,
    model_grid,
    prepare_predictions,
)
from .preprocessing import preprocessing_problem

OWN_ARCH = "own"
DEFAULT_IMAGE_SIZE = 48  # the side of the synthetic scenes and of the training crops
MAX_MASK_VALUE = 65535  # a 16-bit PNG's largest value: the widest --ignore-index there is


def ignore_value(text: str) -> int:
    """--ignore-index: a mask value from 0 to 65535."""
    value = cli.non_negative_int(text)
    if value > MAX_MASK_VALUE:
        raise argparse.ArgumentTypeError(f"{value} is above {MAX_MASK_VALUE}, a 16-bit mask's top")
    return value


class Segmentation(Task):
    """An image in, a class for every pixel out (cross-entropy and/or Dice; mIoU picks best.pt)."""

    NAME = TASK
    INPUTS = IMAGES
    DATASETS = DATASETS
    DATA_DIR_HELP = (
        "folder with train/ and val/, each holding images/ and masks/ (--dataset folder)"
    )
    SYNTHETIC_SIZE = 3_000
    BEST_METRIC, HIGHER_IS_BETTER = "miou", True
    HPARAM_METRICS = ("val/miou", "val/pixel_accuracy", "val/loss", "train/loss")
    EVAL_SETTINGS = ("image_size", "crop_size", "ignore_index", "palette")
    EVAL_BATCH_SIZE = 16
    SMOKE_SETTINGS = {"synthetic_size": 16, "image_size": 32, "width": 8, "depth": 2,
                      "arch": OWN_ARCH, "pretrained": "none", "freeze_backbone": False,
                      "class_weights": "none"}  # fmt: skip

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        """The flags of this task (its data, model and loss), two groups in --help."""
        add = parser.add_argument_group("task: segmentation").add_argument
        add("--image-size", type=cli.image_size,
            help=f"side of the synthetic scenes in px, and of the crops of --dataset folder "
            f"unless --crop-size says otherwise ({DEFAULT_IMAGE_SIZE})")  # fmt: skip
        add("--crop-size", type=cli.image_size,
            help="side of the random training crops of --dataset folder (default: --image-size)")  # fmt: skip
        add("--ignore-index", type=ignore_value, default=255,
            help="the mask value of pixels that never count (borders, unlabelled)")  # fmt: skip
        add("--palette", type=Path,
            help="a text file of 'R G B class' lines (a colour and the class or ignore value it "
            "stands for): reads RGB colour masks")  # fmt: skip
        add("--loss", choices=architecture.LOSS_KINDS, default="ce",
            help="cross-entropy, Dice over the classes present, or both added")  # fmt: skip
        add("--class-weights", choices=("none", "auto"), default="none",
            help="auto: weigh the loss by inverse class frequency in the training masks")  # fmt: skip
        add("--image-log-every", type=cli.non_negative_int, default=200,
            help="optimizer steps between TensorBoard grids of image | true | predicted mask "
            "(0: never)")  # fmt: skip
        add = parser.add_argument_group("task: network and fine-tuning").add_argument
        add("--arch", choices=(OWN_ARCH, *backbones.ARCHS), default=OWN_ARCH,
            help="this project's U-Net, or a torchvision segmentation model")  # fmt: skip
        add("--width", type=cli.positive_int, default=16,
            help=f"{OWN_ARCH}: channels of the first level")  # fmt: skip
        add("--depth", type=cli.positive_int, default=3,
            help=f"{OWN_ARCH}: U-Net levels below the first")  # fmt: skip
        add("--norm", choices=architecture.NORMS, default="batch",
            help=f"{OWN_ARCH}: normalisation layers")  # fmt: skip
        add("--pretrained", default="none",
            help="start from: none, imagenet (the backbone's torchvision weights, via torch's "
            "hub cache), or a weights file (a state dict, or a checkpoint of this project)")  # fmt: skip
        add("--aux-loss", action="store_true",
            help="add the auxiliary head's loss (fcn_resnet50, deeplabv3_resnet50)")  # fmt: skip
        add("--freeze-backbone", action="store_true", help="train only the heads")
        add("--backbone-lr-scale", type=cli.non_negative_float, default=1.0,
            help="the backbone's learning rate as a fraction of --lr (the heads get --lr)")  # fmt: skip

    def build_data(self, args: argparse.Namespace) -> DataBundle:
        """The train and val pairs; with --class-weights auto, the weights from the training
        masks' pixel counts (counted once: a resumed or evaluated run reads them from its
        checkpoint)."""
        return read_data(self, args, SPLITS)

    def build_eval_data(self, args: argparse.Namespace) -> DataBundle:
        """test.py's data: the val split alone (a held-out folder needs no train/), its classes
        the checkpoint's unless the folder's classes.txt names them."""
        recorded = args.recorded.get("classes")
        if args.dataset == "folder" and recorded is not None:
            named = read_class_names(args.data_dir)
            if named is not None and named != recorded:  # before the masks are checked by them
                raise UserError(other_classes(recorded, named))
        binary = args.recorded.get("binary_masks")  # None in checkpoints older than the entry
        binary = binary if isinstance(binary, bool) else None
        return read_data(self, args, ("val",), recorded, binary)

    def resolved_flags(self, data: DataBundle) -> dict:
        """The side of the synthetic scenes and of the training crops, as trained."""
        return {"image_size": data.image_size, "crop_size": data.image_size}

    def checkpoint_extras(self, data: DataBundle) -> dict:
        """The class names, their colours, the ignore value, the class weights (when used),
        whether 0/255 masks were read as binary (test.py reads them alike) and how images are
        fed."""
        return {
            "classes": data.classes,
            "palette": class_palette(data.num_classes, data.palette),
            "ignore_index": data.ignore_index,
            "class_weights": data.class_weights,
            "binary_masks": data.binary_masks,
            "preprocessing": data.preprocessing,
        }

    def card_problem(self, card: dict) -> str | None:
        """The classes (names, as many as the model's outputs), the palette (an RGB triple per
        class), the ignore value and the preprocessing."""
        classes = card.get("classes")
        if not isinstance(classes, list) or not all(isinstance(name, str) for name in classes):
            return f"classes is {reprlib.repr(classes)}, not a list of names"
        outputs = card["model_config"].get("num_classes")
        if len(classes) < 2 or len(classes) != outputs:
            return f"classes lists {len(classes)} names for a model of {outputs} outputs"
        palette = card.get("palette")
        if not (
            isinstance(palette, list)
            and len(palette) == 3 * len(classes)
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255
                    for c in palette)
        ):  # fmt: skip
            return f"palette is {reprlib.repr(palette)}, not 3 values from 0 to 255 per class"
        ignore = card.get("ignore_index")
        if not isinstance(ignore, int) or isinstance(ignore, bool) or not 0 <= ignore <= 65535:
            return f"ignore_index is {reprlib.repr(ignore)}, not a mask value from 0 to 65535"
        return preprocessing_problem(card.get("preprocessing"))

    def model_config(self, args: argparse.Namespace, data: DataBundle) -> dict:
        """The keyword arguments that build the model; checkpoints keep them to rebuild it."""
        if args.arch == OWN_ARCH:
            return {"arch": OWN_ARCH, "num_classes": data.num_classes, "width": args.width,
                    "depth": args.depth, "norm": args.norm}  # fmt: skip
        return {"arch": args.arch, "num_classes": data.num_classes, "aux_loss": args.aux_loss}

    def build_model(self, config: dict) -> nn.Module:
        """The network of a model config: this project's U-Net, or a torchvision segmenter."""
        config = dict(config)
        arch = config.pop("arch", OWN_ARCH)
        if arch == OWN_ARCH:
            return architecture.{{ cookiecutter.__model_class }}(**config)
        return backbones.build_torchvision_segmenter(arch, **config)

    def load_pretrained(self, model: nn.Module, args: argparse.Namespace, data: DataBundle) -> None:
        """--pretrained: the backbone's ImageNet weights, or a weights file (torchvision archs)."""
        if args.arch != OWN_ARCH:
            backbones.load_pretrained(model, args.arch, args.pretrained)

    def parameter_groups(self, model: nn.Module, args: argparse.Namespace) -> list:
        """(parameters, learning-rate scale) pairs: the heads at --lr, the backbone scaled."""
        if args.arch == OWN_ARCH:
            return super().parameter_groups(model, args)
        return backbones.parameter_groups(model, args.backbone_lr_scale)

    def set_train_mode(self, model: nn.Module, epoch: int, args: argparse.Namespace) -> bool:
        """Training mode; with --freeze-backbone the backbone's weights and batch-norm statistics
        stay. Returns whether the set of trainable parameters changed."""
        model.train()
        return args.arch != OWN_ARCH and backbones.set_backbone_frozen(model, args.freeze_backbone)

    def build_criterion(self, args: argparse.Namespace) -> nn.Module:
        """--loss with the ignore value, the --class-weights, and the aux head's term (0.4 of
        the main one, as torchvision's reference training weighs it) with --aux-loss."""
        if args.arch != OWN_ARCH:  # the batch size is known now (--batch-size auto resolved)
            backbones.check_batch_size(args.arch, args.batch_size)
        weights = args.recorded.get("class_weights") if args.class_weights == "auto" else None
        return architecture.SegmentationLoss(
            args.loss, args.ignore_index,
            class_weights=None if weights is None else torch.tensor(weights),
            aux_weight=0.4 if getattr(args, "aux_loss", False) else 0.0,
        )  # fmt: skip

    def batch_sums(
        self, images: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The batch's confusion matrix (int64 pixel counts: exact over any number of processes),
        summed cross-entropy and its pixel count. A target outside the classes is the ignore
        value (the data check allows nothing else), so no flag is needed here."""
        classes = logits.size(1)
        targets = targets.masked_fill((targets < 0) | (targets >= classes), -1)
        matrix = architecture.confusion_matrix(logits.argmax(1), targets, classes, -1)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=-1, reduction="sum")
        return {"confusion": matrix, "loss": loss, "pixels": (targets >= 0).sum()}

    def metrics(self, sums: dict[str, torch.Tensor], samples: int) -> dict[str, float]:
        """mIoU, pixel accuracy, mean class accuracy, the mean cross-entropy per pixel, and each
        class's IoU (`iou/<class>`; classes neither in the truth nor predicted are left out)."""
        matrix = sums["confusion"].cpu()
        scores = architecture.segmentation_scores(matrix)
        names = getattr(self, "class_names", None) or []
        for index, iou in enumerate(architecture.class_iou(matrix).tolist()):
            if iou == iou:  # not NaN
                name = names[index] if index < len(names) else f"class_{index}"
                scores[f"iou/{name}"] = iou
        pixels = max(int(sums["pixels"].item()), 1)
        return {"loss": sums["loss"].item() / pixels, **scores}

    def describe(self, metrics: dict) -> str:
        """The validation scores in the line train.py prints after each epoch."""
        return (
            f"val loss {metrics['loss']:.4f}  val mIoU {metrics['miou']:.4f}  "
            f"pixel accuracy {metrics['pixel_accuracy']:.2%}"
        )

    def describe_best(self, value: float) -> str:
        """The best value of BEST_METRIC, as the end-of-run summary names it."""
        return f"val mIoU: {value:.4f}"

    def preview(self, data: DataBundle) -> torch.Tensor:
        """A grid of training samples: images above, their masks over them below."""
        return preview_grid(data.train, class_palette(data.num_classes, data.palette))

    def log_step_images(
        self,
        writer: SummaryWriter,
        step: int,
        batch: tuple[torch.Tensor, ...],
        args: argparse.Namespace,
    ) -> None:
        """Every --image-log-every steps, rows of images, true masks over them and predicted
        masks over them (the copy to the host syncs the device, so only every n steps)."""
        if not args.image_log_every or step % args.image_log_every:
            return
        images, outputs, targets = batch
        logits = outputs["out"] if isinstance(outputs, dict) else outputs
        grid = mask_grid(images, [targets, logits.detach().argmax(1)], self.class_colours)
        writer.add_image("train/image_mask_prediction", grid, step)

    def validation_images(self, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The validation's confusion matrix, each row shaded by the class's pixel shares."""
        return {"val/confusion_matrix": confusion_image(sums["confusion"])}

    def add_eval_flags(self, parser: argparse.ArgumentParser) -> None:
        """test.py's flags of this task."""
        add = parser.add_argument
        add("--image-size", type=cli.image_size, help="default: the checkpoint's")
        add("--crop-size", type=cli.image_size, help="default: the checkpoint's")
        add("--ignore-index", type=ignore_value, help="default: the checkpoint's")
        add("--palette", type=Path, help="default: the checkpoint's")

    def check_data(self, checkpoint: dict, data: DataBundle) -> None:
        """Refuse data whose classes are not the ones the checkpoint was trained on."""
        if data.classes != checkpoint["classes"]:
            raise UserError(other_classes(checkpoint["classes"], data.classes))

    def report_lines(
        self, metrics: dict, settings: dict, data: DataBundle, saved: list[Path]
    ) -> list[str]:
        """test.py's lines above its JSON: the data, the scores, and a table of each class's IoU
        and pixels (in the truth: the confusion matrix's row sums of the evaluation)."""
        lines = [
            f"data        {settings['dataset']} val split, {metrics['samples']} images, "
            f"{data.num_classes} classes",
            f"mIoU        {metrics['miou']:.4f}   pixel accuracy {metrics['pixel_accuracy']:.2%}   "
            f"mean class accuracy {metrics['mean_class_accuracy']:.2%}   loss {metrics['loss']:.4f}",
            f"{'class':<24} {'IoU':>8} {'pixels':>12}",
        ]
        pixels = self.latest_sums["confusion"].sum(1).tolist()
        for name, count in zip(data.classes, pixels, strict=True):
            iou = metrics.get(f"iou/{name}")
            shown = "-" if iou is None else f"{iou:.4f}"  # absent: neither true nor predicted
            lines.append(f"  {name:<22} {shown:>8} {count:>12}")
        return lines

    def add_predict_flags(self, parser: argparse.ArgumentParser) -> None:
        """predict.py's flags of this task: where the masks go, overlays, tiling."""
        add = parser.add_argument_group("task: segmentation").add_argument
        add("--output-dir", type=Path, required=True,
            help="folder for the masks: index PNGs with the class palette (names kept, .png)")  # fmt: skip
        add("--overlay", action="store_true",
            help="also write each mask blended on its image (NAME.overlay.png)")  # fmt: skip
        add("--tile", type=cli.positive_int,
            help="run images in overlapping tiles of this side, --batch-size tiles at a time, "
            "averaging class scores where they overlap: for images too large for memory")  # fmt: skip
        add("--tile-overlap", type=cli.non_negative_int,
            help="pixels neighbouring tiles share (default for the own U-Net: above twice its "
            "receptive radius, so tiles agree with the whole image)")  # fmt: skip

    def prediction_outputs(self, args: argparse.Namespace) -> list[Path]:
        """--output-dir: a rerun into a folder under the inputs must not take masks for inputs."""
        return [args.output_dir]

    def prediction_reader(self, card: dict) -> ImageReader:
        """An image file as the model's input: RGB, normalised as in training, any size."""
        form = card["preprocessing"]
        return ImageReader(SegmentationInput(tuple(form["mean"]), tuple(form["std"])))

    def open_predictions(
        self, args: argparse.Namespace, card: dict, images: list[InputFile]
    ) -> Predictions:
        """predict.py's masks, written to --output-dir (flags checked before any image)."""
        return prepare_predictions(args, card, images)

    def export_examples(self, card: dict) -> list[torch.Tensor]:
        """export.py's inputs: the first traces the model, each checks the exported file (a batch
        of 2 at the training side, then 1 and 3 at other heights and widths, multiples of the
        model's downsampling; seeded, so every export is checked alike)."""
        generator = torch.Generator().manual_seed(0)
        config, side = card["model_config"], card["preprocessing"]["image_size"]
        step = model_grid(config).multiple
        shapes = [(2, side, side), (1, side + step, side + 2 * step),
                  (3, side + 2 * step, side + step)]  # fmt: skip
        return [torch.randn(n, 3, h, w, generator=generator) for n, h, w in shapes]


task = Segmentation()


def read_data(
    task: Task,
    args: argparse.Namespace,
    splits: tuple[str, ...],
    class_names: list[str] | None = None,
    binary_masks: bool | None = None,
) -> DataBundle:
    """The data of `splits` (the others empty), checked before any run folder exists; the
    task keeps its class names and colours (metrics and pictures name and colour by them).
    A function, not a method: the interface test runs the task with its required members."""
    check_model_flags(args)
    if args.dataset == "synthetic" and getattr(args, "palette", None) is not None:
        raise UserError(
            f"--palette {args.palette} maps the colours of a folder's RGB masks (--dataset "
            "folder); the synthetic scenes need none: drop --palette"
        )
    recorded = args.recorded.get("class_weights")
    weights = getattr(args, "class_weights", "none") == "auto"
    data = build_datasets(
        args.dataset, args.data_dir, _input_size(args), args.seed, args.synthetic_size,
        args.ignore_index, args.palette, count_pixels=weights and recorded is None,
        splits=splits, class_names=class_names, binary_masks=binary_masks,
    )  # fmt: skip
    if weights:
        counts = torch.tensor(data.class_pixels) if recorded is None else None
        data.class_weights = recorded or architecture.inverse_frequency_weights(counts).tolist()
        # build_criterion sees only the flags: it finds the weights where a resumed run's
        # checkpoint puts them.
        args.recorded = {**args.recorded, "class_weights": data.class_weights}
    task.class_names = list(data.classes)
    task.class_colours = class_palette(data.num_classes, data.palette)
    for note in data.notes:
        print(note)
    return data


def other_classes(trained: list[str], found: list[str]) -> str:
    """The sentence for evaluation data of other classes than the checkpoint's."""
    return (
        f"the checkpoint was trained on the classes {trained}, but this data has {found}; "
        "evaluate it on matching data"
    )


def _input_size(args: argparse.Namespace) -> int:
    """The side of the synthetic scenes (--image-size) or of the folder's crops (--crop-size)."""
    crop = getattr(args, "crop_size", None)  # test.py passes the args the checkpoint has
    size = args.image_size if args.dataset == "synthetic" else crop or args.image_size
    recorded = (args.recorded.get("preprocessing") or {}).get("image_size")
    return size or recorded or DEFAULT_IMAGE_SIZE


def check_model_flags(args: argparse.Namespace) -> None:
    """Flags the own U-Net has no use for: one sentence before any run folder."""
    if getattr(args, "arch", OWN_ARCH) != OWN_ARCH:  # test.py passes the checkpoint's args
        return
    unsuited = [
        flag
        for flag, used in (
            ("--aux-loss", getattr(args, "aux_loss", False)),
            ("--pretrained", getattr(args, "pretrained", "none") != "none"),
            ("--freeze-backbone", getattr(args, "freeze_backbone", False)),
            ("--backbone-lr-scale", getattr(args, "backbone_lr_scale", 1.0) != 1.0),
        )
        if used
    ]
    if unsuited:
        raise UserError(
            f"{unsuited[0]} needs a torchvision --arch ({', '.join(backbones.ARCHS)}); the "
            f"{OWN_ARCH} U-Net has no pretrained backbone nor auxiliary head, so drop it"
        )
