"""Export a checkpoint's network to a file that runs without this project's training code.

    python export.py --checkpoint runs/<run>/checkpoints/best.pt --format pt2
    python export.py --checkpoint runs/<run>/checkpoints/best.pt --format onnx --output model.onnx
    python export.py --checkpoint runs/<run>/checkpoints/best.pt --format safetensors

pt2: torch.export's program (torch.export.load runs it); onnx: an ONNX graph (onnxruntime runs
it); safetensors: the weights, and a .card.json beside them with the model config and
preprocessing.
The batch size (and, where the task says so, the image size) stays free. Each file carries the
checkpoint's model card, and is verified before it is kept: reloaded with its own runtime, run
on example batches of several sizes and compared with the checkpoint's network; above
--tolerance it is removed (exit code 1) and a file already at --output stays as it was; a file
there that is not an earlier export of the format is never replaced. onnx
and safetensors need the export extra: pip install -e ".[export]". The last line printed is
JSON, for scripts.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

import {{ cookiecutter.package_name }}.engine as engine
from {{ cookiecutter.package_name }}.engine import cli
from {{ cookiecutter.package_name }}.errors import UserError
from {{ cookiecutter.package_name }}.task import task

# Float32 outputs of one network computed by two runtimes differ by rounding: ~1e-6 on
# outputs of order 1, growing with the outputs (logits of 20 carry 20 times the rounding), so
# the tolerance scales with outputs above 1; a wrong graph or wrong weights differ by far more.
DEFAULT_TOLERANCE = 1e-4


def build_parser() -> cli.ArgumentParser:
    """Every flag."""
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--checkpoint", type=Path, required=True, help="a .pt file train.py wrote")
    add("--format", choices=engine.EXPORT_FORMATS, required=True, help="what to write")
    add("--output", type=Path,
        help="the file to write (default: the checkpoint's path with the format's suffix)")  # fmt: skip
    add("--tolerance", type=cli.non_negative_float, default=DEFAULT_TOLERANCE,
        help="largest difference from the checkpoint's outputs a file may have (absolute; "
        "relative to the largest output where outputs exceed 1)")  # fmt: skip
    add("--debug", action="store_true", help="show tracebacks of input errors")
    return parser


def output_path(output: Path | None, checkpoint: Path, fmt: str) -> Path:
    """--output, else the checkpoint's path with the format's suffix; refused when its suffix
    is not the format's (predict.py tells formats apart by it), its folder does not exist, or
    it would replace the checkpoint or any file but an earlier export of the format."""
    output = output or checkpoint.with_suffix(f".{fmt}")
    if output.resolve() == checkpoint.resolve():
        raise UserError(
            f"--output {output} is the checkpoint itself, which export.py will not replace; "
            f"give --output another name, e.g. {output.with_stem(output.stem + '-export')}"
        )
    if output.suffix != f".{fmt}":
        raise UserError(f"--output {output} does not end in .{fmt}; name the file *.{fmt}")
    if not output.parent.is_dir():
        raise UserError(
            f"--output {output}: the folder {output.parent} does not exist; create it first"
        )
    if output.is_dir():
        raise UserError(
            f"--output {output} is a folder; give a file path, e.g. {output}/model.{fmt}"
        )
    for path in engine.exported_files(output):
        engine.check_replaceable(path, fmt)
    return output


def varying_dims(examples: list[torch.Tensor]) -> list[int]:
    """The input dimensions whose size differs between the examples (the batch, and for a
    model of any image size its height and width): the exported file keeps them free."""
    return [dim for dim in range(examples[0].dim()) if len({e.shape[dim] for e in examples}) > 1]


def export_verified(args: argparse.Namespace, model: nn.Module, card: dict, output: Path) -> float:
    """Write the file beside --output, check it on the task's example batches (printing each
    one's difference) and move it onto --output; a VerificationError, nothing kept, when any
    difference exceeds --tolerance. Returns the largest difference."""
    examples = task.export_examples(card)  # the first one is traced
    with engine.staged_output(output, args.format) as staged:
        dynamic = varying_dims(examples)  # the file takes any size where the examples differ
        engine.write_export(args.format, model, card, examples[0], dynamic, staged)
        results = engine.verify_export(staged, model, examples, task)
        for inputs, (difference, scale) in zip(examples, results, strict=True):
            print(
                f"verified    batch {tuple(inputs.shape)}: max abs difference {difference:.2e} "
                f"(outputs up to {scale:.3g})"
            )
        worst = max(difference / max(1.0, scale) for difference, scale in results)
        if worst > args.tolerance:
            raise engine.VerificationError(
                f"the {args.format} file's outputs differ from the checkpoint's by up to "
                f"{worst:.2e} (relative to outputs above 1), above --tolerance "
                f"{args.tolerance:g}, so it was not kept; export to another format, or raise "
                "--tolerance if that is close enough"
            )
    return max(difference for difference, _ in results)


def main(argv: list[str] | None = None) -> int:
    """Load the checkpoint's network, write it in the format asked, verify it, keep it."""
    args = build_parser().parse_args(argv)
    engine.require_export_packages(args.format)
    model, card = engine.load_checkpoint_model(args.checkpoint, task)
    output = output_path(args.output, args.checkpoint, args.format)
    started = time.perf_counter()
    try:
        difference = export_verified(args, model, card, output)
    except engine.VerificationError as error:  # exit 1: the flags were fine, the file was not
        print(f"export.py: error: {error}", file=sys.stderr)
        return 1
    except engine.ExportInterruptedError as stop:  # 128 + the signal's number, as shells say
        print(f"export.py: stopped by {stop}; nothing was written", file=sys.stderr)
        return 128 + stop.signal_number
    seconds = time.perf_counter() - started
    written = ", ".join(map(str, engine.exported_files(output)))
    print(f"wrote       {written} ({seconds:.1f} s)")
    summary = {"format": args.format, "output": str(output), "max_abs_diff": difference,
               "tolerance": args.tolerance, "seconds": round(seconds, 3)}  # fmt: skip
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(engine.run_cli(main, prog="export.py", unwind_on_sigterm=True))
