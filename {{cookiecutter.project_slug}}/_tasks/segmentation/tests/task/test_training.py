import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from {{ cookiecutter.package_name }}.data import SYNTHETIC_CLASSES
from {{ cookiecutter.package_name }}.errors import UserError

from ..helpers import TINY_RUN_FLAGS, scalar_steps
from .task_cases import write_data_folder


def test_a_tiny_run_learns_and_its_checkpoint_keeps_classes_palette_and_ignore_value(tiny_run):
    assert tiny_run.losses[-1] < tiny_run.losses[0]
    checkpoint = torch.load(tiny_run.run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert checkpoint["classes"] == list(SYNTHETIC_CLASSES)
    assert len(checkpoint["palette"]) == 3 * len(SYNTHETIC_CLASSES)
    assert checkpoint["ignore_index"] == 255 and checkpoint["class_weights"] is None
    assert checkpoint["preprocessing"]["image_size"] == 32
    # each class's IoU is logged beside mIoU, once per epoch (6 steps each)
    assert scalar_steps(tiny_run.run_dir, "val/iou/background") == [6, 12]


def test_class_weights_auto_are_counted_once_and_kept_for_the_resume(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--class-weights", "auto", "--epochs", "2", "--max-steps", "2",
             "--out-dir", str(tmp_path), "--run-name", "weighted"]  # fmt: skip
    train_script.train(train_script.parse_args(flags))
    last = tmp_path / "weighted" / "checkpoints" / "last.pt"
    weights = torch.load(last, weights_only=True)["class_weights"]
    assert len(weights) == len(SYNTHETIC_CLASSES) and weights[0] < min(weights[1:])
    # The resume takes them from the checkpoint: its criterion weighs classes alike.
    args = train_script.parse_args(["--resume", str(last), "--max-steps", "0"])
    criterion = train_script.task.build_criterion(args)
    assert torch.equal(criterion.class_weights.cpu(), torch.tensor(weights, dtype=torch.float32))


def test_test_script_prints_a_table_of_each_classes_iou_and_pixels(tiny_run, test_script, capsys):
    checkpoint = tiny_run.run_dir / "checkpoints" / "best.pt"
    flags = ["--checkpoint", str(checkpoint), "--num-workers", "0", "--device", "cpu"]
    assert test_script.main(flags) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert abs(result["miou"] - tiny_run.best_metric) < 1e-9
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ")}
    assert list(rows) == list(SYNTHETIC_CLASSES)
    for name, (iou, _) in rows.items():
        expected = result.get(f"iou/{name}")
        assert iou == ("-" if expected is None else f"{expected:.4f}"), name
    # The synthetic masks ignore no pixel: every pixel of the 32 px val scenes is counted once.
    assert sum(int(pixels) for _, pixels in rows.values()) == result["samples"] * 32 * 32


def test_test_script_evaluates_a_folder_that_holds_only_a_val_split(
    train_script, test_script, tmp_path, capsys
):
    # Held-out data needs no train/: test.py reads the val split alone, its classes named as
    # the checkpoint names them (the folder has no classes.txt).
    write_data_folder(tmp_path / "data")
    flags = [*TINY_RUN_FLAGS, "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
             "--out-dir", str(tmp_path / "runs"), "--run-name", "folder"]  # fmt: skip
    assert train_script.main(flags) == 0
    shutil.copytree(tmp_path / "data" / "val", tmp_path / "held_out" / "val")
    results = []
    for data_dir in ("data", "held_out"):
        argv = ["--checkpoint", str(tmp_path / "runs" / "folder" / "checkpoints" / "best.pt"),
                "--data-dir", str(tmp_path / data_dir), "--num-workers", "0", "--device", "cpu"]  # fmt: skip
        capsys.readouterr()
        assert test_script.main(argv) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        results.append({key: value for key, value in result.items() if key != "data_dir"})
    assert results[0] == results[1] and results[0]["samples"] == 6
    # A classes.txt of fewer classes than the checkpoint's is refused as other classes, before
    # the masks are checked against it (their value 2 is no class of two).
    (tmp_path / "held_out" / "classes.txt").write_text("ground\nsky\n")
    with pytest.raises(UserError) as refused:
        test_script.main(argv)
    assert str(refused.value) == (
        "the checkpoint was trained on the classes ['class_0', 'class_1', 'class_2'], but this "
        "data has ['ground', 'sky']; evaluate it on matching data"
    )


def test_test_script_reads_masks_as_training_did(train_script, test_script, tmp_path, capsys):
    # Train masks hold 0, 1 and 255 (ignored); the val masks only 0 and 255, which alone would
    # look like black-and-white masks. The checkpoint keeps training's reading: 255 stays
    # ignored in test.py too.
    root = tmp_path / "data"
    write_data_folder(root)
    for split, relabel in (("train", {2: 1}), ("val", {1: 0, 2: 0})):
        for path in (root / split / "masks").iterdir():
            mask = np.array(Image.open(path))
            for old, new in relabel.items():
                mask[mask == old] = new
            Image.fromarray(mask).save(path)
    flags = [*TINY_RUN_FLAGS, "--dataset", "folder", "--data-dir", str(root),
             "--out-dir", str(tmp_path / "runs"), "--run-name", "two"]  # fmt: skip
    assert train_script.main(flags) == 0
    argv = ["--checkpoint", str(tmp_path / "runs" / "two" / "checkpoints" / "best.pt"),
            "--data-dir", str(root), "--num-workers", "0", "--device", "cpu"]  # fmt: skip
    capsys.readouterr()
    assert test_script.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("  ")]
    ignored = 6 * 40 * 2  # write_data_folder's 2 px ignored band, 6 val images of 40 rows
    assert sum(int(row[-1]) for row in rows) == 6 * 48 * 40 - ignored
    assert "binary" not in out


def test_logs_mask_grids_every_n_steps_and_a_confusion_matrix_each_epoch(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--epochs", "1", "--image-log-every", "4", "--out-dir",
             str(tmp_path), "--run-name", "grids"]  # fmt: skip
    train_script.train(train_script.parse_args(flags))
    events = EventAccumulator(str(tmp_path / "grids"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("train/image_mask_prediction")] == [4]
    # and after each epoch's validation, its confusion matrix (one epoch of 6 steps here)
    assert [e.step for e in events.Images("val/confusion_matrix")] == [6]
    assert "data/train_samples" in events.Tags()["images"]
