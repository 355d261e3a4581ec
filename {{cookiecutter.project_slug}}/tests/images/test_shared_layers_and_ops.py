"""The shared layers and ops (layers/conv_norm_act.py, the U-Net blocks, ops/image.py)."""

import torch
from torchvision.transforms import v2

from {{ cookiecutter.package_name }}.layers import (
    ConvNormAct,
    DoubleConv,
    DownBlock,
    UpBlock,
)
from {{ cookiecutter.package_name }}.ops import denormalize


def test_conv_norm_act_keeps_size_at_stride_1_and_halves_it_at_stride_2():
    images = torch.randn(2, 3, 16, 16)
    assert ConvNormAct(3, 8)(images).shape == (2, 8, 16, 16)
    assert ConvNormAct(3, 8, stride=2)(images).shape == (2, 8, 8, 8)


def test_conv_norm_act_without_activation_can_be_negative():
    layer = ConvNormAct(3, 8, activation=False)
    assert (layer(torch.randn(4, 3, 8, 8)) < 0).any()
    assert (ConvNormAct(3, 8)(torch.randn(4, 3, 8, 8)) >= 0).all()


def test_double_conv_changes_channels_not_size():
    assert DoubleConv(3, 8)(torch.randn(2, 3, 10, 12)).shape == (2, 8, 10, 12)


def test_down_block_halves_the_size_rounding_up():
    assert DownBlock(8, 16)(torch.randn(2, 8, 16, 16)).shape == (2, 16, 8, 8)
    assert DownBlock(8, 16)(torch.randn(2, 8, 15, 9)).shape == (2, 16, 8, 5)


def test_up_block_returns_to_the_skips_exact_size():
    up = UpBlock(16, 8, 8)
    out = up(torch.randn(2, 16, 8, 5), torch.randn(2, 8, 15, 9))
    assert out.shape == (2, 8, 15, 9)


def test_gradients_reach_every_parameter_of_an_up_block():
    up = UpBlock(4, 4, 4)
    up(torch.randn(2, 4, 4, 4), torch.randn(2, 4, 8, 8)).sum().backward()
    assert all(p.grad is not None for p in up.parameters())


def test_denormalize_undoes_normalize():
    images = torch.rand(2, 3, 4, 4)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    normalized = v2.Normalize(mean, std)(images)
    assert torch.allclose(denormalize(normalized, mean, std), images, atol=1e-6)


def test_denormalize_with_zero_mean_and_unit_std_is_the_identity():
    x = torch.rand(2, 3, 4, 4)
    torch.testing.assert_close(denormalize(x, (0.0,) * 3, (1.0,) * 3), x)
