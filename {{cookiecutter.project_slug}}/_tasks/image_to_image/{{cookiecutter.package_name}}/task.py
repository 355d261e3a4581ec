"""What this project's task is: image-to-image restoration (a corrupted image in, the clean
image out).

The one place the scripts learn what differs between tasks: the task's own flags, its data, the
model's config, the loss, the metrics and the one that picks best.pt, what it shows in
TensorBoard, and what predict.py and export.py need. It implements engine/task_base.py's Task
interface (which says what each member is for); train.py stays the same for every task.
"""

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torchvision.transforms import v2
from torchvision.utils import save_image
from tqdm import tqdm

from . import {{ cookiecutter.model_name }} as architecture
from .data import (
    CORRUPTIONS,
    DATASETS,
    TASK,
    DataBundle,
    build_datasets,
    comparison_grid,
    preview_grid,
)
from .engine import cli
from .engine.devices import (
    on_main_process,
)
from .engine.task_base import Task
from .errors import UserError
from .image_files import IMAGES, ImageReader
from .input_files import InputFile
from .ops import psnr, ssim
from .predictions import Predictions, prepare_predictions
from .preprocessing import preprocessing_problem

SAMPLES_PER_PNG = 8  # columns of a --save-samples grid: wide enough to compare, small to view
DEFAULT_IMAGE_SIZE = 32  # the side of the training crops unless --image-size says otherwise


