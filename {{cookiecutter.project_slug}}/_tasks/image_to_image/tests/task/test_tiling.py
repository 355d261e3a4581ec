"""Tiled restoration (ops.tiling, predict.py --tile): the U-Net's receptive radius, exact tiles
with the default overlap, and a feathered seam with a small one.

The exactness tests run in float64: tiles and the whole image then differ only by the order of
float64 sums (about 1e-16 relative per operation, 1e-15 measured), so 1e-9 is safe by orders of
magnitude while a tile that saw a padded pixel is off by 1e-3 or more (the control test shows
how much). In float32 the same comparison measures about 1e-6.
"""

import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }} import (
    {{ cookiecutter.model_name }} as architecture,
)
from {{ cookiecutter.package_name }}.ops import pad_to_multiple, tiled_apply
from {{ cookiecutter.package_name }}.ops.tiling import feather_weights, tile_starts
from {{ cookiecutter.package_name }}.tiled_inference import ModelGrid, default_overlap

EXACT = 1e-9  # float64: see the module docstring


def random_unet(depth: int = 2, width: int = 4, seed: int = 0) -> nn.Module:
    """A seeded float64 U-Net that is not the identity: its zero-initialised head re-drawn."""
    torch.manual_seed(seed)
    model = architecture.{{ cookiecutter.__model_class }}(3, 3, width=width, depth=depth)
    nn.init.normal_(model.head.weight, std=0.5)
    return model.eval().double()


def smooth_image(height: int, width: int) -> torch.Tensor:
    """A (1, 3, H, W) float64 image of ramps and a wave: neighbours differ by little."""
    ys, xs = torch.meshgrid(
        torch.linspace(0, 1, height, dtype=torch.float64),
        torch.linspace(0, 1, width, dtype=torch.float64),
        indexing="ij",
    )
    return torch.stack([xs, ys, 0.5 + 0.3 * torch.sin(6 * xs)]).unsqueeze(0)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_receptive_radius_is_how_far_an_output_pixel_sees(depth):
    # Positive weights and inputs: every ReLU passes, eval BatchNorm (mean 0, var 1) keeps the
    # sign and bilinear weights are positive, so no path cancels and the gradient of an output
    # pixel is non-zero exactly on the input pixels it depends on.
    model = architecture.{{ cookiecutter.__model_class }}(1, 1, width=2, depth=depth)
    model = model.eval().double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.abs_()
        model.head.weight.fill_(1.0)
    radius, side = architecture.receptive_radius(depth), 4 * architecture.receptive_radius(depth)
    image = torch.rand(1, 1, 8, side, dtype=torch.float64, requires_grad=True)
    reach = 0
    for column in range(side // 2, side // 2 + 2**depth):  # each phase of the downsampling grid
        image.grad = None
        model(image)[0, 0, 4, column].backward()
        seen = image.grad[0, 0].abs().sum(0).nonzero().flatten()
        reach = max(reach, column - seen.min().item(), seen.max().item() - column)
    assert reach == radius


@pytest.mark.parametrize(
    ("height", "width", "tile"),
    [(96, 160, 64), (97, 83, 64), (37, 53, 256)],
    ids=["multiple-of-4", "not-a-multiple", "tile-larger-than-image"],
)
def test_tiles_with_the_default_overlap_reproduce_the_whole_image(height, width, tile):
    model = random_unet()
    image = pad_to_multiple(torch.rand(2, 3, height, width, dtype=torch.float64), 4)
    radius = architecture.receptive_radius(2)
    with torch.no_grad():
        whole = model(image)
        overlap = default_overlap(ModelGrid(4, radius), tile)
        tiled = tiled_apply(model, image, tile, overlap, 4, radius, tiles_per_run=5)
    assert (whole - image).abs().max() > 0.1  # not the identity: the head counts
    assert (tiled - whole).abs().max().item() < EXACT


def test_an_overlap_below_twice_the_radius_is_not_exact():
    # The control of the test above: its tolerance is far below what a short overlap costs.
    model, image = random_unet(), torch.rand(1, 3, 96, 160, dtype=torch.float64)
    with torch.no_grad():
        short = tiled_apply(model, image, 64, 16, 4, margin=4)
        assert (short - model(image)).abs().max().item() > 1e-3


def test_a_small_overlap_spreads_the_tiles_disagreement_across_the_ramp():
    # Two tiles side by side sharing 16 px (far from exact: they disagree there). In the blend
    # (1 - w) a + w b, w rises by 1 / (ramp + 1) a pixel, so a step across the seam is at most
    # the larger step of the tiles themselves where they count (their outer `margin` px get no
    # weight) plus their disagreement over (ramp + 1); a hard cut would jump by all of it.
    model, tile, overlap = random_unet(width=8), 64, 16
    margin = overlap // 4
    image = smooth_image(tile, 2 * tile - overlap)
    with torch.no_grad():
        tiled = tiled_apply(model, image, tile, overlap, 4, margin)
        left, right = model(image[..., :tile]), model(image[..., tile - overlap :])
    counted_left = left[..., tile - overlap - 1 : tile - margin]  # from the pixel before
    counted_right = right[..., margin : overlap + 1]  # to the pixel after
    own_step = max((t[..., 1:] - t[..., :-1]).abs().max().item()
                   for t in (counted_left, counted_right))  # fmt: skip
    ramping = slice(tile - overlap + margin - 1, tile - margin)  # where w changes to the next
    disagreement = (left[..., ramping] - right[..., margin - 1 : overlap - margin]).abs().max()
    seam = tiled[..., tile - overlap - 1 : tile + 1]  # the overlap and a pixel either side
    step = (seam[..., 1:] - seam[..., :-1]).abs().max().item()
    assert disagreement > 2 * own_step  # a hard cut would be the largest step around
    assert step <= own_step + disagreement.item() / (overlap - 2 * margin + 1) + EXACT


def test_tile_starts_are_on_the_grid_overlap_enough_and_end_flush():
    starts = tile_starts(200, 64, 20, 8)
    assert starts[0] == 0 and starts[-1] == 200 - 64
    assert all(start % 8 == 0 for start in starts)
    assert all(0 < b - a <= 64 - 20 for a, b in zip(starts, starts[1:], strict=False))
    assert tile_starts(50, 64, 20, 8) == [0]


def test_feather_weights_of_neighbouring_tiles_add_up_to_one():
    starts, tile = tile_starts(200, 64, 20, 8), 64
    total = torch.zeros(200, dtype=torch.float64)
    for start, weight in zip(starts, feather_weights(starts, tile, margin=5), strict=True):
        assert weight.min() >= 0
        total[start : start + tile] += weight
    torch.testing.assert_close(total, torch.ones(200, dtype=torch.float64))


def test_pad_to_multiple_mirrors_then_crops_back_and_pads_tiny_images():
    image = torch.rand(1, 3, 5, 6)
    padded = pad_to_multiple(image, 4)
    assert padded.shape[-2:] == (8, 8)
    assert torch.equal(padded[..., :5, :6], image)
    assert torch.equal(padded[..., 5, :6], image[..., 3, :])  # mirrored about the last row
    assert pad_to_multiple(torch.rand(1, 3, 1, 2), 8).shape[-2:] == (8, 8)  # too small to mirror
