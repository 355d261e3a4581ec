"""The layers and ops every task uses (layers/conv_norm_act.py, ops/image.py)."""

import torch
from torchvision.transforms import v2

from {{ cookiecutter.package_name }}.layers import ConvNormAct
from {{ cookiecutter.package_name }}.ops import denormalize


def test_conv_norm_act_keeps_size_at_stride_1_and_halves_it_at_stride_2():
    images = torch.randn(2, 3, 16, 16)
    assert ConvNormAct(3, 8)(images).shape == (2, 8, 16, 16)
    assert ConvNormAct(3, 8, stride=2)(images).shape == (2, 8, 8, 8)


def test_conv_norm_act_without_activation_can_be_negative():
    layer = ConvNormAct(3, 8, activation=False)
    assert (layer(torch.randn(4, 3, 8, 8)) < 0).any()
    assert (ConvNormAct(3, 8)(torch.randn(4, 3, 8, 8)) >= 0).all()


def test_denormalize_undoes_normalize():
    images = torch.rand(2, 3, 4, 4)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    normalized = v2.Normalize(mean, std)(images)
    assert torch.allclose(denormalize(normalized, mean, std), images, atol=1e-6)


def test_denormalize_with_zero_mean_and_unit_std_is_the_identity():
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(denormalize(x, (0.0,) * 3, (1.0,) * 3), x)
