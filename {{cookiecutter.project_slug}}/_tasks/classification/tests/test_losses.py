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


def test_loss_is_differentiable_and_a_module():
    logits = torch.randn(4, 3, requires_grad=True)
    loss = ClassificationLoss(0.1)(logits, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert logits.grad is not None and loss.ndim == 0
    assert isinstance(ClassificationLoss(), torch.nn.Module)


@pytest.mark.parametrize("bad", [-0.1, 1.0])
def test_smoothing_outside_zero_one_is_refused(bad):
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassificationLoss(bad)
