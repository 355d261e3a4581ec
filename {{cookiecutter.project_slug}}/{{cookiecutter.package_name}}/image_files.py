"""Image files on disk, for any task: found, checked before training starts, loaded as 8-bit RGB."""

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import UserError

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
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class FoundImage:
    """An input image: its path, and the name its outputs get (unique among the inputs)."""

    path: Path
    name: str  # a file's own name; under a folder given as input, the path relative to it


def images_under(folder: Path, skip: Iterable[Path] = ()) -> list[Path]:
    """Every image file under `folder`, recursively, sorted; hidden files and folders skipped,
    and so is what lies in a `skip` folder inside `folder`."""
    skipped = _folders_inside(folder, skip)
    return sorted(
        path
        for path in folder.rglob("*")  # enters no symlinked folder: a link loop cannot trap it
        if path.suffix.lower() in IMAGE_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and not (skipped and _is_in(path, skipped))
    )


def _folders_inside(root: Path, folders: Iterable[Path]) -> list[Path]:
    """Those of `folders` that lie inside `root` (not `root` itself), resolved. A skip folder
    that holds the whole input is no reason to skip it: writing over it is refused instead."""
    root = root.resolve()
    resolved = (folder.resolve() for folder in folders)
    return [folder for folder in resolved if folder != root and folder.is_relative_to(root)]


def _is_in(path: Path, folders: list[Path]) -> bool:
    """Whether `path` lies in (or is) one of `folders` (resolved paths), however it is spelled."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder) for folder in folders)


def find_images(inputs: Sequence[str], skip: Iterable[Path] = ()) -> list[FoundImage]:
    """The images that image files, folders (searched recursively) and glob patterns name.

    Folders and patterns leave out what lies in a `skip` folder inside them (where predictions
    go: a rerun does not take the last run's outputs for inputs). A path that does not exist is
    kept beside images that do (loading it fails, and its record says so); no image at all, or
    two inputs whose outputs would share a name, is a UserError.
    """
    skip = list(skip)
    found: dict[Path, FoundImage] = {}
    for text in inputs:
        for image in _expand(text, skip):
            found.setdefault(image.path.absolute(), image)  # the same file named twice: once
    if not any(image.path.exists() for image in found.values()):
        raise UserError(
            f"no image found in {', '.join(inputs)}; give image files, folders of images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}) or glob patterns such as 'photos/*.jpg'"
        )
    _check_unique_names(list(found.values()))
    return list(found.values())


def _expand(text: str, skip: list[Path]) -> list[FoundImage]:
    """The images one command-line input names (a missing file stays, to be reported)."""
    path = Path(text)
    if path.is_dir():
        files = images_under(path, skip)
        return [FoundImage(file, file.relative_to(path).as_posix()) for file in files]
    if path.exists() or not GLOB_CHARACTERS & set(text):
        return [FoundImage(path, path.name)]
    matches = glob_paths(text, skip)
    images = [FoundImage(match, match.name) for match in matches if match.is_file()]
    for folder in (match for match in matches if match.is_dir()):
        images += _expand(str(folder), skip)
    return images


def glob_paths(pattern: str, skip: Iterable[Path] = ()) -> list[Path]:
    """The paths a glob pattern matches, sorted, but none in a `skip` folder below the pattern's
    fixed start. Found as the shell's globstar finds them: `**` enters no symlinked folder (a
    link to its own folder would make the search endless), and a name that starts with a dot
    matches only a pattern part that starts with one."""
    parts = Path(pattern).parts
    first_pattern = next(index for index, part in enumerate(parts) if GLOB_CHARACTERS & set(part))
    root, relative = Path(*parts[:first_pattern]), Path(*parts[first_pattern:])
    skipped = _folders_inside(root, skip)
    try:
        return sorted(
            match
            for match in root.glob(str(relative))
            if _shown(match.relative_to(root), relative)
            and not (skipped and _is_in(match, skipped))
        )
    except ValueError as error:  # such as '**' inside a name
        raise UserError(
            f"cannot read the glob pattern {pattern} ({error}); use * within names and ** "
            "alone between slashes, as in 'photos/**/*.jpg'"
        ) from None


def _shown(relative: Path, pattern: Path) -> bool:
    """Whether every hidden part of `relative` is matched by a pattern part that starts with a
    dot (as the shell does: `*` and `**` pass over hidden files and folders)."""
    dotted = [part for part in pattern.parts if part.startswith(".")]
    return all(
        any(fnmatchcase(part, dotted_part) for dotted_part in dotted)
        for part in relative.parts
        if part.startswith(".")
    )


def _check_unique_names(images: list[FoundImage]) -> None:
    """Refuse inputs whose outputs would overwrite each other (same name from two folders)."""
    first_with_name: dict[str, Path] = {}
    for image in images:
        other = first_with_name.setdefault(image.name, image.path)
        if other != image.path:
            raise UserError(
                f"{other} and {image.path} would both be called {image.name} in the outputs; "
                "give the folder above both as the input (names then keep their sub-folders)"
            )


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
