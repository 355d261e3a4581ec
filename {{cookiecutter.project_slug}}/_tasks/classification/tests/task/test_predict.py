"""predict.py for a classifier: its records (stdout JSON lines, CSV, JSONL) and agreement with
test.py's accuracy on the same images."""

import csv
import json
import math
import os
import stat
from pathlib import Path
from statistics import mean

import pytest
from PIL import Image
from torchvision.utils import save_image

from {{ cookiecutter.package_name }}.data import SyntheticShapes

from ..helpers import TINY_RUN_FLAGS, load_script, run_script

VAL_IMAGES = 36  # six of each synthetic shape


@pytest.fixture(scope="module")
def predict_script():
    return load_script("predict")


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory):
    """A --dataset folder of the synthetic shapes as PNGs (val: VAL_IMAGES), pixels in [0, 1]."""
    root = tmp_path_factory.mktemp("shapes")
    for split, count in (("train", 48), ("val", VAL_IMAGES)):
        shapes = SyntheticShapes(count, 32, split, seed=1, mean=(0.0,) * 3, std=(1.0,) * 3)
        for index in range(count):
            image, label = shapes[index]
            folder = root / split / shapes.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            save_image(image, folder / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(train_script, shapes_folder, tmp_path_factory):
    """A short run on the folder (its classes in folder order, as test.py will see them)."""
    flags = [*TINY_RUN_FLAGS, "--dataset", "folder", "--data-dir", str(shapes_folder),
             "--epochs", "2", "--out-dir", str(tmp_path_factory.mktemp("runs"))]  # fmt: skip
    return train_script.train(train_script.parse_args(flags))


def test_stdout_records_list_the_top_k_classes_most_probable_first(
    predict_script, tiny_run, shapes_folder, monkeypatch, capsys
):
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    code, out, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                "--checkpoint", best, str(shapes_folder / "val"), "--top-k", "3")  # fmt: skip
    assert code == 0 and "36 image(s) classified, 0 failed" in err
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == VAL_IMAGES
    for record in records:
        assert set(record) == {"path", "class", "probability", "top_k"}
        probabilities = [entry["probability"] for entry in record["top_k"]]
        assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
        best_entry = {"class": record["class"], "probability": record["probability"]}
        assert record["top_k"][0] == best_entry
    assert [record["path"] for record in records] == sorted(record["path"] for record in records)


def test_csv_and_jsonl_files_hold_the_same_records_and_the_failures(
    predict_script, tiny_run, shapes_folder, monkeypatch, capsys, tmp_path
):
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    inputs = [str(shapes_folder / "val" / "circle"), str(broken)]
    for name in ("p.csv", "p.jsonl"):
        code, out, _ = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                  "--checkpoint", best, *inputs, "--output", str(tmp_path / name),
                                  "--top-k", "50")  # fmt: skip
        assert code == 1 and out == ""
    with open(tmp_path / "p.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == len(lines) == 7  # six circles and the broken file
    assert rows[-1]["path"] == lines[-1]["path"] == str(broken)
    assert rows[-1]["class"] == "" and "cannot read the image" in rows[-1]["error"]
    assert set(lines[-1]) == {"path", "error"}
    for row, line in zip(rows[:-1], lines[:-1], strict=True):
        assert row["class"] == line["class"] and float(row["probability"]) == line["probability"]
        # --top-k above the class count lists every class once.
        assert row["top_k_classes"].split("|") == [entry["class"] for entry in line["top_k"]]
        assert len(line["top_k"]) == len(set(row["top_k_classes"].split("|"))) == 6


def test_a_failed_run_leaves_an_earlier_output_file_as_it_was(
    predict_script, tiny_run, shapes_folder, monkeypatch, capsys, tmp_path
):
    output = tmp_path / "p.csv"
    output.write_text("earlier results\n")
    code, _, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                              "--checkpoint", str(tmp_path / "missing.pt"),
                              str(shapes_folder / "val"), "--output", str(output))  # fmt: skip
    assert code == 2 and "does not exist" in err
    code, _, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                              "--checkpoint", str(tiny_run.run_dir / "checkpoints" / "best.pt"),
                              str(shapes_folder / "val"), "--output", str(tmp_path / "p.txt"))  # fmt: skip
    assert code == 2 and "neither .csv nor .jsonl" in err
    assert output.read_text() == "earlier results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["p.csv"]


