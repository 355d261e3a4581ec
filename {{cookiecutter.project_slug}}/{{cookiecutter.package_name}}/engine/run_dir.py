"""The run folder: one per run, never overwritten, holding the args it was started with."""

import argparse
import json
import time
from pathlib import Path

from .errors import UserError


def create_run_dir(out_dir: str | Path, run_name: str | None) -> Path:
    """Make `<out_dir>/<run_name or timestamp>/`; an existing folder is an error, not overwritten."""
    out_dir = Path(out_dir)
    if run_name:
        run_dir = out_dir / run_name
        if run_dir.exists():
            last = run_dir / "checkpoints" / "last.pt"
            hint = f"continue it with --resume {last}" if last.is_file() else "delete it"
            raise UserError(
                f"run folder {run_dir} already exists; pick another --run-name, or {hint}"
            )
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir, suffix = out_dir / stamp, 1
        while run_dir.exists():  # two runs started within the same second
            run_dir, suffix = out_dir / f"{stamp}-{suffix}", suffix + 1
    try:
        (run_dir / "checkpoints").mkdir(parents=True)
    except OSError as error:
        raise UserError(
            f"cannot create the run folder {run_dir} ({error.strerror}); "
            "point --out-dir at a writable folder"
        ) from None
    return run_dir


def plain(value: object) -> object:
    """A flag's value as a plain JSON type (a path becomes a string)."""
    return str(value) if isinstance(value, Path) else value


def args_to_dict(args: argparse.Namespace) -> dict:
    """The parsed arguments as plain JSON types, as saved with the run and in checkpoints."""
    return {key: plain(value) for key, value in vars(args).items()}


def save_args(
    run_dir: Path, args: argparse.Namespace, stem: str = "args", **resolved: object
) -> None:
    """Write <stem>.json (args plus values resolved at start-up) and <stem>.txt, the str(args) line.

    A resumed run passes its own stem, so the args of the first start are never overwritten.
    """
    record = {**args_to_dict(args), **resolved}
    (run_dir / f"{stem}.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    (run_dir / f"{stem}.txt").write_text(f"{args}\n")
