"""Image files on disk, for any image task: found, checked before training starts, loaded as
8-bit RGB, read as a model input by predict.py."""

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import UserError
from .input_files import InputKind, files_under

# Reading a header is mostly waiting for the disk (or a network file system), so threads
# overlap the waits; a few thousand images are checked in about a second.
HEADER_THREADS = 16
# Grayscale modes with more than 8 bits a pixel, and the value each maps to white (255):
# 16-bit PNG and TIFF open as an "I;16" mode or as "I" (32-bit integers, holding 16-bit values
# there; larger ones have no agreed white), float TIFFs as "F" (0 black, 1 white by convention).
WIDE_GRAYSCALE = {"I": 65535, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535,
                  "F": 1.0}  # fmt: skip
EXIF_ORIENTATION = 0x0112  # the tag a camera sets when it was held turned (1: upright)
# What a folder search picks up (a file named on the command line is tried whatever its suffix).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
)


IMAGES = InputKind("image", IMAGE_SUFFIXES, "photos/*.jpg")


def images_under(folder: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Every image file under `folder`, recursively, sorted (hidden ones and `skip` left out)."""
    return files_under(folder, IMAGE_SUFFIXES, skip)


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
    """Open an image file as 8-bit RGB (grayscale, 16-bit and float scans too), turned upright
    as its EXIF orientation says (a phone's photo is stored sideways with a tag that says so).

    A damaged file (its header may still be fine), or one whose values have no 8-bit meaning,
    is a UserError naming it.
    """
    try:
        with Image.open(path) as image:
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return to_rgb(ImageOps.exif_transpose(image))
            return to_rgb(image)
    except OSError as error:  # truncated and undecodable files are OSErrors
        raise UserError(f"cannot read the image {path} ({error}); remove or replace it") from None
    except ValueError as error:  # to_rgb's reason
        raise UserError(f"cannot use the image {path}: {error}") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB. Wide grayscale (16-bit, 32-bit, float) is scaled from its range to 0-255, as
    PIL's convert() would clip it at 255; values outside that range are a ValueError."""
    if image.mode not in WIDE_GRAYSCALE:
        return image.convert("RGB")
    white = WIDE_GRAYSCALE[image.mode]
    values = np.asarray(image, dtype=np.float64)
    lowest, highest = values.min(), values.max()
    if not (lowest >= 0 and highest <= white):  # also false for NaN
        raise ValueError(
            f"its {image.mode} (wide grayscale) values run from {lowest:g} to {highest:g}, "
            f"outside 0 (black) to {white:g} (white); rescale them to that range or save it "
            "as an 8- or 16-bit image"
        )
    eight_bit = np.rint(values * (255 / white)).astype(np.uint8)
    return Image.fromarray(eight_bit).convert("RGB")


class ImageReader:
    """predict.py's reader of an image input: the file as 8-bit RGB, then `transform` (the
    task's evaluation transform) to the model's input. A file that cannot be read or
    transformed is a UserError naming it: that input's record says so and the others go on.
    (A class, not a closure: with the spawn start method, loader workers receive it pickled.)"""

    def __init__(self, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.transform = transform

    def __call__(self, path: Path) -> torch.Tensor:
        image = load_rgb_image(path)
        try:
            return self.transform(image)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UserError(f"cannot use the image {path} ({reason})") from None
