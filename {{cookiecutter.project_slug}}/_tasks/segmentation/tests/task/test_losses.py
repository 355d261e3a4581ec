import math

import pytest
import torch
import torch.nn.functional as F

from {{ cookiecutter.package_name }}.losses import (
    LOSS_KINDS,
    SegmentationLoss,
    inverse_frequency_weights,
)

CLASSES, IGNORE = 4, 255


def random_batch(seed: int):
    """Logits (2, 4, 6, 5) and targets with about a quarter of the pixels ignored."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, CLASSES, 6, 5, generator=generator)
    targets = torch.randint(CLASSES, (2, 6, 5), generator=generator)
    targets[torch.rand(2, 6, 5, generator=generator) < 0.25] = IGNORE
    return logits, targets


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_ignored_pixels_give_no_loss_and_no_gradient(kind):
    logits, targets = random_batch(0)
    ignored = (targets == IGNORE).unsqueeze(1).expand_as(logits)
    criterion = SegmentationLoss(kind, IGNORE, class_weights=torch.tensor([1.0, 2.0, 0.5, 1.0]))
    logits.requires_grad_(True)
    loss = criterion(logits, targets)
    loss.backward()
    assert torch.all(logits.grad[ignored] == 0) and logits.grad[~ignored].abs().sum() > 0
    scrambled = torch.where(ignored, torch.randn_like(logits) * 10, logits.detach())
    assert torch.equal(criterion(scrambled, targets), loss.detach())


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_a_batch_of_ignored_pixels_only_has_zero_loss_not_nan(kind):
    logits = torch.randn(1, CLASSES, 3, 3, requires_grad=True)
    loss = SegmentationLoss(kind, IGNORE)(logits, torch.full((1, 3, 3), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0)


def test_cross_entropy_of_uniform_logits_is_log_of_the_class_count():
    loss = SegmentationLoss("ce")(torch.zeros(1, CLASSES, 2, 2), torch.tensor([[[0, 1], [2, 3]]]))
    assert loss.item() == pytest.approx(math.log(CLASSES), rel=1e-6)


def test_class_weights_weigh_cross_entropy_as_torchs_weighted_cross_entropy_does():
    logits, targets = random_batch(1)
    weights = torch.tensor([0.2, 3.0, 1.0, 0.7])
    weighted = SegmentationLoss("ce", IGNORE, class_weights=weights)(logits, targets)
    expected = F.cross_entropy(logits, targets, weight=weights, ignore_index=IGNORE)
    # The same terms, summed in another order: float32 rounding, far below the tolerance.
    torch.testing.assert_close(weighted, expected)
    unweighted = SegmentationLoss("ce", IGNORE)(logits, targets)
    torch.testing.assert_close(unweighted, F.cross_entropy(logits, targets, ignore_index=IGNORE))
    assert abs(weighted.item() - unweighted.item()) > 0.01


def test_dice_of_even_odds_is_one_half():
    # Two pixels, one of each class, each predicted 50/50: each class overlaps its truth by
    # 0.5 of a pixel, and the predicted and true sizes are 1 + 1, so each Dice is 2 * 0.5 / 2.
    loss = SegmentationLoss("dice")(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]]))
    assert loss.item() == pytest.approx(0.5, rel=1e-6)


def test_dice_leaves_out_a_class_neither_true_nor_predicted():
    # One pixel of class 0 predicted 0.75 / 0.25: class 0 scores 2 * 0.75 / (0.75 + 1) = 6/7;
    # class 1 is not in the truth nor the argmax, so it does not count (else the mean would
    # take its score of 0 and the loss would be 4/7).
    logits = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1, 1)
    loss = SegmentationLoss("dice")(logits, torch.zeros(1, 1, 1, dtype=torch.long))
    assert loss.item() == pytest.approx(1 / 7, rel=1e-6)


def test_dice_of_a_perfect_prediction_is_about_zero():
    targets = torch.randint(CLASSES, (2, 3, 4), generator=torch.Generator().manual_seed(2))
    logits = 30.0 * F.one_hot(targets, CLASSES).permute(0, 3, 1, 2).float()
    loss = SegmentationLoss("dice")(logits, targets)
    # Each wrong class keeps e^-30 ~ 1e-13 of a pixel; float32 sums of 24 values err by at most
    # 24 * 6e-8 ~ 1.4e-6 relative, so the loss lies within a few 1e-6 of 0.
    assert abs(loss.item()) < 1e-5


def test_ce_plus_dice_is_their_sum():
    logits, targets = random_batch(3)
    both = SegmentationLoss("ce+dice", IGNORE)(logits, targets)
    parts = sum(SegmentationLoss(kind, IGNORE)(logits, targets) for kind in ("ce", "dice"))
    torch.testing.assert_close(both, parts)


def test_the_auxiliary_head_adds_its_loss_times_its_weight():
    (out, targets), (aux, _) = random_batch(4), random_batch(5)
    criterion = SegmentationLoss("ce", IGNORE, aux_weight=0.4)
    expected = criterion(out, targets) + 0.4 * criterion(aux, targets)
    torch.testing.assert_close(criterion({"out": out, "aux": aux}, targets), expected)
    assert torch.equal(criterion({"out": out}, targets), criterion(out, targets))
    unweighted = SegmentationLoss("ce", IGNORE)  # aux_weight 0: the aux logits are not used
    assert torch.equal(unweighted({"out": out, "aux": aux}, targets), unweighted(out, targets))


@pytest.mark.parametrize("kind", LOSS_KINDS)
def test_under_autocast_the_loss_is_float32_from_the_16_bit_logits(kind):
    logits, targets = random_batch(6)
    criterion = SegmentationLoss(kind, IGNORE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = criterion(logits.bfloat16(), targets)
    assert loss.dtype == torch.float32
    assert torch.equal(loss, criterion(logits.bfloat16().float(), targets))


def test_inverse_frequency_weights_make_every_seen_class_weigh_the_same():
    counts = torch.tensor([100, 300, 0, 600])
    weights = inverse_frequency_weights(counts)
    torch.testing.assert_close(weights, torch.tensor([10 / 3, 10 / 9, 0.0, 5 / 9]))
    per_class_total = weights.double() * counts
    torch.testing.assert_close(per_class_total[[0, 1, 3]], torch.full((3,), 1000 / 3).double())
    # The average weight of a training pixel is 1.
    assert (per_class_total.sum() / counts.sum()).item() == pytest.approx(1.0, rel=1e-6)


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of ce, dice, ce\\+dice"):
        SegmentationLoss("focal")
