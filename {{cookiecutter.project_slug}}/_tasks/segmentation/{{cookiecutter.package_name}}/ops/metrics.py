"""Segmentation metrics from a confusion matrix of integer pixel counts (pure torch, any device).

Counts, not averages, are what is gathered: the matrices of two halves of the data add up to
the matrix of the whole, bit for bit, so a run on many processes (which sums them) scores
exactly what one process does. Every score is then read off the summed matrix.
"""

import torch


def confusion_matrix(
    predictions: torch.Tensor, targets: torch.Tensor, num_classes: int, ignore_index: int
) -> torch.Tensor:
    """A (C, C) int64 matrix of pixel counts: row = true class, column = predicted class.

    `predictions` and `targets` are (N, H, W) class indices in [0, C); pixels whose target is
    `ignore_index` are not counted. The matrix stays on the inputs' device (no sync).
    """
    cells = num_classes * num_classes
    # Each (true, predicted) pair becomes one number, true * C + predicted, and bincount
    # counts them all at once (without weights it is deterministic on every device). Ignored
    # pixels go to one extra bin, dropped after: cheaper than picking the others out first.
    pairs = torch.where(targets != ignore_index, targets * num_classes + predictions, cells)
    counts = torch.bincount(pairs.flatten(), minlength=cells + 1)[:cells]
    return counts.reshape(num_classes, num_classes)


def class_iou(matrix: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each class, float64 (C,): true positives over the pixels
    that are the class, are predicted as it, or both. NaN for a class absent from both."""
    matrix = matrix.double()
    true_positives = matrix.diagonal()
    union = matrix.sum(dim=0) + matrix.sum(dim=1) - true_positives
    return true_positives / union  # 0 / 0 is NaN: the class was never seen nor predicted


def class_accuracy(matrix: torch.Tensor) -> torch.Tensor:
    """The fraction of each class's pixels predicted as that class (its recall), float64 (C,);
    NaN for a class with no pixels in the truth."""
    matrix = matrix.double()
    return matrix.diagonal() / matrix.sum(dim=1)


def segmentation_scores(matrix: torch.Tensor) -> dict[str, float]:
    """The scores of a confusion matrix: mean IoU over the classes seen (in the truth or the
    predictions), pixel accuracy, and the mean accuracy over the classes in the truth."""
    matrix = matrix.double()
    return {
        "miou": class_iou(matrix).nanmean().item(),
        "pixel_accuracy": (matrix.trace() / matrix.sum()).item(),
        "mean_class_accuracy": class_accuracy(matrix).nanmean().item(),
    }


# A cell of the confusion-matrix image at share 1 (all of the row's pixels): dark blue; share 0
# is white, so a good model draws a dark diagonal on white.
FULL_CELL_RGB = (0.03, 0.19, 0.42)


def confusion_image(matrix: torch.Tensor, side: int = 256) -> torch.Tensor:
    """The confusion matrix as a (3, H, W) image in [0, 1] for TensorBoard, about `side` px a
    side: row = true class, column = predicted class, each cell shaded by its share of the
    row's pixels (a class's recall on the diagonal). Rows of classes absent from the truth stay
    white."""
    matrix = matrix.double()
    shares = (matrix / matrix.sum(dim=1, keepdim=True).clamp(min=1)).float().cpu()
    full = torch.tensor(FULL_CELL_RGB).view(3, 1, 1)
    image = 1 - shares.unsqueeze(0) * (1 - full)
    cell = max(1, side // matrix.size(0))
    return image.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)
