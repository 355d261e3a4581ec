import pytest
import torch

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)


@pytest.mark.parametrize(("channels", "size"), [(3, (32, 32)), (1, (17, 23)), (3, (8, 8))])
def test_model_maps_images_to_images_of_the_same_shape_at_any_size(channels, size):
    model = architecture.{{ cookiecutter.__model_class }}(channels, channels, width=8, depth=3)
    x = torch.rand(2, channels, *size)
    assert model(x).shape == x.shape


def test_the_untrained_model_is_the_identity():
    # The zero-initialised last layer adds nothing to the residual path at first.
    model = architecture.{{ cookiecutter.__model_class }}(width=8).eval()
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(model(x), x)


def test_other_output_channels_are_predicted_directly():
    model = architecture.{{ cookiecutter.__model_class }}(1, out_channels=3, width=8, depth=2)
    assert not model.residual and model(torch.rand(1, 1, 16, 16)).shape == (1, 3, 16, 16)


def test_gradients_reach_every_parameter():
    model = architecture.{{ cookiecutter.__model_class }}(width=8, depth=2)
    torch.nn.init.normal_(model.head.weight)  # zero-init would stop gradients to lower layers
    x = torch.rand(2, 3, 16, 16)
    (model(x) - x.flip(-1)).abs().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_eval_mode_is_deterministic_and_batch_independent():
    model = architecture.{{ cookiecutter.__model_class }}(width=8).eval()
    torch.nn.init.normal_(model.head.weight)
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(model(x)[:2], model(x[:2]), rtol=1e-5, atol=1e-5)


def test_a_depth_below_one_is_refused():
    with pytest.raises(ValueError, match="depth"):
        architecture.{{ cookiecutter.__model_class }}(depth=0)


@pytest.mark.parametrize("depth", [10**9, 1e9, "3"], ids=["huge", "a-float", "text"])
def test_a_depth_a_model_card_was_edited_to_is_refused_at_once(depth):
    # A card's depth 10**9 built the network (and padded inputs to 2**depth) for minutes.
    with pytest.raises((ValueError, TypeError), match="depth|not supported"), torch.device("meta"):
        architecture.{{ cookiecutter.__model_class }}(width=8, depth=depth)
