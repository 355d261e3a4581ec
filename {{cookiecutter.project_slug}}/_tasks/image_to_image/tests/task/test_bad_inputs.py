"""Every bad input a user can give: one sentence on stderr, exit code 2, nothing on disk changed."""

import pytest
import torch

from ..bad_input_cases import SHARED_CASES, PickledObject
from .task_cases import write_mixed_images


def missing_data_dir(tmp_path, run):
    return ["--dataset", "folder", "--data-dir", str(tmp_path / "nope")], "does not exist"


def empty_split(tmp_path, run):
    write_mixed_images(tmp_path / "data", sizes=((64, 64), (48, 40)))
    for image in (tmp_path / "data" / "val").rglob("*.png"):
        image.unlink()
    return ["--dataset", "folder", "--data-dir", str(tmp_path / "data")], "holds no images"


def image_smaller_than_the_crop(tmp_path, run):
    write_mixed_images(tmp_path / "data", sizes=((64, 64), (20, 12)))
    flags = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--batch-size", "2"]
    return flags, "is 20x12 px, smaller than --image-size 32"


def unreadable_image(tmp_path, run):
    write_mixed_images(tmp_path / "data", sizes=((64, 64), (48, 40)))
    (tmp_path / "data" / "train" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    flags = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--batch-size", "2"]
    return flags, "cannot read the image " + str(tmp_path / "data" / "train" / "broken.jpg")


def unreadable_image_in_a_worker(tmp_path, run):
    flags, message = unreadable_image(tmp_path, run)
    return [*flags, "--num-workers", "1"], message


def corruption_too_strong(tmp_path, run):
    flags = ["--corruption", "noise", "--corruption-strength", "3"]
    return flags, "--corruption-strength 3 does not suit --corruption noise"


# The tiny runs turn the perceptual term off (task_cases.TINY_RUN_FLAGS); a weights file is
# read only when it is on.
PERCEPTUAL_ON = ["--perceptual-scale", "0.1"]


def missing_perceptual_weights(tmp_path, run):
    flags = ["--perceptual-weights", str(tmp_path / "vgg16.pt")]
    return flags, "is not a file; give a VGG16 state dict file"


def foreign_perceptual_weights(tmp_path, run):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    flags = ["--perceptual-weights", str(tmp_path / "other.pt"), *PERCEPTUAL_ON]
    return flags, "does not hold vgg16 weights"


def text_file_as_perceptual_weights(tmp_path, run):
    (tmp_path / "vgg16.txt").write_text("garbage")
    flags = ["--perceptual-weights", str(tmp_path / "vgg16.txt"), *PERCEPTUAL_ON]
    return flags, f"--perceptual-weights {tmp_path / 'vgg16.txt'} is not a torch weights file"


def malicious_perceptual_weights(tmp_path, run):
    torch.save({"features.0.weight": PickledObject()}, tmp_path / "vgg16.pt")
    flags = ["--perceptual-weights", str(tmp_path / "vgg16.pt"), *PERCEPTUAL_ON]
    return flags, "holds Python objects other than tensors, so it was not loaded"


def corruption_changed_on_resume(tmp_path, run):
    flags = ["--resume", str(run / "checkpoints" / "last.pt"), "--epochs", "3"]
    return [*flags, "--corruption", "blur"], "--corruption blur differs"


CASES = [*SHARED_CASES, missing_data_dir, empty_split, image_smaller_than_the_crop,
         unreadable_image, unreadable_image_in_a_worker, corruption_too_strong,
         missing_perceptual_weights, foreign_perceptual_weights,
         text_file_as_perceptual_weights, malicious_perceptual_weights,
         corruption_changed_on_resume]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_is_one_sentence_exit_2_and_changes_nothing(case, bad_input_run):
    bad_input_run(case)
