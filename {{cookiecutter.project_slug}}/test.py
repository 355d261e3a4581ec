"""Evaluate a checkpoint on the validation split.

    python test.py --checkpoint runs/<run>/checkpoints/best.pt

The data settings (data set, folder, and the task's own, such as an image size or a
corruption) are the checkpoint's own unless a flag overrides them, and the inputs are fed as in
training (the checkpoint records how). The task module builds the network the checkpoint names
and says what is measured and printed; the last line printed is JSON, for scripts: the
metrics, samples, device.
"""

import argparse
import json
import sys
from pathlib import Path

import {{ cookiecutter.package_name }}.engine as engine
from {{ cookiecutter.package_name }}.engine import cli
from {{ cookiecutter.package_name }}.task import task

# Data settings read from the checkpoint's args unless given on the command line (the task
# adds its own, task.EVAL_SETTINGS).
DATA_SETTINGS = ("dataset", "data_dir", "synthetic_size", "seed")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; data flags left unset fall back to the checkpoint's."""
    return build_parser().parse_args(argv)


def build_parser() -> cli.ArgumentParser:
    """Every flag; the data flags default to None, meaning the checkpoint's value."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True, help="a .pt file train.py wrote")
    cli.add_data_flags(add, task, evaluating=True)  # --dataset, --data-dir, --synthetic-size
    add("--seed", type=cli.seed, help="default: the checkpoint's")
    task.add_eval_flags(parser)
    add(
        "--batch-size", type=cli.positive_int, default=task.EVAL_BATCH_SIZE, help="evaluation batch"
    )
    add(
        "--num-workers",
        type=cli.num_workers,
        default=engine.DEFAULT_NUM_WORKERS,
        help="loader workers",
    )
    add("--device", choices=engine.DEVICE_CHOICES, default="auto", help="device")
    add("--debug", action="store_true", help="show tracebacks of input errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Load the checkpoint, rebuild its model and validation data, evaluate, report."""
    args = parse_args(argv)
    checkpoint = engine.load_checkpoint(args.checkpoint, task.NAME)
    train_args = checkpoint["args"]
    names = (*DATA_SETTINGS, *task.EVAL_SETTINGS)
    # Settings taken from the checkpoint pass the flags' own checks: an edited one stops here.
    stored = {name: train_args[name] for name in names if getattr(args, name) is None}
    cli.check_stored_values(build_parser(), stored, args.checkpoint)
    settings = {
        name: train_args[name] if getattr(args, name) is None else getattr(args, name)
        for name in names
    }
    cli.check_data_dir_read(args.data_dir, settings["dataset"], task.DATASETS)
    recorded = {"recorded": engine.task_extras(checkpoint)}  # e.g. the input format it trained on
    data = task.build_eval_data(argparse.Namespace(**{**train_args, **settings, **recorded}))
    task.check_data(checkpoint, data)

    model = task.build_model(checkpoint["model_config"])
    # A run trained with --ema measured (and picked best.pt by) its average of the weights.
    weights = "ema" if checkpoint.get("ema") is not None else "model"
    engine.load_model_weights(model, checkpoint, args.checkpoint, weights)
    device = engine.select_device(args.device)
    model.to(device)
    loader = engine.build_loader(
        data.val,
        args.batch_size,
        False,
        args.num_workers,
        settings["seed"],
        pin_memory=device.type == "cuda",
    )
    on_batch, saved = task.evaluation_hook(args)
    metrics = task.evaluate(model, loader, device, on_batch)

    state = checkpoint["state"]
    described = "EMA weights, " if weights == "ema" else ""
    print(
        f"checkpoint  {args.checkpoint} ({described}epoch {state['epoch']}, "
        f"step {state['global_step']})"
    )
    for line in task.report_lines(metrics, settings, data, saved):
        print(line)
    print(
        json.dumps(
            {
                **metrics,
                "dataset": settings["dataset"],
                "device": device.type,
                "checkpoint": str(args.checkpoint),
                "weights": weights,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(engine.run_cli(main, prog="test.py", unwind_on_sigterm=True))
