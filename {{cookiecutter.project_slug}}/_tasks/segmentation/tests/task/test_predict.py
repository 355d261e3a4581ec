"""predict.py for a segmentation model: index PNGs of each input's size with the palette,
--overlay, --tile against the whole image, records in input order."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.package_name }}.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SyntheticScenes,
)
from {{ cookiecutter.package_name }}.image_files import ImageReader
from {{ cookiecutter.package_name }}.predictions import SegmentationInput

from ..helpers import load_script, run_script


@pytest.fixture(scope="module")
def predict_script():
    return load_script("predict")


def write_scene(path: Path, index: int, size: int = 64) -> None:
    """A synthetic scene (what the tiny run learnt on) as a PNG, its folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image, _ = SyntheticScenes(index + 1, size, "val").scene(index)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_the_transform_reads_a_file_as_the_normalised_image(tmp_path):
    write_scene(tmp_path / "scene.png", 0, size=40)
    reader = ImageReader(SegmentationInput(IMAGENET_MEAN, IMAGENET_STD))
    tensor = pickle.loads(pickle.dumps(reader))(tmp_path / "scene.png")  # as workers get it
    pixels = torch.from_numpy(np.array(Image.open(tmp_path / "scene.png"))).permute(2, 0, 1)
    mean, std = (
        torch.tensor(IMAGENET_MEAN)[:, None, None],
        torch.tensor(IMAGENET_STD)[:, None, None],
    )
    assert tensor.shape == (3, 40, 40)
    assert torch.allclose(tensor, (pixels / 255 - mean) / std, atol=1e-6)


def test_masks_are_index_pngs_of_each_inputs_size_with_overlays_and_records_in_order(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path
):
    write_scene(tmp_path / "in" / "b.png", 1, size=64)
    write_scene(tmp_path / "in" / "a.png", 2, size=64)
    Image.new("RGB", (37, 23), (200, 10, 10)).save(tmp_path / "in" / "c.jpg")
    checkpoint = tiny_run.run_dir / "checkpoints" / "best.pt"
    out_dir = tmp_path / "masks"
    code, out, _ = run_script(
        predict_script, "predict.py", monkeypatch, capsys, "--checkpoint", str(checkpoint),
        str(tmp_path / "in"), "--output-dir", str(out_dir), "--overlay",
    )  # fmt: skip
    assert code == 0
    found = records(out)
    assert [Path(record["path"]).name for record in found] == ["a.png", "b.png", "c.jpg"]
    card = torch.load(checkpoint, weights_only=True)
    for record, size in zip(found, [(64, 64), (64, 64), (37, 23)], strict=True):
        with Image.open(record["output"]) as mask:
            assert mask.mode == "P" and mask.size == size
            assert mask.getpalette()[: len(card["palette"])] == card["palette"]
            assert max(np.asarray(mask).flatten()) < len(card["classes"])
            classes = np.bincount(np.asarray(mask).flatten(), minlength=len(card["classes"]))
        fractions = record["fractions"]
        assert list(fractions) == card["classes"]
        assert [round(n / classes.sum(), 4) for n in classes] == list(fractions.values())
        with Image.open(record["overlay"]) as overlay:
            assert overlay.mode == "RGB" and overlay.size == size
    assert Path(found[2]["output"]).name == "c.png"


def test_tiles_agree_with_the_whole_image_on_a_512_px_image(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path
):
    # A 512 x 512 image of 64 px scenes side by side; the tiny run's U-Net (batch norm, depth 2)
    # with the default overlap leaves out each tile's receptive border: equal but for float
    # rounding, which may flip a pixel whose two best classes tie.
    tiles = [np.asarray(Image.fromarray(SyntheticScenes(64, 64, "val").scene(i)[0]
                                         .permute(1, 2, 0).numpy())) for i in range(64)]  # fmt: skip
    mosaic = np.concatenate([np.concatenate(tiles[r * 8 : r * 8 + 8], 1) for r in range(8)], 0)
    Image.fromarray(mosaic).save(tmp_path / "big.png")
    checkpoint = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    masks = {}
    for name, extra in (("whole", []), ("tiled", ["--tile", "128", "--batch-size", "4"])):
        code, out, _ = run_script(
            predict_script, "predict.py", monkeypatch, capsys, "--checkpoint", checkpoint,
            str(tmp_path / "big.png"), "--output-dir", str(tmp_path / name), *extra,
        )  # fmt: skip
        assert code == 0
        with Image.open(records(out)[0]["output"]) as mask:
            masks[name] = np.asarray(mask)
    assert masks["whole"].shape == (512, 512)
    assert (masks["whole"] == masks["tiled"]).mean() >= 0.99


def test_a_tile_off_the_models_grid_is_one_sentence(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path
):
    write_scene(tmp_path / "a.png", 0)
    code, _, err = run_script(
        predict_script, "predict.py", monkeypatch, capsys,
        "--checkpoint", str(tiny_run.run_dir / "checkpoints" / "best.pt"), str(tmp_path / "a.png"),
        "--output-dir", str(tmp_path / "masks"), "--tile", "130",
    )  # fmt: skip
    assert code == 2 and "--tile 130 is not a multiple of 4" in err
    assert not (tmp_path / "masks").exists()


@pytest.mark.parametrize(
    ("inputs", "output_dir", "expected"),
    [
        (["a.png"], "{in}", "would write {in}/a.png over the input"),
        (["a.png"], "{in}/a.png/out", "cannot create --output-dir"),
        (["a.png", "a.jpg"], "{tmp}/masks", "would both be {tmp}/masks/a.png (masks are PNGs"),
    ],
    ids=["over-an-input", "not-creatable", "two-images-one-mask"],
)
def test_a_bad_output_dir_is_one_sentence_before_any_mask_is_written(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path, inputs, output_dir, expected
):
    for name in inputs:
        write_scene(tmp_path / "in" / name, 0)
    before = {path: path.read_bytes() for path in (tmp_path / "in").iterdir()}
    places = {"in": str(tmp_path / "in"), "tmp": str(tmp_path)}
    code, out, err = run_script(
        predict_script, "predict.py", monkeypatch, capsys,
        "--checkpoint", str(tiny_run.run_dir / "checkpoints" / "best.pt"), str(tmp_path / "in"),
        "--output-dir", output_dir.format(**places),
    )  # fmt: skip
    assert code == 2 and expected.format(**places) in err and len(err.strip().splitlines()) == 1
    assert out == "" and not (tmp_path / "masks").exists()
    assert {path: path.read_bytes() for path in (tmp_path / "in").iterdir()} == before
