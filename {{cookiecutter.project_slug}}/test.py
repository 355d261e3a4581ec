"""Evaluate a checkpoint of {{ cookiecutter.__model_class }} on the validation split.

    python test.py --checkpoint runs/<run>/checkpoints/best.pt

The data settings (data set, folder, image size) are the checkpoint's own unless a flag
overrides them. The last line printed is JSON, for scripts: accuracy, top-5, loss (plain
cross-entropy, without the label smoothing of training), samples.
"""

import argparse
import json
import sys
from pathlib import Path

# The model module under a fixed name, so no model_name answer can collide with a name here.
from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)
from {{ cookiecutter.package_name }}.data import (
    DATASETS,
    DEFAULT_NUM_WORKERS,
    TASK,
    build_datasets,
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

# Data settings read from the checkpoint's args unless given on the command line.
DATA_SETTINGS = ("dataset", "data_dir", "image_size", "synthetic_size", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; data flags left unset fall back to the checkpoint's."""
    return build_parser().parse_args(argv)


def build_parser() -> ArgumentParser:
    """Every flag; the data flags default to None, meaning the checkpoint's value."""
    parser = ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a .pt file train.py wrote")
    parser.add_argument("--dataset", choices=DATASETS, help="default: the checkpoint's")
    parser.add_argument("--data-dir", type=Path, help="default: the checkpoint's")
    parser.add_argument("--image-size", type=image_size, help="default: the checkpoint's")
    parser.add_argument("--synthetic-size", type=positive_int, help="default: the checkpoint's")
    parser.add_argument("--seed", type=seed, help="default: the checkpoint's")
    parser.add_argument("--download", action="store_true", help="download a torchvision set")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="evaluation batch")
    parser.add_argument(
        "--num-workers", type=num_workers, default=DEFAULT_NUM_WORKERS, help="loader workers"
    )
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="device")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of input errors")
    return parser


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
        args.download,
        settings["seed"],
        settings["synthetic_size"],
    )
    if data.classes != checkpoint["classes"]:
        raise UserError(
            f"the checkpoint was trained on the classes {checkpoint['classes']}, "
            f"but this data has {data.classes}; evaluate it on matching data"
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
    metrics = evaluate(model, loader, device)

    print(
        f"checkpoint  {args.checkpoint} (epoch {checkpoint['state']['epoch']}, "
        f"step {checkpoint['state']['global_step']})"
    )
    print(
        f"data        {settings['dataset']} val split, {metrics['samples']} samples, "
        f"{len(data.classes)} classes"
    )
    print(
        f"accuracy    {metrics['accuracy']:.2%}   top-5 {metrics['top5_accuracy']:.2%}   "
        f"loss {metrics['loss']:.4f}"
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