def test_a_strip_too_long_to_resize_fails_alone_and_the_others_go_on(
    predict_script, tiny_run, shapes_folder, monkeypatch, capsys, tmp_path
):
    # 100 KB of pixels that resizing to a short side of 32 px would make 3,200,000 px long.
    Image.new("L", (100_000, 1)).save(tmp_path / "strip.png")
    circle = shapes_folder / "val" / "circle" / "000.png"
    code, out, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                "--checkpoint", str(tiny_run.run_dir / "checkpoints" / "best.pt"),
                                str(tmp_path / "strip.png"), str(circle))  # fmt: skip
    assert code == 1 and "1 image(s) classified, 1 failed" in err
    strip, classified = [json.loads(line) for line in out.splitlines()]
    assert strip["error"] == (
        f"cannot use the image {tmp_path / 'strip.png'} (100000x1 px: 3200000 px long at a "
        "short side of 32 px; crop it nearer to a square)"
    )
    assert classified["path"] == str(circle) and "class" in classified


def test_an_output_that_is_a_folder_is_refused_before_any_prediction(
    predict_script, tiny_run, shapes_folder, monkeypatch, capsys, tmp_path
):
    output = tmp_path / "records.csv"
    output.mkdir()
    code, out, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                "--checkpoint", str(tiny_run.run_dir / "checkpoints" / "best.pt"),
                                str(shapes_folder / "val"), "--output", str(output))  # fmt: skip
    assert code == 2 and out == "" and "predicting" not in err
    assert err.strip().endswith(
        f"--output {output} is a folder; name a file in it, such as {output / 'predictions.csv'}"
    )
    assert [path.name for path in tmp_path.rglob("*")] == ["records.csv"]  # no temporary file


def test_an_output_file_keeps_its_permissions_and_any_file_name_is_written(
    predict_script, tiny_run, shapes_folder, monkeypatch, capsys, tmp_path
):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    # A name in Latin-1, not UTF-8, as files copied from old systems have: é is the byte 0xE9.
    circle = shapes_folder / "val" / "circle" / "000.png"
    (inputs / os.fsdecode(b"caf\xe9.png")).write_bytes(circle.read_bytes())
    umask = os.umask(0o022)
    os.umask(umask)
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("earlier results\n")
    earlier.chmod(0o640)
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    for output, mode in ((earlier, 0o640), (tmp_path / "new.csv", 0o666 & ~umask)):
        flags = ["--checkpoint", best, str(inputs), "--output", str(output)]
        code, _, _ = run_script(predict_script, "predict.py", monkeypatch, capsys, *flags)
        assert code == 0
        assert stat.S_IMODE(output.stat().st_mode) == mode
        with open(output, newline="", encoding="utf-8") as file:  # UTF-8 throughout
            rows = list(csv.DictReader(file))
        assert [row["path"] for row in rows] == [str(inputs / "caf\\udce9.png")]


def test_predictions_agree_with_test_py_on_the_same_images(
    predict_script, folder_run, shapes_folder, monkeypatch, capsys
):
    """Same images, transform, weights and batch, so the same logits: test.py's accuracies
    exactly, and its loss from the probabilities of every class (--top-k 6)."""
    best = str(folder_run.run_dir / "checkpoints" / "best.pt")
    _, out, _ = run_script(load_script("test"), "test.py", monkeypatch, capsys,
                           "--checkpoint", best, "--batch-size", "64")  # fmt: skip
    evaluated = json.loads(out.splitlines()[-1])
    code, out, _ = run_script(predict_script, "predict.py", monkeypatch, capsys,
                              "--checkpoint", best, str(shapes_folder / "val"),
                              "--batch-size", "64", "--top-k", "6")  # fmt: skip
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and evaluated["samples"] == len(records) == VAL_IMAGES
    ranked = [[entry["class"] for entry in record["top_k"]] for record in records]
    truths = [Path(record["path"]).parent.name for record in records]
    pairs = list(zip(truths, ranked, strict=True))
    assert mean(truth == names[0] for truth, names in pairs) == evaluated["accuracy"]
    assert mean(truth in names[:5] for truth, names in pairs) == evaluated["top5_accuracy"]
    # Probabilities are written to 6 decimals: each log is off by at most ~0.5e-6 / p (p > 0.01).
    losses = [-math.log(next(e["probability"] for e in record["top_k"] if e["class"] == truth))
              for record, truth in zip(records, truths, strict=True)]  # fmt: skip
    assert mean(losses) == pytest.approx(evaluated["loss"], abs=1e-4)
