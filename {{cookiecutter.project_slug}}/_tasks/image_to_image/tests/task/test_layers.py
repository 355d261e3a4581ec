import torch

from {{ cookiecutter.package_name }}.layers import (
    DoubleConv,
    DownBlock,
    UpBlock,
)


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
