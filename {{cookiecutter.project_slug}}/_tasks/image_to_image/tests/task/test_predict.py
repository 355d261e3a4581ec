"""predict.py for a restoration model: restored images of any size under --output-dir, tiles,
--corrupt, bad flags, and agreement with test.py's PSNR on the same images."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import save_image

from {{ cookiecutter.package_name }} import tiled_inference
from {{ cookiecutter.package_name }}.data import SyntheticScenes

from ..helpers import load_script, run_script

# The largest error 8-bit rounding makes in a value in [0, 1], and float32's share: forward
# passes of other batch sizes or tile layouts differ by about 1e-6 (measured), 1e-5 is plenty.
ROUNDING, FLOAT_SLACK = 0.5 / 255, 1e-5


@pytest.fixture(scope="module")
def predict_script():
    return load_script("predict")


@pytest.fixture(scope="module")
def blur_checkpoint(tiny_run, tmp_path_factory) -> Path:
    """The tiny run's best.pt as a deblurring model that is far from the identity: trained
    --corruption blur (a deterministic corruption, as test.py applies it), and its head (near
    zero after two epochs) re-drawn."""
    checkpoint = torch.load(tiny_run.run_dir / "checkpoints" / "best.pt", weights_only=True)
    checkpoint["args"]["corruption"] = "blur"
    generator = torch.Generator().manual_seed(0)
    head = checkpoint["model"]["head.weight"]
    checkpoint["model"]["head.weight"] = 0.1 * torch.randn(head.shape, generator=generator)
    path = tmp_path_factory.mktemp("deblur") / "deblur.pt"
    torch.save(checkpoint, path)
    return path


def write_noise_png(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> None:
    """A noise image of the given size and mode (RGB or L), its folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (height, width, 3) if mode == "RGB" else (height, width)
    pixels = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def pixels(path: Path) -> np.ndarray:
    """An image file's RGB values as integers."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int64)


def test_restored_images_keep_their_size_and_name_and_a_broken_file_fails_alone(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path
):
    inputs = tmp_path / "photos"
    write_noise_png(inputs / "odd.png", 53, 37)  # neither side a multiple of 4
    write_noise_png(inputs / "grey" / "scan.png", 64, 48, mode="L")
    write_noise_png(inputs / "wide.png", 96, 40)
    (inputs / "broken.png").write_bytes(b"not an image")
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    out_dir = tmp_path / "restored"
    code, out, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                "--checkpoint", best, str(inputs), "--output-dir", str(out_dir),
                                "--batch-size", "2")  # fmt: skip
    assert code == 1 and "3 image(s) restored, 1 failed" in err
    records = {Path(record["path"]).name: record for record in map(json.loads, out.splitlines())}
    assert set(records["broken.png"]) == {"path", "error"}
    assert "cannot read the image" in records["broken.png"]["error"]
    for name, size in (("odd.png", (53, 37)), ("grey/scan.png", (64, 48)), ("wide.png", (96, 40))):
        with Image.open(out_dir / name) as restored:
            assert restored.size == size and restored.mode == "RGB"
        record = records[Path(name).name]
        assert record["output"] == str(out_dir / name)
        assert (record["width"], record["height"]) == size
    assert sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.png")) == [
        "grey/scan.png", "odd.png", "wide.png"
    ]  # fmt: skip


def test_a_rerun_into_an_output_dir_inside_the_inputs_takes_no_output_for_an_input(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path
):
    write_noise_png(tmp_path / "photos" / "a.png", 40, 32)
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    out_dir = tmp_path / "photos" / "restored"
    for _ in range(2):  # the second run finds the first run's restored/a.png in photos/
        code, out, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                    "--checkpoint", best, str(tmp_path / "photos"),
                                    "--output-dir", str(out_dir))  # fmt: skip
        assert code == 0, err
        assert [json.loads(line)["output"] for line in out.splitlines()] == [str(out_dir / "a.png")]


def test_an_image_too_large_for_one_piece_fails_alone_and_names_tile(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path
):
    # A lower limit stands in for a 12000 x 12000 photo (which asked for 9 GB in one piece).
    monkeypatch.setattr(tiled_inference, "WHOLE_IMAGE_MAX_PIXELS", 40 * 32)
    write_noise_png(tmp_path / "in" / "large.png", 64, 48)
    write_noise_png(tmp_path / "in" / "small.png", 40, 32)
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    code, out, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                "--checkpoint", best, str(tmp_path / "in"),
                                "--output-dir", str(tmp_path / "out"))  # fmt: skip
    assert code == 1 and "1 image(s) restored, 1 failed" in err
    large, small = [json.loads(line) for line in out.splitlines()]
    assert large["error"] == (
        f"{tmp_path / 'in' / 'large.png'} is too large for one piece (64x48 px, more than "
        "1280 px): use --tile 1024"
    )
    assert small["output"] == str(tmp_path / "out" / "small.png")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["small.png"]


def test_tiled_prediction_writes_what_the_whole_image_gives(
    predict_script, blur_checkpoint, monkeypatch, capsys, tmp_path
):
    # The default overlap makes tiles exact up to float32 rounding (1e-6), far below half a
    # step of 8 bits: a written value can only differ where it sits within 1e-6 of a rounding
    # boundary, and then by one step.
    write_noise_png(tmp_path / "in" / "big.png", 150, 101)  # neither side a multiple of 4
    outputs = {}
    for name, flags in (("whole", []), ("tiled", ["--tile", "64"])):
        code, _, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                  "--checkpoint", str(blur_checkpoint), str(tmp_path / "in"),
                                  "--output-dir", str(tmp_path / name), *flags)  # fmt: skip
        assert code == 0
        outputs[name] = pixels(tmp_path / name / "big.png")
    assert "64 px tiles overlapping 48 px" in err and "approximate" not in err
    assert np.abs(outputs["tiled"] - outputs["whole"]).max() <= 1
    # The model changes the image a lot, so a tile that saw padding would show.
    assert np.abs(outputs["whole"] - pixels(tmp_path / "in" / "big.png")).mean() > 10
    _, _, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                           "--checkpoint", str(blur_checkpoint), str(tmp_path / "in"),
                           "--output-dir", str(tmp_path / "short"), "--tile", "64",
                           "--tile-overlap", "16")  # fmt: skip
    assert "(approximate: exact tiles need an overlap above 46 px)" in err


def test_corrupt_writes_the_corrupted_input_beside_and_the_same_in_any_batch(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path
):
    for number in range(3):
        write_noise_png(tmp_path / "in" / f"{number}.png", 40, 32, seed=number)
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")  # trained on --corruption noise
    for batch_size in ("1", "3"):
        code, _, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                  "--checkpoint", best, str(tmp_path / "in"), "--corrupt",
                                  "--output-dir", str(tmp_path / batch_size),
                                  "--batch-size", batch_size)  # fmt: skip
        assert code == 0 and "noise-corrupted" in err
    for number in range(3):
        clean = pixels(tmp_path / "in" / f"{number}.png")
        corrupted = [pixels(tmp_path / size / f"{number}.corrupted.png") for size in ("1", "3")]
        assert np.array_equal(*corrupted)  # noise seeded by the image, not by its batch
        assert np.abs(corrupted[0] - clean).mean() > 10  # sigma 0.1: about 20 levels
        assert (tmp_path / "1" / f"{number}.png").is_file()


def psnr_bounds(written: np.ndarray, clean: np.ndarray, rounding: float) -> tuple[float, float]:
    """The PSNR range (dB) of every float image that rounds to `written`: each value lies within
    `rounding` of its written value, so its error within that of the written error."""
    error = np.abs(written - clean) / 255
    largest = np.mean((error + rounding) ** 2)
    smallest = np.mean(np.clip(error - rounding, 0, None) ** 2)
    return -10 * math.log10(largest), -10 * math.log10(max(smallest, 1e-10))


def test_psnr_of_the_written_images_agrees_with_test_py(
    predict_script, blur_checkpoint, monkeypatch, capsys, tmp_path
):
    """test.py's PSNR on a folder's val images (clean, of the training size, so its centre crop
    is the whole image, blurred as in training) equals the PSNR of what predict.py --corrupt
    wrote for them, within what 8-bit rounding of the written PNGs can change."""
    scenes = SyntheticScenes(8, 32, "val", seed=3)  # the training size of the tiny run
    for split in ("train", "val"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for index in range(len(scenes)):
            save_image(scenes[index], tmp_path / "data" / split / f"{index}.png")
    _, out, _ = run_script(load_script("test"), "test.py", monkeypatch, capsys,
                           "--checkpoint", str(blur_checkpoint), "--dataset", "folder",
                           "--data-dir", str(tmp_path / "data"))  # fmt: skip
    evaluated = json.loads(out.splitlines()[-1])
    code, _, _ = run_script(predict_script, "predict.py", monkeypatch, capsys,
                            "--checkpoint", str(blur_checkpoint), str(tmp_path / "data" / "val"),
                            "--corrupt", "--output-dir", str(tmp_path / "out"),
                            "--batch-size", "3")  # fmt: skip
    assert code == 0 and evaluated["samples"] == len(scenes)
    bounds = [psnr_bounds(pixels(tmp_path / "out" / f"{index}.png"),
                          pixels(tmp_path / "data" / "val" / f"{index}.png"),
                          ROUNDING + FLOAT_SLACK)
              for index in range(len(scenes))]  # fmt: skip
    lowest, highest = (sum(side) / len(bounds) for side in zip(*bounds, strict=True))
    assert lowest <= evaluated["psnr"] <= highest
    assert highest - lowest < 1.0  # a bound that says something (about 0.4 dB here)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tile", "98"], "of 4 (the model's downsampling); give --tile 96 or 100"),
        (["--tile", "3"], "give --tile 96"),  # 4 would be refused next: too small
        (["--tile", "32"], "too small for the default --tile-overlap 48"),
        (["--tile", "48"], "give --tile 96 or more (a tile then adds as many new pixels"),
        (["--tile", "64", "--tile-overlap", "62"], "or an overlap of at most 60"),
        (["--tile-overlap", "8"], "--tile-overlap needs --tile"),
        (["--output-dir", "{inputs}"], "over the input"),
        (["--output-dir", "{inputs}/file.png/out"], "cannot create --output-dir"),
        (["--corrupt", "--output-dir", "{tmp}/out", "{tmp}/clash"], "would both be"),
    ],
    ids=[
        "not-a-multiple",
        "below-the-multiple",
        "smaller-than-the-overlap",
        "suggests-twice-the-overlap",
        "overlap-too-large",
        "overlap-without-tile",
        "output-dir-is-the-input",
        "output-dir-uncreatable",
        "corrupted-name-clash",
    ],
)
def test_bad_flags_end_with_one_sentence_exit_code_2_and_write_nothing(
    predict_script, tiny_run, monkeypatch, capsys, tmp_path, flags, message
):
    inputs = tmp_path / "photos"
    write_noise_png(inputs / "file.png", 40, 32)
    write_noise_png(tmp_path / "clash" / "a.png", 40, 32)
    write_noise_png(tmp_path / "clash" / "a.corrupted.png", 40, 32)
    flags = [flag.format(inputs=inputs, tmp=tmp_path) for flag in flags]
    clash = [flag for flag in flags if flag.endswith("clash")]  # an input folder, not a flag
    flags, sources = [flag for flag in flags if flag not in clash], clash or [str(inputs)]
    if "--output-dir" not in flags:
        flags += ["--output-dir", str(tmp_path / "out")]
    before = sorted(tmp_path.rglob("*"))
    contents = {path: path.read_bytes() for path in before if path.is_file()}
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    code, out, err = run_script(predict_script, "predict.py", monkeypatch, capsys,
                                "--checkpoint", best, *sources, *flags)  # fmt: skip
    assert code == 2 and out == ""
    error = err.strip()
    assert error.startswith("predict.py: error: ") and "\n" not in error and message in error
    assert sorted(tmp_path.rglob("*")) == before
    assert {path: path.read_bytes() for path in contents} == contents
