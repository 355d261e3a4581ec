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

# Overfitting one batch of 16 for 40 steps ends below this share of the first loss (denoising
# keeps an error floor).
OVERFIT_FLAGS: list[str] = []
OVERFIT_RATIO = 0.85
# Flags of this task that every tiny test run adds: a narrow U-Net and no perceptual term, so no test run
# downloads VGG16's weights (auto would, on a machine online without them in its cache);
# test_losses and test_training build the VGG term with random or local weights.
TINY_RUN_FLAGS = ["--width", "8", "--perceptual-scale", "0"]
# Metrics that count samples: equal, not just close, however processes split the validation set.
EXACT_METRICS = ()  # all of them average per-image floats, summed in another order under DDP
# train.py flags that give the model no batch statistics: 2 processes then compute what 1 does.
NO_BATCH_STATISTICS_FLAGS = ["--norm", "group"]
# train.py flags that switch off random augmentation: a sample is then the same in any batch.
NO_AUGMENTATION_FLAGS = ()  # none needed: data.py seeds each sample's crops and corruption


# Model cards edited by hand: (dotted path, value, the problem the task's card_problem names).
DAMAGED_CARD_ENTRIES = DAMAGED_PREPROCESSING


def group_norm_model() -> nn.Module:
    """A seeded tiny model with GroupNorm: no batch statistics, so micro-batches and one big
    batch are comparable."""
    torch.manual_seed(0)
    model = architecture.{{ cookiecutter.__model_class }}(width=4, depth=2, norm="group")
    nn.init.normal_(model.head.weight, std=0.1)  # zero would leave the lower layers no gradient
    return model


def random_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for group_norm_model."""
    return torch.rand(size, 3, 8, 8), torch.rand(size, 3, 8, 8)


def plain_criterion() -> nn.Module:
    """The task's loss at its simplest (a mean over the batch)."""
    return nn.L1Loss()


def write_data_folder(root: Path) -> None:
    """A --dataset folder tree of 6 train and 6 val images (training takes random crops of each)."""
    # Gradients at many angles: every crop and flip changes the pixels the model sees.
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        for number in range(6):
            image = Image.linear_gradient("L").rotate(15 * number).resize((48, 40))
            image.save(root / split / f"{number}.png")


def validation_image(root: Path) -> Path:
    """An input image of the validation split that write_data_folder(root) writes."""
    return root / "val" / "3.png"


def predict_flags(tmp_path: Path) -> list[str]:
    """predict.py's task flags that a run needs: where the restored images go."""
    return ["--output-dir", str(tmp_path / "restored")]


def write_mixed_images(root, sizes=((40, 30), (64, 64)), modes=("RGB", "L")) -> None:
    """Clean images of different sizes and modes in root/train and root/val."""
    for split in ("train", "val"):
        for index, ((width, height), mode) in enumerate(zip(sizes, modes, strict=True)):
            (root / split / "nested").mkdir(parents=True, exist_ok=True)
            image = Image.effect_noise((width, height), 40 + index * 10).convert(mode)
            image.save(root / split / "nested" / f"{index}.png")


def model_size_flags(size: int) -> list[str]:
    """train.py flags that build this task's model at another size (`size` channels wide: the
    shapes of its weights differ between sizes)."""
    return ["--width", str(size)]
