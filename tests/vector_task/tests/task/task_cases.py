"""What the shared machinery tests (tests/engine/) need that differs by task, for vectors."""

from pathlib import Path

import torch
from torch import nn

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)

# Overfitting one batch of 16 for 40 steps ends below this share of the first loss (a width-8
# MLP at lr 0.01 gets to about 0.35 of it).
OVERFIT_FLAGS: list[str] = []
OVERFIT_RATIO = 0.5
# Flags of this task that every tiny test run adds: a narrow network.
TINY_RUN_FLAGS = ["--width", "8"]
# Metrics that count samples: equal, not just close, however processes split the validation set.
EXACT_METRICS = ("accuracy",)
# train.py flags that give the model no batch statistics: 2 processes then compute what 1 does.
NO_BATCH_STATISTICS_FLAGS = ["--norm", "layer"]
# train.py flags that switch off random augmentation: there is none.
NO_AUGMENTATION_FLAGS = ()
# Model cards edited by hand: the task keeps no entries of its own.
DAMAGED_CARD_ENTRIES: dict = {}


def group_norm_model() -> nn.Module:
    """A seeded tiny model without batch statistics (LayerNorm)."""
    torch.manual_seed(0)
    return architecture.{{ cookiecutter.__model_class }}(16, 3, width=8, norm="layer")


def random_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets for group_norm_model."""
    return torch.randn(size, 16), torch.randint(0, 3, (size,))


def plain_criterion() -> nn.Module:
    """The task's loss at its simplest (a mean over the batch)."""
    return nn.CrossEntropyLoss()


def write_data_folder(root: Path) -> None:
    """A --dataset folder of 48 train and 48 val points in 3 classes, 6 batches of 8."""
    generator = torch.Generator().manual_seed(0)
    root.mkdir(parents=True)
    for split in ("train", "val"):
        labels = torch.arange(48) % 3
        points = labels[:, None] + 0.3 * torch.randn(48, 4, generator=generator)
        rows = [",".join([str(int(label)), *(f"{value:.4f}" for value in point.tolist())])
                for label, point in zip(labels, points, strict=True)]  # fmt: skip
        (root / f"{split}.csv").write_text("\n".join(rows) + "\n")


def write_prediction_inputs(folder: Path) -> int:
    """predict.py inputs in `folder`: vectors of the synthetic data's length; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(3):
        values = torch.linspace(-1, 1, 16) * (number + 1)
        (folder / f"{number}.txt").write_text(" ".join(f"{value:.3f}" for value in values))
    return 3


def predict_flags(tmp_path: Path) -> list[str]:
    """predict.py's task flags that a run needs: none (records go to stdout)."""
    return []


def model_size_flags(size: int) -> list[str]:
    """train.py flags that build this task's model at another size."""
    return ["--width", str(size)]
