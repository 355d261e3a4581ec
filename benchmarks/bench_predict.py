"""Throughput: predict.py vs test.py's evaluation, on the same images and batch size.

    python benchmarks/bench_predict.py [--task classification|image_to_image|segmentation]
        [--project DIR]
        [--images 3000] [--image-size 64] [--batch-size 256] [--num-workers N] [--rounds 3]

1. bakes a project of --task, unless --project names one (of that task);
2. writes --images PNGs of the project's synthetic set as a --dataset folder tree (val holds
   them all; train a few), and trains a one-epoch run on it for a checkpoint;
3. runs test.py and predict.py on the same val images, in one process (imports paid once),
   taking turns in each round so machine noise hits both alike. A classifier's predict.py
   writes its records to a JSONL file; a restorer's writes every restored image as a PNG
   (test.py only computes PSNR/SSIM of them), a segmenter's every mask as an index PNG
   (test.py only counts them into its confusion matrix); restorer and segmenter see
   --image-size crops (test.py) or whole images (predict.py) of the same side.
Each script's images/s is its whole main() (checkpoint, data, loader workers, model, output);
prints one JSON line per round and a summary: the median ratio predict / test (target >= 0.9).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


SLUGS = {"classification": "image-classifier", "image_to_image": "image-restorer",
         "segmentation": "image-segmenter"}  # fmt: skip


def bake(out_dir: Path, task: str) -> Path:
    """A project of `task`, generated without its smoke step."""
    command = [sys.executable, "-m", "cookiecutter", str(REPO), "--no-input", "-o", str(out_dir)]
    env = {**os.environ, "HOME": str(out_dir)}  # keep cookiecutter's replay files out of ~
    answers = ["smoke_test=off", f"task={task}"]
    subprocess.run([*command, *answers], check=True, capture_output=True, env=env)
    return out_dir / SLUGS[task]


def load_script(project: Path, name: str):
    """A script of the project as a module (its package importable from the project root)."""
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))
    spec = importlib.util.spec_from_file_location(f"{name}_script", project / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(main, argv: list[str]) -> float:
    """Seconds that main(argv) takes, its printing swallowed; it must succeed."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(argv)
    if code:
        sys.exit(f"{argv} ended with exit code {code}")
    return time.perf_counter() - start


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=SLUGS, default="classification")
    parser.add_argument("--project", type=Path, help="a baked project (default: bake one)")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--image-size", type=int, default=64, help="side of the PNGs")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-workers", type=int, help="default: the project's")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    project = (args.project or bake(scratch / "bake", args.task)).resolve()
    os.chdir(project)
    train, test, predict = (load_script(project, name) for name in ("train", "test", "predict"))
    package = train.engine.__name__.split(".")[0]
    data = importlib.import_module(f"{package}.data")
    write_shapes(data, scratch / "shapes", args.images, args.image_size)
    common = ["--device", args.device, "--batch-size", str(args.batch_size)]
    if args.num_workers is not None:
        common += ["--num-workers", str(args.num_workers)]
    # A classifier resizes every image to 32 px in both scripts; a restorer and a segmenter
    # train on crops of the images' own side, so test.py's crop is the whole image predict.py
    # takes.
    side = "32" if args.task == "classification" else str(args.image_size)
    run_flags = ["--dataset", "folder", "--data-dir", str(scratch / "shapes"), "--epochs", "1",
                 "--image-size", side, "--out-dir", str(scratch / "runs"), "--run-name", "bench",
                 "--device", args.device]  # fmt: skip
    timed(train.main, run_flags)
    best = str(scratch / "runs" / "bench" / "checkpoints" / "best.pt")
    test_argv = ["--checkpoint", best, *common]
    outputs = {"classification": ["--output", str(scratch / "predictions.jsonl")],
               "image_to_image": ["--output-dir", str(scratch / "restored")],
               "segmentation": ["--output-dir", str(scratch / "masks")]}  # fmt: skip
    # A segmenter's val folder also holds the masks: predict.py reads the images only.
    val_images = scratch / "shapes" / "val" / ("images" if args.task == "segmentation" else "")
    predict_argv = ["--checkpoint", best, str(val_images), *common, *outputs[args.task]]
    ratios = []
    for round_index in range(args.rounds):
        test_rate = args.images / timed(test.main, test_argv)
        predict_rate = args.images / timed(predict.main, predict_argv)
        ratios.append(predict_rate / test_rate)
        print(json.dumps({"round": round_index, "test_images_s": round(test_rate, 1),
                          "predict_images_s": round(predict_rate, 1),
                          "ratio": round(ratios[-1], 3)}), flush=True)  # fmt: skip
    print(json.dumps({"bench": "predict_vs_test", "task": args.task, "images": args.images,
                      "image_size": args.image_size, "batch_size": args.batch_size,
                      "device": args.device, "cpus": os.cpu_count(),
                      "median_ratio": round(statistics.median(ratios), 3)}))  # fmt: skip


def write_shapes(data, root: Path, images: int, image_size: int) -> None:
    """root/{train,val}/ PNGs from the project's synthetic set: a classifier's shapes in class
    folders (pixels in [0, 1]), a restorer's clean scenes, a segmenter's scenes in images/ with
    their index masks in masks/."""
    from torchvision.utils import save_image

    for split, count in (("train", 60), ("val", images)):
        if hasattr(data, "SyntheticShapes"):
            shapes = data.SyntheticShapes(count, image_size, split, 0, (0.0,) * 3, (1.0,) * 3)
            samples = ((image, shapes.classes[label]) for image, label in shapes)
        elif hasattr(data, "SYNTHETIC_CLASSES"):  # a segmenter
            write_scenes_and_masks(data.SyntheticScenes(count, image_size, split, 0), root / split)
            continue
        else:
            scenes = data.SyntheticScenes(count, image_size, split, 0)
            samples = ((scenes[index], "") for index in range(count))
        for index, (image, folder_name) in enumerate(samples):
            folder = root / split / folder_name
            folder.mkdir(parents=True, exist_ok=True)
            save_image(image, folder / f"{index:05d}.png")


def write_scenes_and_masks(scenes, split_dir: Path) -> None:
    """A segmenter's split: images/NAME.png and masks/NAME.png (8-bit class indices)."""
    from PIL import Image

    for folder in ("images", "masks"):
        (split_dir / folder).mkdir(parents=True, exist_ok=True)
    for index in range(len(scenes)):
        image, mask = scenes.scene(index)
        name = f"{index:05d}.png"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(split_dir / "images" / name)
        Image.fromarray(mask.numpy().astype("uint8")).save(split_dir / "masks" / name)


if __name__ == "__main__":
    main()
