"""Image files: checked before any run folder exists, decoded without clipping, and a file that
breaks while loading ends the script with its sentence, never a hang."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from {{ cookiecutter.package_name }}.engine.cli import (
    UserError,
    run_cli,
)
from {{ cookiecutter.package_name }}.image_files import (
    image_sizes,
    load_rgb_image,
)

from ..helpers import PROJECT_ROOT, TINY_RUN_FLAGS
from ..task import task_cases


def folder_flags(data_dir, out_dir) -> list[str]:
    return [*TINY_RUN_FLAGS, "--dataset", "folder", "--data-dir", str(data_dir),
            "--epochs", "1", "--out-dir", str(out_dir)]  # fmt: skip


def test_a_file_that_is_no_image_is_refused_before_any_run_folder_exists(train_script, tmp_path):
    task_cases.write_data_folder(tmp_path / "data")
    task_cases.validation_image(tmp_path / "data").write_text("garbage")
    with pytest.raises(UserError, match=r"cannot read the image .*3\.png.*remove or replace it"):
        train_script.main(folder_flags(tmp_path / "data", tmp_path / "runs"))
    assert not (tmp_path / "runs").exists()


def test_a_truncated_image_ends_train_py_with_its_sentence_while_workers_run(tmp_path):
    # Its header is sound, so only a DataLoader worker finds the damage, during validation.
    task_cases.write_data_folder(tmp_path / "data")
    damaged = task_cases.validation_image(tmp_path / "data")
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    flags = [*folder_flags(tmp_path / "data", tmp_path / "runs"), "--num-workers", "1"]
    finished = subprocess.run(
        [sys.executable, "train.py", *flags], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=300,  # the bug this guards against is a process that never exits
    )  # fmt: skip
    assert finished.returncode == 2, finished.stderr[-2000:]
    error = finished.stderr.strip().splitlines()[-1]
    assert error.startswith("train.py: error: cannot read the image ") and "3.png" in error


def ignore_sigterm_and_wait() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as DataLoader workers do
    time.sleep(600)


def test_run_cli_kills_worker_processes_on_an_error_exit():
    fork = multiprocessing.get_context("fork")  # as DataLoader workers start on Linux
    worker = fork.Process(target=ignore_sigterm_and_wait, daemon=True)
    worker.start()

    def failing_main(argv):
        raise UserError("the data broke")

    try:
        assert run_cli(failing_main, prog="train.py") == 2
        assert not worker.is_alive()
    finally:
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGKILL)


def test_image_sizes_come_from_the_headers_in_order(tmp_path):
    sizes = [(40, 36), (17, 90), (64, 64)]
    paths = []
    for number, size in enumerate(sizes):
        paths.append(tmp_path / f"{number}.jpg")
        Image.new("RGB", size).save(paths[-1])
    assert image_sizes(paths) == sizes


def test_16_bit_grayscale_is_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).round().astype(np.uint16).reshape(64, 64)
    Image.fromarray(values).save(tmp_path / "scan.png")
    loaded = np.asarray(load_rgb_image(tmp_path / "scan.png"))
    assert loaded.shape == (64, 64, 3) and loaded.dtype == np.uint8
    expected = np.rint(values / 257).astype(np.uint8)  # 65535 / 255 = 257 exactly
    assert np.array_equal(loaded[..., 0], expected) and np.array_equal(loaded[..., 2], expected)
    assert (loaded == 255).mean() < 0.01  # PIL's own convert("RGB") makes 99% of it 255


def test_float_and_32_bit_tiffs_are_scaled_from_their_range_to_8_bits(tmp_path):
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    Image.fromarray(ramp.astype(np.float32)).save(tmp_path / "float.tif")  # mode F: 0-1
    Image.fromarray((ramp * 65535).round().astype(np.int32)).save(tmp_path / "wide.tif")  # I
    expected = np.rint(ramp * 255)
    for name in ("float.tif", "wide.tif"):
        with Image.open(tmp_path / name) as image:
            assert image.mode == ("F" if name == "float.tif" else "I")
        loaded = np.asarray(load_rgb_image(tmp_path / name)).astype(np.float64)
        assert loaded.shape == (64, 64, 3)
        assert np.abs(loaded[..., 1] - expected).max() <= 1  # float32 rounding of the ramp


@pytest.mark.parametrize(
    ("pixels", "values"),
    [
        (np.full((8, 8), 1000.0, dtype=np.float32), "from 1000 to 1000, outside 0 (black) to 1 "),
        (np.full((8, 8), np.nan, dtype=np.float32), "from nan to nan"),
        (np.full((8, 8), 70000, dtype=np.int32), "outside 0 (black) to 65535 (white)"),
    ],
    ids=["float-above-1", "float-nan", "int-above-16-bits"],
)
def test_wide_values_with_no_8_bit_meaning_are_refused_in_one_sentence(tmp_path, pixels, values):
    Image.fromarray(pixels).save(tmp_path / "scan.tif")
    with pytest.raises(UserError) as refused:
        load_rgb_image(tmp_path / "scan.tif")
    message = str(refused.value)
    assert message.startswith(f"cannot use the image {tmp_path / 'scan.tif'}: its ")
    assert values in message and "save it as an 8- or 16-bit image" in message


def test_a_photo_taken_sideways_is_loaded_upright(tmp_path):
    # Stored 40 wide and 20 high, tagged "rotate 90 degrees clockwise to view" (orientation 6),
    # as phones save a portrait photo: it is 20 wide and 40 high as shown, and so as loaded.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # the left half white: after the turn, the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "portrait.jpg", exif=exif, quality=100)
    loaded = np.asarray(load_rgb_image(tmp_path / "portrait.jpg"))
    assert loaded.shape == (40, 20, 3)
    assert loaded[:15].mean() > 200 and loaded[25:].mean() < 50
