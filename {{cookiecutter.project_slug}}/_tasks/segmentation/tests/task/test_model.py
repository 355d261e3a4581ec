import pytest
import torch

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)


def build(**config) -> torch.nn.Module:
    """The task's model of `config`."""
    return architecture.{{ cookiecutter.__model_class }}(**config)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (37, 53), (8, 9), (1, 1)])
@pytest.mark.parametrize("depth", [1, 3])
def test_any_height_and_width_give_logits_of_that_size(height, width, depth):
    model = build(num_classes=5, width=4, depth=depth).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, height, width))
    assert logits.shape == (2, 5, height, width)
    assert torch.isfinite(logits).all()


def test_group_norm_and_one_channel_inputs_build():
    model = build(num_classes=3, in_channels=1, width=8, norm="group")
    assert model(torch.randn(1, 1, 20, 30)).shape == (1, 3, 20, 30)


@pytest.mark.parametrize(("arguments", "problem"), [
    ({"num_classes": 1}, "num_classes must be at least 2"),
    ({"num_classes": 3, "depth": 0}, "depth must be from 1"),
    ({"num_classes": 3, "norm": "layer"}, "unknown norm"),
])  # fmt: skip
def test_impossible_settings_are_refused(arguments, problem):
    with pytest.raises(ValueError, match=problem):
        build(**arguments)


def test_a_pixel_depends_on_nothing_beyond_the_receptive_radius():
    # Positive weights and inputs: every ReLU passes, eval BatchNorm (mean 0, var 1) keeps the
    # sign and bilinear weights are positive, so no path cancels and the gradient of an output
    # pixel is non-zero exactly on the input pixels it depends on (random weights could leave
    # a pixel's ReLUs all off, and its gradient zero).
    depth = 2
    radius = architecture.receptive_radius(depth)
    model = build(num_classes=2, width=4, depth=depth).eval().double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.abs_()
    side = 2 * radius + 16
    images = torch.rand(1, 3, side, side, dtype=torch.float64, requires_grad=True)
    reach = 0
    for column in range(side // 2, side // 2 + 2**depth):  # each phase of the downsampling grid
        images.grad = None
        model(images)[0, :, side // 2, column].sum().backward()
        rows, columns = images.grad[0].abs().sum(0).nonzero(as_tuple=True)
        reach = max(reach, (rows - side // 2).abs().max().item())
        reach = max(reach, (columns - column).abs().max().item())
    assert reach == radius
