"""Acceptance: a baked segmentation project learns real scanned digits, pixel by pixel.

    python benchmarks/segmentation_mosaics.py [--project PATH] [--epochs 10] [--min-miou 0.5]

1. bakes the template with `task=segmentation` (`smoke_test=off`) unless --project is given;
2. writes a --dataset folder made offline from scikit-learn's `load_digits` (1,797 real 8x8
   scans, bundled, no download): each image a 96 x 96 mosaic of 4 scans, each enlarged to
   20-32 px and pasted at a random place in its own cell of a 3 x 3 grid (no two overlap) on
   a noisy light background; its mask gives each inked
   pixel of a scan that scan's digit (classes 1-10: "0".."9") and the rest class 0
   ("background"); DIR/{train,val}/{images,masks}/NNNN.png, DIR/classes.txt. The scans of the
   val mosaics are not in any train mosaic (a seeded 80/20 split of the scans);
3. runs the project's `train.py --dataset folder` with its defaults, then `test.py` on
   checkpoints/best.pt;
4. prints two JSON lines (data set facts, then the result: mIoU, pixel accuracy, per-class
   IoU) and exits 1 when the mIoU is below --min-miou. train.py's own output goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from real_folder_accuracy import bake, emit, run_test, run_train, scratch_env, torch_version

try:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
except ModuleNotFoundError:
    sys.exit(
        "segmentation_mosaics.py needs scikit-learn (its bundled digits): pip install scikit-learn"
    )

MOSAIC_SIDE = 96
SCANS_PER_MOSAIC = 4
CELL = 32  # the mosaic is a 3 x 3 grid of cells; a scan goes into a cell of its own
SCAN_SIDES = (20, CELL)  # the smallest and largest side a pasted scan is enlarged to, in px
INK = 0.25  # a scan pixel at this share of full ink or more is the digit's; the rest background
CLASSES = ["background", *(str(digit) for digit in range(10))]


def paste(canvas, mask, scan: np.ndarray, digit: int, cell: int, rng) -> None:
    """Enlarge one scan (0-1 ink) to a random side, paste it at a random place in grid cell
    `cell`: dark ink on the canvas, and the digit's class where its ink is."""
    side = int(rng.integers(SCAN_SIDES[0], SCAN_SIDES[1] + 1))
    image = Image.fromarray((scan * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR)
    ink = np.asarray(image, dtype=np.float32) / 255
    row, column = divmod(cell, MOSAIC_SIDE // CELL)
    top, left = (CELL * place + int(rng.integers(0, CELL - side + 1)) for place in (row, column))
    window = (slice(top, top + side), slice(left, left + side))
    canvas[window] = np.minimum(canvas[window], 1 - ink)  # ink is dark on the light background
    mask[window][ink >= INK] = digit + 1


def mosaic(scans: np.ndarray, digits: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """One 8-bit grey mosaic of SCANS_PER_MOSAIC random scans and its index mask."""
    canvas = np.clip(0.85 + 0.08 * rng.standard_normal((MOSAIC_SIDE, MOSAIC_SIDE)), 0, 1)
    mask = np.zeros((MOSAIC_SIDE, MOSAIC_SIDE), dtype=np.uint8)
    cells = rng.choice((MOSAIC_SIDE // CELL) ** 2, SCANS_PER_MOSAIC, replace=False)
    chosen = rng.choice(len(scans), SCANS_PER_MOSAIC, replace=False)
    for index, cell in zip(chosen, cells, strict=True):
        paste(canvas, mask, scans[index], int(digits[index]), int(cell), rng)
    return (canvas * 255).round().astype(np.uint8), mask


def write_mosaics(root: Path, counts: dict[str, int], seed: int) -> dict[str, object]:
    """The --dataset folder: mosaics of each split's own scans, their masks, classes.txt."""
    digits = load_digits()
    scans = digits.images / 16  # 0..16 ink -> 0..1
    indices = {}
    indices["train"], indices["val"] = train_test_split(
        np.arange(len(scans)), test_size=0.2, stratify=digits.target, random_state=seed
    )
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for kind in ("images", "masks"):
            (root / split / kind).mkdir(parents=True)
        chosen = indices[split]
        for number in range(count):
            image, mask = mosaic(scans[chosen], digits.target[chosen], rng)
            Image.fromarray(image).save(root / split / "images" / f"{number:04d}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{number:04d}.png")  # mode L
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {"data": "sklearn load_digits mosaics", "dir": str(root), "side": MOSAIC_SIDE,
            "scans_per_mosaic": SCANS_PER_MOSAIC, **{f"n_{k}": v for k, v in counts.items()},
            "classes": len(CLASSES)}  # fmt: skip


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--project", type=Path, help="a baked segmentation project to use")
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch")
    parser.add_argument("--train-mosaics", type=int, default=800, help="training images")
    parser.add_argument("--val-mosaics", type=int, default=200, help="validation images")
    parser.add_argument("--epochs", type=int, default=10, help="train.py --epochs")
    parser.add_argument("--seed", type=int, default=0, help="data seed and train.py --seed")
    parser.add_argument("--min-miou", type=float, default=0.5, help="pass mark")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="last flag: everything after it goes to train.py as is")  # fmt: skip
    return parser.parse_args()


def main() -> int:
    """Bake, write the mosaics, train, test, report."""
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="segmentation-mosaics-") as tmp:
        root = Path(tmp)
        env = scratch_env(root)
        project = (args.project.resolve() if args.project
                   else bake(root / "bake", args.python, env, "task=segmentation"))  # fmt: skip
        data = root / "mosaics"
        counts = {"train": args.train_mosaics, "val": args.val_mosaics}
        emit(write_mosaics(data, counts, args.seed))
        flags = {"dataset": "folder", "data-dir": data, "epochs": args.epochs, "seed": args.seed,
                 "out-dir": root / "runs", "run-name": "mosaics"}  # fmt: skip
        seconds = run_train(project, args.python, flags, args.train_args, env)
        best = run_test(project, args.python, root / "runs/mosaics/checkpoints/best.pt", env)
    passed = best["miou"] >= args.min_miou
    emit({
        "miou": round(best["miou"], 4), "pixel_accuracy": round(best["pixel_accuracy"], 4),
        "mean_class_accuracy": round(best["mean_class_accuracy"], 4),
        "class_iou": {name: round(value, 4) for name, value in best.items()
                      if name.startswith("iou")},
        "samples": best["samples"], "min_miou": args.min_miou, "ok": passed,
        "train_seconds": round(seconds, 1), "epochs": args.epochs, "train_args": args.train_args,
        "device": best["device"], "cpu_count": os.cpu_count(), "machine": platform.machine(),
        "torch": torch_version(args.python, env),
    })  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
