"""predict.py's forward pass at any image size, for models whose output has the input's size.

A batch is padded (mirrored) to a multiple of the model's downsampling and cropped back, or with
--tile run in overlapping tiles blended by ops.tiling. A model whose receptive radius is known
gets, by default, an overlap of more than twice that radius: the tiled result is then the
whole-image result (unless its normalisation sees each tile's statistics).
"""

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import UserError
from .ops.tiling import pad_to_multiple, tiled_apply

# The largest image run in one piece without --tile: each of a U-Net's first feature maps of a
# 4096 x 4096 image takes 0.5 to 1 GiB, and the network holds several at once (a
# 12000 x 12000 image asked for 9 GB in one allocation).
WHOLE_IMAGE_MAX_PIXELS = 4096 * 4096
SUGGESTED_TILE = 1024  # the --tile the refusal suggests (rounded to what the model takes)
GROUP_NORM = "a group-norm model normalises each tile by its own statistics"


@dataclass(frozen=True)
class ModelGrid:
    """What tiling needs to know of a model: its downsampling and how far its outputs see."""

    multiple: int  # the side every input is padded to a multiple of
    radius: int | None = None  # receptive radius in px; None: the model sees the whole tile
    inexact: str = ""  # why no overlap makes tiles exact (e.g. GROUP_NORM), "" when one does


@dataclass(frozen=True)
class Tiling:
    """How --tile runs an image: tile side, overlap, the ramp's margin, tiles per forward pass."""

    size: int
    overlap: int
    margin: int  # pixels at a tile's inner edges that get no weight (see ops.tiling)
    tiles_per_run: int
    approximation: str = ""  # why tiles do not reproduce the whole-image result, if they do not


def default_overlap(grid: ModelGrid, tile: int) -> int:
    """The smallest multiple of the grid above twice the receptive radius (tiles then agree
    exactly with the whole image); a quarter of the tile when the model sees all of it."""
    if grid.radius is None:
        return tile // 4 // grid.multiple * grid.multiple
    return (2 * grid.radius // grid.multiple + 1) * grid.multiple


def smallest_tile(grid: ModelGrid, args: argparse.Namespace) -> int:
    """The smallest --tile to suggest: twice the default overlap of an exact tiling (a tile then
    adds as many new pixels as it shares), else one step past --tile-overlap, else the grid."""
    if args.tile_overlap is None and grid.radius is not None:
        return 2 * default_overlap(grid, 0)
    overlap = args.tile_overlap or 0
    return max(grid.multiple, (overlap // grid.multiple + 1) * grid.multiple)


def check_tiling(args: argparse.Namespace, grid: ModelGrid) -> Tiling | None:
    """--tile and --tile-overlap as a Tiling (None without --tile); a UserError when they do not
    suit the model."""
    if args.tile is None:
        if args.tile_overlap is not None:
            raise UserError("--tile-overlap needs --tile; give both, or neither")
        return None
    multiple, radius, smallest = grid.multiple, grid.radius, smallest_tile(grid, args)
    if args.tile % multiple:
        lower = args.tile // multiple * multiple
        nearest = [side for side in (lower, lower + multiple) if side >= smallest]
        suggested = " or ".join(map(str, nearest)) or str(smallest)
        raise UserError(
            f"--tile {args.tile} is not a multiple of {multiple} (the model's downsampling); "
            f"give --tile {suggested}"
        )
    overlap = default_overlap(grid, args.tile) if args.tile_overlap is None else args.tile_overlap
    if overlap > args.tile - multiple:
        if args.tile_overlap is None:
            raise UserError(
                f"--tile {args.tile} is too small for the default --tile-overlap {overlap} (more "
                f"than twice the model's receptive radius of {radius} px, so tiles agree with "
                f"the whole image); give --tile {smallest} or more (a tile then "
                "adds as many new pixels as it shares: a smaller one runs most pixels several "
                "times), or a smaller --tile-overlap (tiles then agree only approximately)"
            )
        raise UserError(
            f"--tile-overlap {overlap} leaves --tile {args.tile} no room to step; give a larger "
            f"--tile or an overlap of at most {args.tile - multiple}"
        )
    approximation = grid.inexact
    if radius is None:
        approximation = approximation or "the model sees the whole tile"
    elif not approximation and overlap <= 2 * radius:
        approximation = f"exact tiles need an overlap above {2 * radius} px"
    # Exact tiles leave out their outer `radius` px. Otherwise a quarter of the overlap at each
    # side, the worst pixels of each tile, and a ramp across the middle half: the smallest
    # seams of the choices measured (no margin, a quarter, a half).
    margin = overlap // 4 if approximation else radius
    return Tiling(args.tile, overlap, margin, args.batch_size, approximation)


def too_large(images: torch.Tensor, grid: ModelGrid, tiling: Tiling | None) -> str:
    """Why a batch of images (all of one size) cannot run without --tile, the clause after an
    input's path in its error record; "" when it can (or runs in tiles)."""
    height, width = images.shape[-2:]
    if tiling is not None or height * width <= WHOLE_IMAGE_MAX_PIXELS:
        return ""
    smallest = multiple = grid.multiple
    if grid.radius is not None:  # room for the default overlap
        smallest = default_overlap(grid, multiple) + multiple
    tile = max(SUGGESTED_TILE // multiple * multiple, smallest)
    return (
        f"is too large for one piece ({width}x{height} px, more than {WHOLE_IMAGE_MAX_PIXELS} "
        f"px): use --tile {tile}"
    )


def run_any_size(
    run: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    grid: ModelGrid,
    tiling: Tiling | None,
) -> torch.Tensor:
    """`run` on a (N, C, H, W) batch of any H and W: padded to the grid, whole or in tiles,
    and cropped back to H and W."""
    height, width = images.shape[-2:]
    padded = pad_to_multiple(images, grid.multiple)
    if tiling is None:
        output = run(padded)
    else:
        output = tiled_apply(
            run, padded, tiling.size, tiling.overlap, grid.multiple,
            tiling.margin, tiling.tiles_per_run,
        )  # fmt: skip
    return output[..., :height, :width]


def describe(tiling: Tiling | None) -> str:
    """The tiling as the end of predict.py's summary line ("" without --tile)."""
    if tiling is None:
        return ""
    line = f"; {tiling.size} px tiles overlapping {tiling.overlap} px"
    if tiling.approximation:
        line += f" (approximate: {tiling.approximation})"
    return line
