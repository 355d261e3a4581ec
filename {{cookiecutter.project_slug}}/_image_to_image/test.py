"""Evaluate a checkpoint of {{ cookiecutter.__model_class }} on the validation split.

    python test.py --checkpoint runs/<run>/checkpoints/best.pt
    python test.py --checkpoint runs/<run>/checkpoints/best.pt --save-samples samples/

The data settings (data set, folder, image size, corruption) are the checkpoint's own unless
a flag overrides them. PSNR and SSIM are reported for the model's output and, as the
baseline it must beat, for the corrupted input itself. The last line printed is JSON, for
scripts: psnr, psnr_input, ssim, ssim_input, loss (mean L1 error), samples.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from torchvision.utils import save_image

# The model module under a fixed name, so no model_name answer can collide with a name here.
from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)
from {{ cookiecutter.package_name }}.data import (
    CORRUPTIONS,
    DATASETS,
    DEFAULT_NUM_WORKERS,
    TASK,
    build_datasets,
    comparison_grid,
)
from {{ cookiecutter.package_name }}.engine.checkpoint import (
    load_checkpoint,
    load_model_weights,
)
from {{ cookiecutter.package_name }}.engine.cli import (
    ArgumentParser,
    HelpFormatter,
    check_stored_values,
    image_size,
    num_workers,
    positive_float,
    positive_int,
    seed,
)
from {{ cookiecutter.package_name }}.engine.device import (
    DEVICE_CHOICES,
    select_device,
)
from {{ cookiecutter.package_name }}.engine.errors import (
    UserError,
    run_cli,
)
from {{ cookiecutter.package_name }}.engine.evaluation import evaluate
from {{ cookiecutter.package_name }}.engine.loader import build_loader

SAMPLES_PER_PNG = 8  # columns of a --save-samples grid: wide enough to compare, small to view
# Data settings read from the checkpoint's args unless given on the command line.
DATA_SETTINGS = (
    "dataset",
    "data_dir",
    "image_size",
    "synthetic_size",
    "seed",
    "corruption",
    "corruption_strength",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; data flags left unset fall back to the checkpoint's."""
    return build_parser().parse_args(argv)


def build_parser() -> ArgumentParser:
    """Every flag; the data flags default to None, meaning the checkpoint's value."""
    parser = ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=HelpFormatter,
    )
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True, help="a .pt file train.py wrote")
    add("--dataset", choices=DATASETS, help="default: the checkpoint's")
    add("--data-dir", type=Path, help="default: the checkpoint's")
    add("--image-size", type=image_size, help="default: the checkpoint's")
    add("--synthetic-size", type=positive_int, help="default: the checkpoint's")
    add("--seed", type=seed, help="default: the checkpoint's")
    add("--corruption", choices=CORRUPTIONS, help="default: the checkpoint's")
    add("--corruption-strength", type=positive_float, help="default: the checkpoint's")
    add("--save-samples", type=Path, help="write input | output | target PNGs to this folder")
    add("--batch-size", type=positive_int, default=64, help="evaluation batch")
    add("--num-workers", type=num_workers, default=DEFAULT_NUM_WORKERS, help="loader workers")
    add("--device", choices=DEVICE_CHOICES, default="auto", help="device")
    add("--debug", action="store_true", help="show tracebacks of input errors")
    return parser


def sample_writer(folder: Path):
    """A batch hook that saves PNG grids of up to SAMPLES_PER_PNG images (rows: input,
    output, target)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create --save-samples {folder} ({error}); pick a writable folder"
        ) from None
    written = []

    def save(corrupted: torch.Tensor, output: torch.Tensor, target: torch.Tensor) -> None:
        for start in range(0, corrupted.size(0), SAMPLES_PER_PNG):
            part = slice(start, start + SAMPLES_PER_PNG)
            path = folder / f"samples_{len(written):04d}.png"
            save_image(comparison_grid(corrupted[part], output[part], target[part]), path)
            written.append(path)

    return save, written


def main(argv: list[str] | None = None) -> int:
    """Load the checkpoint, rebuild its model and validation data, evaluate, report."""
    args = parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint, TASK)
    train_args = checkpoint["args"]
    # Settings taken from the checkpoint pass the flags' own checks: an edited one stops here.
    stored = {name: train_args[name] for name in DATA_SETTINGS if getattr(args, name) is None}
    check_stored_values(build_parser(), stored, args.checkpoint)
    settings = {
        name: getattr(args, name) if getattr(args, name) is not None else train_args[name]
        for name in DATA_SETTINGS
    }
    data = build_datasets(
        settings["dataset"],
        settings["data_dir"],
        settings["image_size"],
        settings["seed"],
        settings["synthetic_size"],
        settings["corruption"],
        settings["corruption_strength"],
    )
    model = architecture.{{ cookiecutter.__model_class }}(**checkpoint["model_config"])
    load_model_weights(model, checkpoint, args.checkpoint)
    device = select_device(args.device)
    model.to(device)
    loader = build_loader(
        data.val,
        args.batch_size,
        False,
        args.num_workers,
        settings["seed"],
        pin_memory=device.type == "cuda",
    )
    on_batch, written = sample_writer(args.save_samples) if args.save_samples else (None, [])
    metrics = evaluate(model, loader, device, on_batch)

    print(
        f"checkpoint  {args.checkpoint} (epoch {checkpoint['state']['epoch']}, "
        f"step {checkpoint['state']['global_step']})"
    )
    strength = settings["corruption_strength"]
    print(
        f"data        {settings['dataset']} val split, {metrics['samples']} images, "
        f"corruption {settings['corruption']}"
        + (f" {strength:g}" if strength is not None else " (default strength)")
    )
    print(
        f"PSNR        {metrics['psnr']:.2f} dB   input {metrics['psnr_input']:.2f} dB   "
        f"gain {metrics['psnr'] - metrics['psnr_input']:+.2f} dB"
    )
    print(f"SSIM        {metrics['ssim']:.4f}     input {metrics['ssim_input']:.4f}")
    if written:
        print(
            f"samples     {len(written)} PNG(s) in {args.save_samples} (rows: input, output, target)"
        )
    print(
        json.dumps(
            {
                **metrics,
                "dataset": settings["dataset"],
                "device": device.type,
                "checkpoint": str(args.checkpoint),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="test.py"))
