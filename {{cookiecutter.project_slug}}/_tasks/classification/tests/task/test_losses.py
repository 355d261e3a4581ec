import pytest
import torch
import torch.nn.functional as F

from {{ cookiecutter.package_name }}.losses import ClassificationLoss


def test_without_smoothing_it_is_cross_entropy():
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    assert torch.allclose(ClassificationLoss()(logits, targets), F.cross_entropy(logits, targets))


def test_smoothing_penalises_overconfident_correct_predictions():
    logits = torch.tensor([[20.0, 0.0, 0.0]])
    targets = torch.tensor([0])
    assert ClassificationLoss(0.1)(logits, targets) > ClassificationLoss(0.0)(logits, targets) + 0.5


def test_loss_is_differentiable():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = ClassificationLoss(0.1)(logits, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert logits.grad is not None and loss.ndim == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_smoothing_outside_zero_one_is_refused(bad):
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationLoss(bad)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_one_hot_probability_targets_give_the_loss_of_their_class_indices(smoothing):
    logits, targets = torch.randn(8, 5), torch.randint(0, 5, (8,))
    one_hot = F.one_hot(targets, 5).float()
    criterion = ClassificationLoss(smoothing)
    torch.testing.assert_close(criterion(logits, one_hot), criterion(logits, targets))


def test_mixed_targets_give_the_mixed_loss_with_smoothing():
    # MixUp's targets: lam of one class, 1 - lam of another; cross-entropy is linear in them.
    logits, first, second = torch.randn(6, 4), torch.randint(0, 4, (6,)), torch.randint(0, 4, (6,))
    lam, criterion = 0.3, ClassificationLoss(0.1)
    mixed = lam * F.one_hot(first, 4).float() + (1 - lam) * F.one_hot(second, 4).float()
    expected = lam * criterion(logits, first) + (1 - lam) * criterion(logits, second)
    torch.testing.assert_close(criterion(logits, mixed), expected)
