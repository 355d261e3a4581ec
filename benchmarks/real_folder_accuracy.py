"""Acceptance: a baked project learns real scanned digits from an ImageFolder tree.

    python benchmarks/real_folder_accuracy.py [--project PATH] [--epochs 40] [--min-accuracy 0.95]

1. bakes the template (`smoke_test=off`) into a temporary folder, unless --project is given;
2. writes scikit-learn's `load_digits` (1,797 real 8x8 scans, bundled, no download) as
   grayscale PNGs in DIR/{train,val}/<digit>/NNNN.png, a seeded stratified split;
3. runs the project's `train.py --dataset folder` as it is (its own augmentation, defaults),
   then `test.py` on checkpoints/best.pt (the gate) and last.pt (reported beside it);
4. prints two JSON lines (data set facts, then the result) and exits 1 when best.pt's
   accuracy is below --min-accuracy. train.py's own output goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ModuleNotFoundError:
    sys.exit(
        "real_folder_accuracy.py needs scikit-learn (its bundled digits): pip install scikit-learn"
    )

REPO = Path(__file__).resolve().parents[1]


def emit(record: dict[str, object]) -> None:
    """Print one JSON line to stdout."""
    print(json.dumps(record), flush=True)


def run(command: list[str], cwd: Path, env: dict[str, str], **kwargs: object) -> str:
    """Run a command that must succeed; return its stdout (empty when not captured)."""
    proc = subprocess.run(command, cwd=cwd, env=env, text=True, **kwargs)
    if proc.returncode != 0:
        sys.exit(
            f"failed (exit {proc.returncode}): {' '.join(command)}\n"
            f"{proc.stdout or ''}{proc.stderr or ''}"
        )
    return proc.stdout or ""


def bake(out: Path, python: str, env: dict[str, str], *answers: str) -> Path:
    """Generate a project (the defaults, or these `key=value` answers) into the new folder
    `out`; return the project's folder."""
    out.mkdir()
    command = [python, "-m", "cookiecutter", str(REPO), "--no-input", "-o", str(out)]
    run([*command, *answers, "smoke_test=off"], cwd=out, env=env, capture_output=True)
    (project,) = out.iterdir()
    return project


def split_digits(val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """The digits as uint8 images and labels, and a seeded stratified {train, val} split."""
    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)  # 0..16 -> 0..255
    train, val = train_test_split(
        np.arange(len(pixels)), test_size=val_fraction, stratify=digits.target, random_state=seed
    )
    return pixels, digits.target, {"train": train, "val": val}


def write_pngs(root: Path, pixels: np.ndarray, labels: np.ndarray, splits: dict, size: int) -> None:
    """Write each split's images as `size` x `size` grayscale PNGs in ImageFolder layout."""
    for split, indices in splits.items():
        for index in indices:
            folder = root / split / str(labels[index])
            folder.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels[index])  # uint8 2-D: mode "L"
            image.resize((size, size), Image.Resampling.NEAREST).save(folder / f"{index:04d}.png")


def write_digits(root: Path, size: int, val_fraction: float, seed: int) -> dict[str, object]:
    """Write the digits as `size` x `size` grayscale PNGs in ImageFolder layout; return facts."""
    pixels, labels, splits = split_digits(val_fraction, seed)
    write_pngs(root, pixels, labels, splits, size)
    classes = sorted({str(label) for label in labels}, key=int)
    return {"data": "sklearn load_digits", "dir": str(root), "png_size": size,
            "n_train": len(splits["train"]), "n_val": len(splits["val"]),
            "classes": classes}  # fmt: skip


def torch_version(python: str, env: dict[str, str]) -> str:
    """The torch version installed for `python`, read without importing torch."""
    code = "import importlib.metadata as m; print(m.version('torch'))"
    return run([python, "-c", code], cwd=REPO, env=env, capture_output=True).strip()


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--project", type=Path, help="a baked project to use instead of baking one")
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch")
    parser.add_argument("--epochs", type=int, default=40, help="train.py --epochs")
    parser.add_argument("--image-size", type=int, default=32, help="train.py --image-size")
    parser.add_argument("--png-size", type=int, default=32,
                        help="side of the written PNGs (8: the scans as they are)")  # fmt: skip
    parser.add_argument("--val-fraction", type=float, default=0.2, help="held-out share")
    parser.add_argument("--seed", type=int, default=0, help="split seed and train.py --seed")
    parser.add_argument("--min-accuracy", type=float, default=0.95, help="pass mark")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="last flag: everything after it goes to train.py as is")  # fmt: skip
    return parser.parse_args()


def run_train(
    project: Path, python: str, flags: dict, extra: list[str], env: dict[str, str]
) -> float:
    """Run train.py with --flag value pairs and extra arguments (its output to stderr).

    Returns the seconds it took.
    """
    command = [python, "train.py"]
    for flag, value in flags.items():
        command += [f"--{flag}", str(value)]
    start = time.perf_counter()
    run([*command, *extra], cwd=project, env=env, stdout=sys.stderr)
    return time.perf_counter() - start


def run_test(project: Path, python: str, checkpoint: Path, env: dict[str, str]) -> dict:
    """test.py's JSON metrics for one checkpoint."""
    output = run([python, "test.py", "--checkpoint", str(checkpoint)],
                 cwd=project, env=env, capture_output=True)  # fmt: skip
    return json.loads(output.strip().splitlines()[-1])


def scratch_env(root: Path) -> dict[str, str]:
    """The environment for bakes and runs under the scratch folder `root`."""
    config = root / "cookiecutter.yaml"  # keep cookiecutter's replay files out of $HOME
    config.write_text(f"cookiecutters_dir: {root}\nreplay_dir: {root}\n")
    return {**os.environ, "COOKIECUTTER_CONFIG": str(config), "PYTHONDONTWRITEBYTECODE": "1"}


def train_and_test(
    project: Path, data_dir: Path, args: argparse.Namespace, env: dict[str, str]
) -> tuple[float, dict[str, dict]]:
    """Run train.py (its output to stderr), then test.py on best.pt and last.pt.

    Returns the training seconds and test.py's JSON metrics per checkpoint name.
    """
    flags = {"dataset": "folder", "data-dir": data_dir, "image-size": args.image_size,
             "epochs": args.epochs, "seed": args.seed, "out-dir": data_dir.parent / "runs",
             "run-name": "digits"}  # fmt: skip
    seconds = run_train(project, args.python, flags, args.train_args, env)
    checkpoints = flags["out-dir"] / "digits" / "checkpoints"
    metrics = {name: run_test(project, args.python, checkpoints / f"{name}.pt", env)
               for name in ("best", "last")}  # fmt: skip
    return seconds, metrics


def main() -> int:
    """Bake, write the data, train, test, report."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="real-folder-") as tmp:
        root = Path(tmp)
        env = scratch_env(root)
        project = args.project.resolve() if args.project else bake(root / "bake", args.python, env)
        emit(write_digits(root / "digits", args.png_size, args.val_fraction, args.seed))
        train_seconds, metrics = train_and_test(project, root / "digits", args, env)

    best, last = metrics["best"], metrics["last"]
    passed = best["accuracy"] >= args.min_accuracy
    emit({
        "accuracy": best["accuracy"], "loss": round(best["loss"], 4), "samples": best["samples"],
        "last_accuracy": last["accuracy"], "min_accuracy": args.min_accuracy, "ok": passed,
        "train_seconds": round(train_seconds, 1), "epochs": args.epochs,
        "image_size": args.image_size, "train_args": args.train_args, "device": best["device"],
        "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "torch": torch_version(args.python, env),
    })  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