class Restoration(Task):
    """A corrupted image in, the clean image out (pixel + perceptual loss; PSNR picks
    best.pt)."""

    NAME = TASK
    INPUTS = IMAGES
    DATASETS = DATASETS
    DATA_DIR_HELP = "folder with train/ and val/ of clean images (--dataset folder)"
    SYNTHETIC_SIZE = 4_000
    BEST_METRIC, HIGHER_IS_BETTER = "psnr", True
    HPARAM_METRICS = ("val/psnr", "val/ssim", "val/loss", "train/loss")
    MODEL_CLASS = architecture.{{ cookiecutter.__model_class }}
    EVAL_SETTINGS = ("image_size", "corruption", "corruption_strength")
    EVAL_BATCH_SIZE = 64
    # --corrupt applies the checkpoint's corruption: model cards keep it.
    PREDICT_SETTINGS = ("corruption", "corruption_strength")
    SMOKE_SETTINGS = {"synthetic_size": 16, "image_size": 16, "width": 8}

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        """The flags of this task (its data, model and loss), one group in --help."""
        add = parser.add_argument_group("task: image_to_image").add_argument
        add("--corruption", choices=CORRUPTIONS, default="noise", help="what to undo")
        add("--corruption-strength", type=cli.positive_float,
            help="noise: standard deviation; blur: sigma in px; downsample: factor "
            "(default: 0.1, 1.5 and 2)")  # fmt: skip
        add("--crops-per-image", type=cli.positive_int, default=8,
            help="random training crops taken of each image per epoch (--dataset folder)")  # fmt: skip
        add("--width", type=cli.positive_int, default=8, help="channels of the first level")
        add("--depth", type=cli.positive_int, default=2, help="U-Net levels below the first")
        add("--norm", choices=architecture.NORMS, default="batch", help="normalisation layers")
        add("--image-size", type=cli.image_size, help="side of the square training crops (32)")
        add("--pixel-loss", choices=architecture.PIXEL_LOSSES, default="l1", help="per-pixel loss")
        add("--perceptual-weights", default="auto",
            help="VGG16 weights of the perceptual loss: auto (ImageNet's, downloaded once into "
            "torch's cache; offline: no perceptual term), imagenet (the same, but offline is an "
            "error), random, or a .pt file")  # fmt: skip
        add("--perceptual-scale", type=cli.non_negative_float, default=0.1,
            help="weight of the perceptual term beside the pixel loss (0: off, VGG never built)")  # fmt: skip
        add("--image-log-every", type=cli.non_negative_int, default=100,
            help="optimizer steps between TensorBoard grids of input | output | target (0: never)")  # fmt: skip

    def build_data(self, args: argparse.Namespace) -> DataBundle:
        """The train and val pairs, corrupted on the fly."""
        return build_datasets(
            args.dataset, args.data_dir, args.image_size or DEFAULT_IMAGE_SIZE, args.seed,
            args.synthetic_size, args.corruption, args.corruption_strength, args.crops_per_image,
        )  # fmt: skip

    def resolved_flags(self, data: DataBundle) -> dict:
        """The side of the training crops (--image-size, else the default)."""
        return {"image_size": data.image_size}

    def checkpoint_extras(self, data: DataBundle) -> dict:
        """How images are fed: the training crops' side and the channels."""
        return {"preprocessing": data.preprocessing}

    def card_problem(self, card: dict) -> str | None:
        """The preprocessing a card records."""
        return preprocessing_problem(card.get("preprocessing"))

    def model_config(self, args: argparse.Namespace, data: DataBundle) -> dict:
        """The keyword arguments that build the model; checkpoints keep them to rebuild it."""
        return {
            "in_channels": data.in_channels,
            "out_channels": data.in_channels,
            "width": args.width,
            "depth": args.depth,
            "norm": args.norm,
        }

    def build_criterion(self, args: argparse.Namespace) -> nn.Module:
        """Pixel loss plus, when --perceptual-scale > 0, the VGG16 perceptual term.

        auto downloads ImageNet's VGG16 weights (528 MB, once) into torch's cache when the
        network answers within seconds; offline it trains with the pixel loss alone.
        """
        weights, scale = args.perceptual_weights, args.perceptual_scale
        if scale > 0 and weights == "auto":
            # Rank 0 downloads first; the others then find the file in the cache they share.
            # The smoke test stays quick and offline: it takes the weights only if cached.
            def fetch() -> bool:
                return architecture.fetch_imagenet_weights(download=not args.smoke_test)

            if on_main_process(fetch) and fetch():
                weights = "imagenet"
            else:
                tqdm.write(
                    "perceptual loss off: the ImageNet VGG16 weights are not in torch's cache and "
                    "could not be downloaded (offline?); training with the pixel loss"
                )
                scale = 0.0
        elif weights not in ("imagenet", "random", "auto") and not Path(weights).is_file():
            raise UserError(
                f"--perceptual-weights {weights} is not a file; give a VGG16 state dict file, "
                "or one of auto, imagenet, random"
            )
        return architecture.RestorationLoss(
            args.pixel_loss, scale, None if weights == "random" else weights
        )

    def batch_sums(
        self, corrupted: torch.Tensor, output: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Summed over the batch's images: the L1 error, PSNR and SSIM of the outputs, and of the
        corrupted inputs (the baseline a model must beat). Outputs are clipped to [0, 1] first,
        as a saved image would be (float32: MPS has no float64)."""
        output = output.float().clamp(0.0, 1.0)
        return {
            "loss": (output - target).abs().flatten(1).mean(dim=1).sum(),
            "psnr": psnr(output, target).sum(),
            "ssim": ssim(output, target).sum(),
            "psnr_input": psnr(corrupted, target).sum(),
            "ssim_input": ssim(corrupted, target).sum(),
        }

    def metrics(self, sums: dict[str, torch.Tensor], samples: int) -> dict[str, float]:
        """The means over the images: loss (L1), PSNR, SSIM, and the inputs' PSNR and SSIM."""
        return {name: total.item() / samples for name, total in sums.items()}

    def describe(self, metrics: dict) -> str:
        """The validation scores in the line train.py prints after each epoch."""
        return (
            f"val loss {metrics['loss']:.4f}  PSNR {metrics['psnr']:.2f} dB (input "
            f"{metrics['psnr_input']:.2f})  SSIM {metrics['ssim']:.4f} (input {metrics['ssim_input']:.4f})"
        )

    def describe_best(self, value: float) -> str:
        """The best value of BEST_METRIC, as the end-of-run summary names it."""
        return f"val PSNR: {value:.2f} dB"

    def preview(self, data: DataBundle) -> torch.Tensor:
        """A grid of training pairs: corrupted above, clean below."""
        return preview_grid(data.train)

    def log_step_images(
        self,
        writer: SummaryWriter,
        step: int,
        batch: tuple[torch.Tensor, ...],
        args: argparse.Namespace,
    ) -> None:
        """Every --image-log-every steps, a grid of input | output | target (the copy to the host
        syncs the device, so only every n steps)."""
        if args.image_log_every and step % args.image_log_every == 0:
            images, outputs, targets = batch
            grid = comparison_grid(images, outputs, targets)
            writer.add_image("train/input_output_target", grid, step)

    def add_eval_flags(self, parser: argparse.ArgumentParser) -> None:
        """test.py's flags of this task."""
        add = parser.add_argument
        add("--image-size", type=cli.image_size, help="default: the checkpoint's")
        add("--corruption", choices=CORRUPTIONS, help="default: the checkpoint's")
        add("--corruption-strength", type=cli.positive_float, help="default: the checkpoint's")
        add("--save-samples", type=Path, help="write input | output | target PNGs to this folder")

    def evaluation_hook(self, args: argparse.Namespace):
        """With --save-samples, a batch hook that saves PNG grids of up to SAMPLES_PER_PNG images
        (rows: input, output, target), and the list of files it wrote."""
        saved: list[Path] = []
        if args.save_samples is None:
            return None, saved
        folder = args.save_samples
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(
                f"cannot create --save-samples {folder} ({error}); pick a writable folder"
            ) from None

        def save(corrupted: torch.Tensor, output: torch.Tensor, target: torch.Tensor) -> None:
            for start in range(0, corrupted.size(0), SAMPLES_PER_PNG):
                part = slice(start, start + SAMPLES_PER_PNG)
                path = folder / f"samples_{len(saved):04d}.png"
                save_image(comparison_grid(corrupted[part], output[part], target[part]), path)
                saved.append(path)

        return save, saved

    def report_lines(
        self, metrics: dict, settings: dict, data: DataBundle, saved: list[Path]
    ) -> list[str]:
        """test.py's lines above its JSON: the data, the scores and their baseline."""
        strength = settings["corruption_strength"]
        lines = [
            f"data        {settings['dataset']} val split, {metrics['samples']} images, "
            f"corruption {settings['corruption']}"
            + (f" {strength:g}" if strength is not None else " (default strength)"),
            f"PSNR        {metrics['psnr']:.2f} dB   input {metrics['psnr_input']:.2f} dB   "
            f"gain {metrics['psnr'] - metrics['psnr_input']:+.2f} dB",
            f"SSIM        {metrics['ssim']:.4f}     input {metrics['ssim_input']:.4f}",
        ]
        if saved:
            folder = saved[0].parent
            lines.append(
                f"samples     {len(saved)} PNG(s) in {folder} (rows: input, output, target)"
            )
        return lines

    def add_predict_flags(self, parser: argparse.ArgumentParser) -> None:
        """predict.py's flags of this task: where the restored images go, tiling, --corrupt."""
        add = parser.add_argument_group("task: image_to_image").add_argument
        add("--output-dir", type=Path, required=True,
            help="folder for the restored images (each keeps its name and sub-folder)")  # fmt: skip
        add("--tile", type=cli.positive_int,
            help="run images in overlapping tiles of this side (a multiple of 2**depth), "
            "--batch-size tiles at a time, blended seamlessly: for images too large for memory")  # fmt: skip
        add("--tile-overlap", type=cli.non_negative_int,
            help="pixels neighbouring tiles share (default: above twice the model's receptive "
            "radius, so tiles agree with the whole image)")  # fmt: skip
        add("--corrupt", action="store_true",
            help="apply the model's training corruption first and write it beside each result "
            "(NAME.corrupted.EXT): before and after, from clean images")  # fmt: skip

    def prediction_outputs(self, args: argparse.Namespace) -> list[Path]:
        """Folders predict.py writes into, left out of its input folders: --output-dir (a rerun
        into a folder under the inputs must not take the last run's restorations for inputs)."""
        return [args.output_dir]

    def prediction_reader(self, card: dict) -> ImageReader:
        """An image file as the model's input: RGB, (C, H, W) in [0, 1], any size (as in
        training)."""
        return ImageReader(v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]))

    def open_predictions(
        self, args: argparse.Namespace, card: dict, images: list[InputFile]
    ) -> Predictions:
        """predict.py's restorations, written to --output-dir (flags checked before any image)."""
        return prepare_predictions(args, card, images)

    def export_examples(self, card: dict) -> list[torch.Tensor]:
        """export.py's inputs: the first traces the model, each checks the exported file (a batch
        of 2 at the training side, then 1 and 3 at other heights and widths, multiples of the
        U-Net's 2**depth; seeded, so every export is checked alike)."""
        generator = torch.Generator().manual_seed(0)
        config, side = card["model_config"], card["preprocessing"]["image_size"]
        step = 2 ** config["depth"]
        shapes = [
            (2, side, side),
            (1, side + step, side + 2 * step),
            (3, side + 2 * step, side + step),
        ]
        return [
            torch.rand(n, config["in_channels"], h, w, generator=generator) for n, h, w in shapes
        ]


task = Restoration()
