"""Running an image model on overlapping tiles and blending them back (pure torch).

For images too large to go through a model at once. Tiles step across the image; each pixel of
the result is the weighted mean of the tiles that hold it, with weights that rise linearly
across each overlap (a feather), so no seam shows where tiles meet. Near an inner edge a tile's
result is off (the model saw zero padding there, not the neighbouring pixels): `margin` gives
those pixels weight 0. With a margin of at least the model's receptive radius and tiles that
start on the model's downsampling grid, every pixel comes from a tile that saw everything it
depends on: the tiled result is the whole-image result.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """A (N, C, H, W) batch padded at the bottom and right to sides that are multiples of
    `multiple`, mirrored (reflect; replicate when an image is too small to mirror)."""
    height, width = images.shape[-2:]
    pad_height, pad_width = -height % multiple, -width % multiple
    if pad_height == pad_width == 0:
        return images
    mode = "reflect" if pad_height < height and pad_width < width else "replicate"
    return F.pad(images, (0, pad_width, 0, pad_height), mode=mode)


def tile_starts(length: int, tile: int, overlap: int, multiple: int) -> list[int]:
    """Where tiles of `tile` px start along a side of `length` px: multiples of `multiple`, each
    overlapping the previous by `overlap` px or more, the last flush with the end."""
    if tile >= length:
        return [0]
    step = (tile - overlap) // multiple * multiple
    if step <= 0:
        raise ValueError(f"an overlap of {overlap} px leaves tiles of {tile} px no step")
    return [*range(0, length - tile, step), length - tile]


def feather_weights(starts: list[int], tile: int, margin: int) -> list[torch.Tensor]:
    """Each tile's weights along one side: 1 inside, 0 within `margin` px of an edge it shares
    with a neighbour, and a linear ramp between, across the rest of that overlap.

    The two ramps of an overlap add up to 1 at every pixel, so a blend is seamless.
    """
    weights = []
    for number, start in enumerate(starts):
        weight = torch.ones(tile, dtype=torch.float64)
        if number > 0:
            overlap = starts[number - 1] + tile - start
            weight = torch.minimum(weight, _ramp(tile, overlap, margin))
        if number < len(starts) - 1:
            overlap = start + tile - starts[number + 1]
            weight = torch.minimum(weight, _ramp(tile, overlap, margin).flip(0))
        weights.append(weight)
    return weights


def _ramp(tile: int, overlap: int, margin: int) -> torch.Tensor:
    """0 for the first `margin` px, then linear up to 1 at `overlap - margin` px."""
    if 2 * margin > overlap:
        raise ValueError(f"a margin of {margin} px does not fit twice in an overlap of {overlap}")
    rising = overlap - 2 * margin  # pixels where both tiles count
    distance = torch.arange(tile, dtype=torch.float64)
    return ((distance - margin + 1) / (rising + 1)).clamp(0.0, 1.0)


def tiled_apply(
    run: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tile: int,
    overlap: int,
    multiple: int,
    margin: int = 0,
    tiles_per_run: int = 1,
) -> torch.Tensor:
    """`run` on a (N, C, H, W) batch through overlapping tiles, blended back to (N, C', H, W).

    H and W are multiples of `multiple` (pad_to_multiple), as are `tile` and the tile starts,
    so each tile's downsampling grid is the whole image's. `tiles_per_run` tiles go through
    `run` at once: the memory of a forward pass is that of `tiles_per_run` tiles.
    """
    count, _, height, width = images.shape
    tile_height, tile_width = min(tile, height), min(tile, width)
    rows = tile_starts(height, tile_height, overlap, multiple)
    columns = tile_starts(width, tile_width, overlap, multiple)
    windows = [
        (top, left, (row_weight[:, None] * column_weight[None, :]).to(images))
        for top, row_weight in zip(rows, feather_weights(rows, tile_height, margin), strict=True)
        for left, column_weight in zip(
            columns, feather_weights(columns, tile_width, margin), strict=True
        )
    ]
    total = images.new_zeros(height, width)
    for top, left, weight in windows:
        total[top : top + tile_height, left : left + tile_width] += weight
    jobs = [(index, window) for index in range(count) for window in windows]
    output = None
    for first in range(0, len(jobs), tiles_per_run):
        chunk = jobs[first : first + tiles_per_run]
        tiles = torch.stack(
            [images[index, :, top : top + tile_height, left : left + tile_width]
             for index, (top, left, _) in chunk]
        )  # fmt: skip
        results = run(tiles)
        if output is None:  # the model says how many channels come out
            output = images.new_zeros(count, results.size(1), height, width)
        for result, (index, (top, left, weight)) in zip(results, chunk, strict=True):
            output[index, :, top : top + tile_height, left : left + tile_width] += result * weight
    return output / total
