"""Transfer: fine-tuning from a model of other classes vs training from scratch, on few images.

    python benchmarks/transfer.py [--project PATH] [--shots 5 20] [--inits scratch pretrained]

1. bakes the template (`smoke_test=off`) into a temporary folder, unless --project is given;
2. splits scikit-learn's `load_digits` as real_folder_accuracy.py does (seeded, stratified
   80/20) and writes two ImageFolder trees: the source task, digits 0-4 (all of their
   training images), and per --shots value the target task, digits 5-9 with that many
   training images per class (a seeded draw) and all of their validation images;
3. trains the project's own model on the source task (`--source-epochs`);
4. per shots value trains on the target task twice with the same flags, so the same steps:
   from scratch, and from the source run's best.pt (`--pretrained PATH`: the backbone is
   loaded, the head re-initialised for the new classes); test.py scores both checkpoints
   (best.pt, and last.pt beside it) on the full 5-9 validation split;
5. prints JSON lines: the data, one per (shots, init) with accuracy and seconds, and a summary
   with the gain (pretrained minus scratch accuracy) per shots value. train.py's output goes
   to stderr. `--inits scratch` runs the baseline alone (for a project without --pretrained).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
from real_folder_accuracy import (
    bake,
    emit,
    run_test,
    run_train,
    scratch_env,
    split_digits,
    torch_version,
    write_pngs,
)

SOURCE_CLASSES, TARGET_CLASSES = range(0, 5), range(5, 10)
# Mirrored digits are other glyphs (README: flips cost 15-epoch accuracy), so every run skips them.
COMMON_FLAGS = ["--no-hflip"]


def parse_args() -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--project", type=Path, help="a baked project to use instead of baking one")
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch")
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 20],
                        help="training images per target class, one experiment each")  # fmt: skip
    parser.add_argument("--inits", nargs="+", choices=("scratch", "pretrained"),
                        default=["scratch", "pretrained"], help="target runs to make")  # fmt: skip
    parser.add_argument("--source-epochs", type=int, default=15, help="epochs on digits 0-4")
    parser.add_argument("--target-epochs", type=int, default=50, help="epochs on digits 5-9")
    parser.add_argument("--image-size", type=int, default=32, help="train.py --image-size")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="held-out share")
    parser.add_argument("--seed", type=int, default=0, help="split, draw and train.py --seed")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[],
                        help="last flag: the rest goes to every train.py run")  # fmt: skip
    return parser.parse_args()


def few_shot(indices: np.ndarray, labels: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """`shots` indices per class of `labels[indices]`, drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(indices[labels[indices] == label])[:shots]
              for label in np.unique(labels[indices])]  # fmt: skip
    return np.sort(np.concatenate(chosen))


def write_tasks(root: Path, shots: list[int], args: argparse.Namespace) -> dict[str, object]:
    """Write the source tree (root/source) and a target tree per shots value (root/shots_N)."""
    pixels, labels, splits = split_digits(args.val_fraction, args.seed)
    source = {name: split[np.isin(labels[split], SOURCE_CLASSES)] for name, split in splits.items()}
    target = {name: split[np.isin(labels[split], TARGET_CLASSES)] for name, split in splits.items()}
    write_pngs(root / "source", pixels, labels, source, args.image_size)
    for count in shots:
        train = few_shot(target["train"], labels, count, args.seed)
        splits = {**target, "train": train}
        write_pngs(root / f"shots_{count}", pixels, labels, splits, args.image_size)
    return {"data": "sklearn load_digits", "dir": str(root),
            "source_classes": list(SOURCE_CLASSES), "target_classes": list(TARGET_CLASSES),
            "n_source_train": len(source["train"]), "n_source_val": len(source["val"]),
            "n_target_val": len(target["val"]), "shots": shots}  # fmt: skip


def train_run(project: Path, data: Path, name: str, epochs: int, extra: list[str], env, args):
    """Train one run on the ImageFolder tree `data`; return its seconds and checkpoint folder."""
    flags = {"dataset": "folder", "data-dir": data, "image-size": args.image_size,
             "epochs": epochs, "seed": args.seed, "out-dir": data.parent / "runs",
             "run-name": name}  # fmt: skip
    seconds = run_train(project, args.python, flags, [*COMMON_FLAGS, *extra], env)
    return seconds, flags["out-dir"] / name / "checkpoints"


def train_source(project: Path, root: Path, env: dict[str, str], args) -> Path:
    """Train on digits 0-4, print its score; return its best.pt."""
    seconds, checkpoints = train_run(project, root / "source", "source", args.source_epochs,
                                     args.train_args, env, args)  # fmt: skip
    source = run_test(project, args.python, checkpoints / "best.pt", env)
    emit({"source_accuracy": source["accuracy"], "samples": source["samples"],
          "train_seconds": round(seconds, 1), "epochs": args.source_epochs})  # fmt: skip
    return checkpoints / "best.pt"


def target_result(project, root, count, init, source_best, env, args) -> dict[str, object]:
    """Train on `count` shots per class from `init` and score best.pt and last.pt."""
    extra = ["--pretrained", str(source_best)] if init == "pretrained" else []
    name = f"shots_{count}_{init}"
    data = root / f"shots_{count}"
    seconds, checkpoints = train_run(project, data, name, args.target_epochs,
                                     [*extra, *args.train_args], env, args)  # fmt: skip
    best, last = (run_test(project, args.python, checkpoints / f"{n}.pt", env)
                  for n in ("best", "last"))  # fmt: skip
    return {"shots": count, "init": init, "accuracy": best["accuracy"],
            "last_accuracy": last["accuracy"], "samples": best["samples"],
            "train_seconds": round(seconds, 1), "epochs": args.target_epochs,
            "device": best["device"]}  # fmt: skip


def main() -> int:
    """Bake, write the data, train the source model, train and score each target run."""
    args = parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="transfer-") as tmp:
        root = Path(tmp)
        env = scratch_env(root)
        project = args.project.resolve() if args.project else bake(root / "bake", args.python, env)
        emit(write_tasks(root, args.shots, args))
        source_best = None
        if "pretrained" in args.inits:
            source_best = train_source(project, root, env, args)
        for count in args.shots:
            for init in args.inits:
                results.append(target_result(project, root, count, init, source_best, env, args))
                emit(results[-1])
    emit({"gain": gains(results), "train_args": args.train_args, "cpu_count": os.cpu_count(),
          "machine": platform.machine(), "torch": torch_version(args.python, env)})  # fmt: skip
    return 0


def gains(results: list[dict]) -> dict[int, float]:
    """Per shots value with both runs: pretrained minus scratch accuracy (best.pt)."""
    accuracy = {(result["shots"], result["init"]): result["accuracy"] for result in results}
    return {
        shots: round(accuracy[shots, "pretrained"] - accuracy[shots, "scratch"], 4)
        for shots, init in accuracy
        if init == "scratch" and (shots, "pretrained") in accuracy
    }


if __name__ == "__main__":
    sys.exit(main())
