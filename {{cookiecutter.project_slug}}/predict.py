"""Run a trained model on new inputs: files, folders (searched recursively) or glob patterns.

    python predict.py --checkpoint runs/<run>/checkpoints/best.pt photos/ more/*.jpg
    python predict.py --model model.onnx photos/        # a file export.py wrote

Inputs are fed as in evaluation (the model card of the checkpoint or exported file says how),
read by DataLoader workers and run in batches on --device. The task module says how an input
file is read, what a prediction is and where it goes. An input that cannot be read gets an
error record and the others go on: the exit code is 1 when any input failed, 2 for a bad flag
or model file, 0 otherwise.
"""

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

import {{ cookiecutter.package_name }}.engine as engine
from {{ cookiecutter.package_name }}.engine import cli
from {{ cookiecutter.package_name }}.input_files import find_inputs
from {{ cookiecutter.package_name }}.task import task

MODEL_SUFFIXES = (".pt2", ".onnx", ".safetensors")  # what export.py writes


def build_parser() -> cli.ArgumentParser:
    """Every flag: the inputs, the model, how to run it, and the task's outputs."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("inputs", nargs="+", metavar="INPUT", help=f"{task.INPUTS.noun} files, folders or globs")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="a .pt file train.py wrote")
    model.add_argument("--model", type=Path,
                       help=f"a file export.py wrote ({', '.join(MODEL_SUFFIXES)})")  # fmt: skip
    add("--batch-size", type=cli.positive_int, default=task.EVAL_BATCH_SIZE, help="inputs a batch")
    add("--num-workers", type=cli.num_workers, default=engine.DEFAULT_NUM_WORKERS,
        help="loader workers")  # fmt: skip
    add("--device", choices=engine.DEVICE_CHOICES, default="auto", help="device")
    add("--debug", action="store_true", help="show tracebacks of input errors")
    task.add_predict_flags(parser)
    return parser


def load_predictor(args: argparse.Namespace) -> engine.Predictor:
    """The model of --checkpoint or --model on --device, with its model card."""
    device = engine.select_device(args.device)
    if args.model is not None:
        return engine.exported_predictor(args.model, device, task)
    model, card = engine.load_checkpoint_model(args.checkpoint, task)
    return engine.eager_predictor(model, card, device)


def main(argv: list[str] | None = None) -> int:
    """Find the inputs, load the model, predict batch by batch, report; 1 if any input failed."""
    args = build_parser().parse_args(argv)
    predictor = load_predictor(args)
    inputs = find_inputs(args.inputs, task.INPUTS, skip=task.prediction_outputs(args))
    # The task checks its output flags here, before any input is read.
    with task.open_predictions(args, predictor.card, inputs) as predictions:
        loader = engine.build_prediction_loader(
            inputs,
            task.prediction_reader(predictor.card),
            args.batch_size,
            args.num_workers,
            pin_memory=predictor.device.type == "cuda",
        )
        source = args.model or args.checkpoint
        print(
            f"predicting {len(inputs)} {task.INPUTS.noun}(s) with {source} on "
            f"{predictor.device.type}",
            file=sys.stderr,
        )
        start = time.perf_counter()
        # A progress bar in a terminal; none in logs (disable=None: only on a TTY).
        progress = tqdm(loader, "predict", unit="batch", file=sys.stderr, leave=False, disable=None)
        for batch in progress:
            predictions.add(predictor, batch.to(predictor.device))
        seconds = time.perf_counter() - start
    rate = f"{len(inputs) / seconds:.1f} {task.INPUTS.noun}s/s"
    print(f"{predictions.summary()} ({rate})", file=sys.stderr)
    return 1 if predictions.failed else 0


if __name__ == "__main__":
    sys.exit(engine.run_cli(main, prog="predict.py", unwind_on_sigterm=True))
