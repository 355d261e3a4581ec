import pytest
import torch

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)


@pytest.mark.parametrize(("in_channels", "size"), [(1, 28), (3, 32), (3, 64), (3, 17)])
def test_model_maps_images_to_class_logits(in_channels, size):
    model = architecture.{{ cookiecutter.__model_class }}(in_channels, num_classes=7, width=8)
    assert model(torch.randn(2, in_channels, size, size)).shape == (2, 7)


def test_gradients_reach_every_parameter():
    model = architecture.{{ cookiecutter.__model_class }}(num_classes=4, width=8)
    model(torch.randn(2, 3, 16, 16)).logsumexp(dim=1).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_eval_mode_is_deterministic_and_batch_independent():
    model = architecture.{{ cookiecutter.__model_class }}(width=8).eval()
    images = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(images)[:1], model(images[:1]), atol=1e-5)
