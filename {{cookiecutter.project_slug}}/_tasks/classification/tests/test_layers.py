import torch
from torch import nn

from {{ cookiecutter.package_name }}.layers import (
    ConvNormAct,
    ResidualBlock,
)


def test_conv_norm_act_keeps_size_at_stride_1_and_halves_it_at_stride_2():
    images = torch.randn(2, 3, 16, 16)
    assert ConvNormAct(3, 8)(images).shape == (2, 8, 16, 16)
    assert ConvNormAct(3, 8, stride=2)(images).shape == (2, 8, 8, 8)


def test_conv_norm_act_without_activation_can_be_negative():
    layer = ConvNormAct(3, 8, activation=False)
    assert (layer(torch.randn(4, 3, 8, 8)) < 0).any()
    assert (ConvNormAct(3, 8)(torch.randn(4, 3, 8, 8)) >= 0).all()


def test_residual_block_projects_the_shortcut_when_the_shape_changes():
    block = ResidualBlock(8, 16, stride=2)
    assert not isinstance(block.shortcut, nn.Identity)
    assert block(torch.randn(2, 8, 16, 16)).shape == (2, 16, 8, 8)
    assert isinstance(ResidualBlock(8, 8).shortcut, nn.Identity)


def test_residual_block_starts_as_the_identity():
    # The last norm's scale starts at zero, so a fresh block passes non-negative input through.
    block = ResidualBlock(8, 8)
    images = torch.rand(2, 8, 8, 8)
    assert torch.allclose(block(images), images)


def test_residual_block_gradients_reach_every_parameter():
    block = ResidualBlock(4, 8, stride=2)
    block(torch.randn(2, 4, 8, 8)).sum().backward()
    for name, parameter in block.named_parameters():
        assert parameter.grad is not None, name
