"""What the shared loop tests (test_training_loop.py) need that differs by task: a tiny model,
a batch with its plain loss, how far one batch overfits, and a folder of images."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)

from ..bad_input_cases import DAMAGED_PREPROCESSING

# The shared tests call task_cases.write_prediction_inputs: the image tasks' is one.
from ..image_cases import write_prediction_inputs as write_prediction_inputs

# Overfitting one batch of 16 for 40 steps ends below this share of the first loss.
OVERFIT_FLAGS: list[str] = []
OVERFIT_RATIO = 0.5
# Flags of this task that every tiny test run adds: a narrow, shallow U-Net on small scenes
# (the defaults download nothing).
TINY_RUN_FLAGS = ["--width", "8", "--depth", "2", "--image-size", "32"]
# Metrics that count pixels: read off one summed integer confusion matrix, so equal, not just
# close, however processes split the validation set.
EXACT_METRICS = ("miou", "pixel_accuracy", "mean_class_accuracy")
# train.py flags that switch off random augmentation: none needed (synthetic scenes have none,
# and the folder's crops and flips are seeded per sample).
NO_AUGMENTATION_FLAGS = ()
# train.py flags that give the model no batch statistics: 2 processes then compute what 1 does.
NO_BATCH_STATISTICS_FLAGS = ["--norm", "group"]


# Model cards edited by hand: (dotted path, value, the problem the task's card_problem names).
DAMAGED_CARD_ENTRIES = {
    **DAMAGED_PREPROCESSING,
    "classes-not-a-list": ("classes", "cat", "classes is 'cat', not a list of names"),
    "no-classes": ("classes", [], "classes lists 0 names for a model of"),
    "a-class-too-many": ("classes", [f"class_{index}" for index in range(99)],
                         "classes lists 99 names for a model of"),
    "palette-too-short": ("palette", [0, 0, 0], "palette is [0, 0, 0], not 3 values from 0"),
    "palette-out-of-range": ("palette", [300] * 12, "not 3 values from 0 to 255 per class"),
    "ignore-index-text": ("ignore_index", "255", "ignore_index is '255', not a mask value"),
}  # fmt: skip


def group_norm_model() -> nn.Module:
    """A seeded tiny model with GroupNorm: no batch statistics, so micro-batches and one big
    batch are comparable."""
    torch.manual_seed(0)
    config = {"num_classes": 3, "width": 4, "depth": 2, "norm": "group"}
    return architecture.{{ cookiecutter.__model_class }}(**config)


def random_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for group_norm_model."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(size, 3, 8, 8, generator=generator)
    return images, torch.randint(0, 3, (size, 8, 8), generator=generator)


def plain_criterion() -> nn.Module:
    """The task's loss at its simplest (a mean over the batch's pixels)."""
    return nn.CrossEntropyLoss()


def write_pair(split_dir: Path, stem: str, image: Image.Image, mask: np.ndarray) -> None:
    """An image and its mask (an 8-bit index PNG) under split_dir/images and split_dir/masks."""
    (split_dir / "images").mkdir(parents=True, exist_ok=True)
    (split_dir / "masks").mkdir(parents=True, exist_ok=True)
    image.save(split_dir / "images" / f"{stem}.png")
    Image.fromarray(mask.astype(np.uint8)).save(split_dir / "masks" / f"{stem}.png")


def write_data_folder(root: Path, size: tuple[int, int] = (48, 40)) -> None:
    """A --dataset folder tree of 48 train and 6 val images (6 batches of 8 an epoch) with masks
    of 3 classes (the brightness of a rotated gradient in thirds) and a border of ignored
    pixels."""
    for split, count in (("train", 48), ("val", 6)):
        for number in range(count):
            grey = Image.linear_gradient("L").rotate(7.5 * number).resize(size)
            values = np.asarray(grey)
            mask = np.digitize(values, [85, 170])
            mask[:, :2] = 255  # an ignored band, as VOC's object borders
            write_pair(root / split, str(number), grey.convert("RGB"), mask)


def validation_image(root: Path) -> Path:
    """An input image of the validation split that write_data_folder(root) writes."""
    return root / "val" / "images" / "3.png"


def predict_flags(tmp_path: Path) -> list[str]:
    """predict.py's task flags that a run needs: where the masks go."""
    return ["--output-dir", str(tmp_path / "masks")]


def model_size_flags(size: int) -> list[str]:
    """train.py flags that build this task's model at another size (`size` channels wide: the
    shapes of its weights differ between sizes)."""
    return ["--width", str(size)]
