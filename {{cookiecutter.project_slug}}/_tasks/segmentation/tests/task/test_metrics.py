import math

import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from {{ cookiecutter.package_name }}.ops import (
    class_iou,
    confusion_image,
    confusion_matrix,
    segmentation_scores,
)

CLASSES, IGNORE = 5, 255


def random_batch(seed: int, classes: int = CLASSES, size=(4, 24, 32)):
    """Targets with ~10% ignore pixels, and predictions right about 60% of the time."""
    generator = torch.Generator().manual_seed(seed)
    targets = torch.randint(classes, size, generator=generator)
    targets[torch.rand(size, generator=generator) < 0.1] = IGNORE
    guesses = torch.randint(classes, size, generator=generator)
    right = torch.rand(size, generator=generator) < 0.6
    predictions = torch.where(right & (targets != IGNORE), targets, guesses)
    return predictions, targets


def test_the_matrix_counts_as_torchmetrics_does():
    predictions, targets = random_batch(0)
    reference = MulticlassConfusionMatrix(CLASSES, ignore_index=IGNORE)(predictions, targets)
    matrix = confusion_matrix(predictions, targets, CLASSES, IGNORE)
    assert matrix.dtype == torch.int64
    assert torch.equal(matrix, reference.long())
    assert matrix.sum() == (targets != IGNORE).sum()


def test_class_iou_and_miou_agree_with_torchmetrics_jaccard_index():
    predictions, targets = random_batch(1)
    matrix = confusion_matrix(predictions, targets, CLASSES, IGNORE)
    per_class = MulticlassJaccardIndex(CLASSES, ignore_index=IGNORE, average=None)
    macro = MulticlassJaccardIndex(CLASSES, ignore_index=IGNORE, average="macro")
    # torchmetrics works in float32 (relative error ~6e-8 on values in [0, 1]): 1e-6 holds.
    expected = per_class(predictions, targets).double()
    torch.testing.assert_close(class_iou(matrix), expected, rtol=0, atol=1e-6)
    miou = segmentation_scores(matrix)["miou"]
    assert miou == pytest.approx(macro(predictions, targets).item(), abs=1e-6)


def test_a_class_seen_nowhere_is_nan_and_left_out_of_miou_as_torchmetrics_does():
    predictions, targets = random_batch(2, classes=CLASSES - 1)  # the last class never occurs
    matrix = confusion_matrix(predictions, targets, CLASSES, IGNORE)
    iou = class_iou(matrix)
    assert math.isnan(iou[-1]) and not iou[:-1].isnan().any()
    macro = MulticlassJaccardIndex(CLASSES, ignore_index=IGNORE, average="macro")
    miou = segmentation_scores(matrix)["miou"]
    assert miou == pytest.approx(iou[:-1].mean().item(), abs=1e-12)
    assert miou == pytest.approx(macro(predictions, targets).item(), abs=1e-6)


def test_ignore_pixels_leave_the_matrix_bit_for_bit_the_same():
    predictions, targets = random_batch(3)
    before = confusion_matrix(predictions, targets, CLASSES, IGNORE)
    # Widen every image with columns of ignore pixels under arbitrary predictions.
    extra_predictions = torch.randint(
        CLASSES, (4, 24, 9), generator=torch.Generator().manual_seed(4)
    )
    extra_targets = torch.full((4, 24, 9), IGNORE)
    after = confusion_matrix(
        torch.cat([predictions, extra_predictions], dim=2),
        torch.cat([targets, extra_targets], dim=2),
        CLASSES,
        IGNORE,
    )
    assert torch.equal(after, before)


def test_the_matrices_of_two_halves_add_up_to_the_whole_exactly():
    # What a many-process run relies on: each process counts its share, the counts are summed.
    predictions, targets = random_batch(5)
    whole = confusion_matrix(predictions, targets, CLASSES, IGNORE)
    halves = [confusion_matrix(p, t, CLASSES, IGNORE)
              for p, t in zip(predictions.chunk(2), targets.chunk(2), strict=True)]  # fmt: skip
    assert torch.equal(halves[0] + halves[1], whole)


def test_scores_of_a_hand_counted_matrix():
    # 3 classes; rows are the truth. Class 2 is predicted once but never true.
    matrix = torch.tensor([[3, 1, 0],
                           [2, 4, 1],
                           [0, 0, 0]])  # fmt: skip
    iou = class_iou(matrix)
    torch.testing.assert_close(iou, torch.tensor([3 / 6, 4 / 8, 0 / 1], dtype=torch.float64))
    scores = segmentation_scores(matrix)
    assert scores["miou"] == pytest.approx((0.5 + 0.5 + 0.0) / 3, abs=1e-12)
    assert scores["pixel_accuracy"] == pytest.approx(7 / 11, abs=1e-12)
    # Class 2 has no true pixels: its accuracy is undefined and left out of the mean.
    assert scores["mean_class_accuracy"] == pytest.approx((3 / 4 + 4 / 7) / 2, abs=1e-12)


def test_an_ignore_index_inside_the_class_range_is_never_counted():
    targets = torch.tensor([[[0, 1, 2, 2]]])
    predictions = torch.tensor([[[0, 2, 1, 2]]])
    matrix = confusion_matrix(predictions, targets, num_classes=3, ignore_index=0)
    assert matrix[0].sum() == 0 and matrix.sum() == 3


def test_the_confusion_image_shades_each_cell_by_its_share_of_the_true_class():
    # true class 0: 3 pixels right, 1 taken for class 1; class 1: all 4 right; class 2 absent
    matrix = torch.tensor([[3, 1, 0], [0, 4, 0], [0, 0, 0]])
    image = confusion_image(matrix, side=30)
    assert image.shape == (3, 30, 30) and image.min() >= 0 and image.max() <= 1
    cells = image[:, 5::10, 5::10]  # one pixel from the middle of each 10 px cell
    white = torch.ones(3)
    assert torch.equal(cells[:, 2, 0], white) and torch.equal(cells[:, 0, 2], white)  # share 0
    assert torch.all(cells[:, 1, 1] < cells[:, 0, 0])  # share 1 is darker than 3/4
    assert torch.all(cells[:, 0, 0] < cells[:, 0, 1])  # 3/4 is darker than 1/4
    assert torch.equal(cells[:, 2, 2], white)  # a class absent from the truth stays white
