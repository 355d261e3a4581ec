import json
import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ..helpers import TINY_RUN_FLAGS, scalar_steps


def test_the_inputs_metrics_are_logged_beside_the_models(tiny_run):
    # The baseline a restoration must beat: PSNR and SSIM of the corrupted input itself.
    for tag in ("val/psnr_input", "val/ssim_input"):
        assert scalar_steps(tiny_run.run_dir, tag) == [6, 12], tag


def test_test_script_reports_psnr_of_model_and_input_as_json(
    tiny_run, test_script, capsys, tmp_path
):
    checkpoint = tiny_run.run_dir / "checkpoints" / "best.pt"
    samples = tmp_path / "samples"
    flags = ["--checkpoint", str(checkpoint), "--num-workers", "0", "--device", "cpu"]
    assert test_script.main([*flags, "--save-samples", str(samples), "--batch-size", "8"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("psnr", "psnr_input", "ssim", "ssim_input", "loss"):
        assert math.isfinite(result[key]), key
    assert result["psnr"] == pytest.approx(tiny_run.best_metric, rel=1e-5)
    assert result["psnr_input"] == pytest.approx(20.4, abs=0.5)  # noise of sigma 0.1
    assert result["samples"] == 19  # the val split: a fifth of --synthetic-size 96
    pngs = sorted(samples.glob("*.png"))
    assert len(pngs) == 3  # 19 images in batches of 8
    from PIL import Image

    with Image.open(pngs[0]) as grid:  # 3 rows (input, output, target) of 8 images of 32 px
        assert grid.size == (8 * 34 + 2, 3 * 34 + 2)


def test_image_grids_are_logged_every_image_log_every_steps(tiny_run, train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--epochs", "1", "--image-log-every", "4", "--out-dir",
             str(tmp_path), "--run-name", "grids"]  # fmt: skip
    train_script.train(train_script.parse_args(flags))
    events = EventAccumulator(str(tmp_path / "grids"), size_guidance={"images": 0})
    events.Reload()
    assert [e.step for e in events.Images("train/input_output_target")] == [4]
    assert "data/train_samples" in events.Tags()["images"]


def test_random_perceptual_weights_build_the_vgg_term(train_script):
    args = train_script.parse_args(["--perceptual-weights", "random", "--perceptual-scale", "0.5"])
    criterion = train_script.task.build_criterion(args)
    assert criterion.perceptual is not None and criterion.perceptual_scale == 0.5


def test_a_missing_perceptual_weights_file_is_one_sentence(train_script, tmp_path):
    args = train_script.parse_args(["--perceptual-weights", str(tmp_path / "vgg.pt")])
    with pytest.raises(
        train_script.engine.UserError, match="is not a file; give a VGG16 state dict"
    ):
        train_script.task.build_criterion(args)
