"""Image files on disk, for any task: checked before training starts, loaded as 8-bit RGB."""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError

# Reading a header is mostly waiting for the disk (or a network file system), so threads
# overlap the waits; a few thousand images are checked in about a second.
HEADER_THREADS = 16
# Grayscale modes with more than 8 bits a pixel (16-bit PNG and TIFF open as one of these).
WIDE_GRAYSCALE = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
WIDE_MAX = 65535  # the largest 16-bit value; it maps to 255


def image_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """(width, height) of every image, from the headers alone, read in parallel.

    Run before any run folder exists: a file that is no image is found in seconds, not when a
    DataLoader worker reaches it an epoch later. The first unreadable file is a UserError.
    """
    with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
        return list(pool.map(header_size, paths))


def header_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header; an unreadable file is a UserError naming it."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as error:  # PIL's UnidentifiedImageError is an OSError
        raise UserError(f"cannot read the image {path} ({error}); remove or replace it") from None


def load_rgb_image(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB (grayscale and 16-bit scans too).

    A damaged file (its header may still be fine) is a UserError naming it.
    """
    try:
        with Image.open(path) as image:
            return to_rgb(image)
    except OSError as error:  # truncated and undecodable files are OSErrors
        raise UserError(f"cannot read the image {path} ({error}); remove or replace it") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit grayscale is scaled down: PIL's convert() would clip it at 255."""
    if image.mode not in WIDE_GRAYSCALE:
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64).clip(0, WIDE_MAX)
    eight_bit = np.rint(values * (255 / WIDE_MAX)).astype(np.uint8)
    return Image.fromarray(eight_bit).convert("RGB")
