import torch
from torch import nn

from {{ cookiecutter.package_name }}.layers.residual_block import ResidualBlock


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
