"""What the shared loop tests (test_training_loop.py) need that differs by task: a tiny model,
a batch with its plain loss, how far one batch overfits, and a folder of images."""

from pathlib import Path

import torch
from PIL import Image
from torch import nn

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)

from ..bad_input_cases import DAMAGED_PREPROCESSING

# The shared tests call task_cases.write_prediction_inputs: the image tasks' is one.
from ..image_cases import write_prediction_inputs as write_prediction_inputs

# Overfitting one batch of 16 for 40 steps (no label smoothing: its loss has a floor) ends
# below this share of the first loss.
OVERFIT_FLAGS = ["--label-smoothing", "0"]
OVERFIT_RATIO = 0.25
# Flags of this task that every tiny test run adds: a narrow network (the defaults download
# nothing).
TINY_RUN_FLAGS = ["--width", "8"]
# Metrics that count samples: equal, not just close, however processes split the validation set.
EXACT_METRICS = ("accuracy", "top5_accuracy")
# train.py flags that give the model no batch statistics: 2 processes then compute what 1 does.
NO_BATCH_STATISTICS_FLAGS = ["--norm", "group"]
# train.py flags that switch off random augmentation: a sample is then the same in any batch.
NO_AUGMENTATION_FLAGS = ("--no-hflip",)


# Model cards edited by hand: (dotted path, value, the problem the task's card_problem names).
DAMAGED_CARD_ENTRIES = {
    **DAMAGED_PREPROCESSING,
    "classes-not-a-list": ("classes", "cat", "classes is 'cat', not a list of names"),
    "no-classes": ("classes", [], "classes lists 0 names for a model of"),
    "a-class-too-many": ("classes", [f"class_{index}" for index in range(99)],
                         "classes lists 99 names for a model of"),
}  # fmt: skip


def group_norm_model() -> nn.Module:
    """A seeded tiny model with GroupNorm: no batch statistics, so micro-batches and one big
    batch are comparable."""
    torch.manual_seed(0)
    return architecture.{{ cookiecutter.__model_class }}(num_classes=3, width=4, norm="group")


def random_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and targets for group_norm_model."""
    return torch.randn(size, 3, 8, 8), torch.randint(0, 3, (size,))


def plain_criterion() -> nn.Module:
    """The task's loss at its simplest (a mean over the batch)."""
    return nn.CrossEntropyLoss()


def write_data_folder(root: Path) -> None:
    """A --dataset folder tree of 48 train and 48 val images in two classes, 6 batches of 8."""
    # Gradients at many angles: every crop and flip changes the pixels the model sees.
    for split in ("train", "val"):
        for label, name in enumerate(("a", "b")):
            (root / split / name).mkdir(parents=True)
            for number in range(24):
                image = Image.linear_gradient("L").rotate(15 * number + 90 * label).resize((40, 30))
                image.save(root / split / name / f"{number}.png")


def validation_image(root: Path) -> Path:
    """An input image of the validation split that write_data_folder(root) writes."""
    return root / "val" / "b" / "3.png"


def predict_flags(tmp_path: Path) -> list[str]:
    """predict.py's task flags that a run needs (a classifier's records go to stdout)."""
    return []


def write_class_folders(root, classes_per_split, sizes=((40, 30), (20, 50))):
    """Tiny ImageFolder tree with images of mixed sizes and modes (grayscale and RGB)."""
    for split, classes in classes_per_split.items():
        for class_index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for image_index, size in enumerate(sizes):
                mode = "L" if image_index % 2 else "RGB"
                color = 40 * class_index + 60 if mode == "L" else (200, 30 * class_index, 90)
                Image.new(mode, size, color).save(folder / f"{image_index}.png")


def write_skewed_folder(root, counts=(("a", 40), ("b", 4)), val_per_class=4) -> None:
    """A --dataset folder tree whose training classes hold `counts` images (val: a few each)."""
    for split in ("train", "val"):
        for label, (name, count) in enumerate(counts):
            (root / split / name).mkdir(parents=True)
            for number in range(count if split == "train" else val_per_class):
                image = Image.linear_gradient("L").rotate(7 * number + 90 * label).resize((20, 20))
                image.save(root / split / name / f"{number}.png")


def model_size_flags(size: int) -> list[str]:
    """train.py flags that build this task's model at another size (`size` channels wide: the
    shapes of its weights differ between sizes)."""
    return ["--width", str(size)]
