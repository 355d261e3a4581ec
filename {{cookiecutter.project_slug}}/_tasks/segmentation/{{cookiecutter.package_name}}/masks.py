"""Mask files: each pixel's class, read from the formats masks come in, checked as they are read.

The formats (each PNG, or any image file PIL opens):
  index    a palette ("P") or 8-bit grayscale ("L") image whose values are the classes, as
           Pascal VOC stores them; the --ignore-index value (255 by default) marks pixels with
           no label (VOC's object borders)
  index16  the same in a 16-bit grayscale image ("I;16" or "I"), for more than 256 classes
  binary   two classes stored as 0 and 255 (a black and white picture): read as 0 and 1
  palette  an RGB colour image, each colour a class through a palette file (--palette)
A colour image whose three channels are equal everywhere is a grayscale image saved as RGB:
read as an index mask. Every value read must be a class (0 to C-1) or the ignore value.

The palette file is plain text, one colour a line: "R G B value", the value a class index or the
ignore value; blank lines and text after "#" are left out. For example (VOC's first classes):
    0 0 0 0            # background
    128 0 0 1          # aeroplane
    224 224 192 255    # object borders: ignored
The class names file (classes.txt in the data folder) holds one name a line, class 0 first.
"""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import UserError

MASK_FORMATS = {
    "index": "class indices (8-bit)",
    "index16": "class indices (16-bit)",
    "binary": "binary masks stored as 0/255, read as classes 0/1",
    "palette": "colours, mapped to classes by the palette file",
}
BINARY_VALUES = (0, 255)
EXIF_ORIENTATION = 0x0112  # as image_files turns photos upright, masks turn with them
INDEX_MODES = {"P": "index", "L": "index", "1": "index", "LA": "index", "PA": "index",
               "I;16": "index16", "I;16B": "index16", "I;16L": "index16", "I;16N": "index16",
               "I": "index16"}  # fmt: skip
COLOUR_MODES = ("RGB", "RGBA")
TEXT_FILE_LIMIT = 1 << 20  # a palette or class list longer than 1 MiB is no such file
CLASS_NAMES_FILE = "classes.txt"
SHOWN = 5  # wrong values or colours named in an error at most


# ----------------------------------------------------------------------------- Masks
def read_mask(
    path: Path | str,
    *,
    num_classes: int,
    ignore_index: int,
    palette: dict[tuple[int, int, int], int] | None = None,
    binary: bool | None = None,
) -> torch.Tensor:
    """The (H, W) int64 classes of a mask file (see read_mask_with_format)."""
    return read_mask_with_format(
        path, num_classes=num_classes, ignore_index=ignore_index, palette=palette, binary=binary
    )[0]


def read_mask_with_format(
    path: Path | str,
    *,
    num_classes: int,
    ignore_index: int,
    palette: dict[tuple[int, int, int], int] | None = None,
    binary: bool | None = None,
) -> tuple[torch.Tensor, str]:
    """The (H, W) int64 classes of a mask file, and its format (a key of MASK_FORMATS).

    With `palette`, colour images (and palette images, by their colours) map through it.
    `binary`: None reads a 2-class mask holding only 0 and 255 as 0/1; True reads every mask
    so (other values are errors); False never. A 2-class VOC-style folder whose 255 means
    "ignore" and a black and white one look alike in a mask without foreground: decide once
    for the data set (e.g. from the formats of its masks) and pass it. Any problem is a
    UserError naming the file.
    """
    path = Path(path)
    image = open_mask(path)
    if palette is not None and image.mode in (*COLOUR_MODES, "P", "PA"):
        values, kind = colours_to_values(path, np.asarray(image.convert("RGB")), palette), "palette"
    else:
        values, kind = stored_values(path, image)
    if kind != "palette" and (binary or (binary is None and looks_binary(values, num_classes))):
        values, kind = binary_to_classes(path, values), "binary"
    check_values(path, values, num_classes, ignore_index, kind)
    return torch.from_numpy(values.astype(np.int64)), kind


def open_mask(path: Path) -> Image.Image:
    """The decoded image of a mask file, turned upright as its EXIF orientation says."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, naming itself
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return ImageOps.exif_transpose(image)
            return image
    except (OSError, Image.DecompressionBombError) as error:  # UnidentifiedImageError: OSError
        raise UserError(f"cannot read the mask {path} ({error}); remove or replace it") from None


def stored_values(path: Path, image: Image.Image) -> tuple[np.ndarray, str]:
    """The values an image without a palette file holds, and its format."""
    if image.mode in INDEX_MODES:
        band = image.getchannel(0) if image.mode in ("LA", "PA") else image  # alpha is no class
        return np.asarray(band).astype(np.int64), INDEX_MODES[image.mode]
    if image.mode in COLOUR_MODES:
        rgb = np.asarray(image.convert("RGB"))
        if (rgb == rgb[..., :1]).all():  # a grayscale mask saved as RGB
            return rgb[..., 0].astype(np.int64), "index"
        raise UserError(
            f"the mask {path} is a colour image; give --palette FILE, a file that maps each "
            "colour to its class (one 'R G B class' line per colour)"
        )
    raise UserError(
        f"the mask {path} is a {image.mode} image, which holds no class indices; save masks as "
        "8- or 16-bit grayscale, palette or RGB PNGs"
    )


def looks_binary(values: np.ndarray, num_classes: int) -> bool:
    """Whether a mask is a black and white picture of 2 classes: only 0 and 255, some 255."""
    return num_classes == 2 and values.max() == 255 and np.isin(values, BINARY_VALUES).all()


def binary_to_classes(path: Path, values: np.ndarray) -> np.ndarray:
    """0/255 values as classes 0/1; any other value is a UserError naming it."""
    other = np.unique(values[~np.isin(values, BINARY_VALUES)])
    if other.size:
        raise UserError(
            f"the binary mask {path} holds {describe_values(other)} besides 0 and 255; save it "
            "as black (0) and white (255) only, or as class indices"
        )
    return (values == 255).astype(np.int64)


def colours_to_values(
    path: Path, rgb: np.ndarray, palette: dict[tuple[int, int, int], int]
) -> np.ndarray:
    """The palette's value of each pixel's colour; a colour not in it is a UserError."""
    codes = colour_codes(rgb.reshape(-1, 3))
    known = colour_codes(np.array(list(palette), dtype=np.int64).reshape(-1, 3))
    order = np.argsort(known)
    known, mapped = known[order], np.array(list(palette.values()), dtype=np.int64)[order]
    found = np.searchsorted(known, codes).clip(max=len(known) - 1)
    unknown = known[found] != codes
    if unknown.any():
        colours = [((code >> 16) & 255, (code >> 8) & 255, code & 255)
                   for code in np.unique(codes[unknown])[:SHOWN].tolist()]  # fmt: skip
        named = ", ".join(f"({r}, {g}, {b})" for r, g, b in colours)
        raise UserError(
            f"the mask {path} has the colour{'s' if len(colours) > 1 else ''} {named} at "
            f"{np.count_nonzero(unknown)} pixels, which the palette file does not list; add a "
            "line 'R G B class' for each (the class may be the ignore value)"
        )
    return mapped[found].reshape(rgb.shape[:2])


def colour_codes(rgb: np.ndarray) -> np.ndarray:
    """One integer per (R, G, B) row, R * 65536 + G * 256 + B: colours compare as numbers."""
    rgb = rgb.astype(np.int64)
    return rgb[:, 0] << 16 | rgb[:, 1] << 8 | rgb[:, 2]


def check_values(path: Path, values: np.ndarray, num_classes: int, ignore: int, kind: str) -> None:
    """Refuse a value that is neither a class (0 to C-1) nor the ignore value."""
    wrong = ((values < 0) | (values >= num_classes)) & (values != ignore)
    if not wrong.any():
        return
    bad = np.unique(values[wrong])
    row, column = (int(i) for i in np.argwhere(wrong)[0])
    if kind == "palette":
        source, fix = "the palette file maps its colours to", "correct those palette lines"
    else:
        source, fix = "it holds", "relabel those pixels"
    raise UserError(
        f"the mask {path} is not a mask of {num_classes} classes: {source} "
        f"{describe_values(bad)} (first at row {row}, column {column}), neither a class "
        f"(0-{num_classes - 1}) nor the ignore value {ignore}; {fix}, or set "
        f"--ignore-index {int(bad[0])} if {int(bad[0])} means 'no label'"
    )


def describe_values(values: np.ndarray) -> str:
    """'the value 7' or 'the values 7, 9, 12, ...' (at most SHOWN of them)."""
    shown = ", ".join(str(int(value)) for value in values[:SHOWN])
    more = ", ..." if len(values) > SHOWN else ""
    return f"the value{'s' if len(values) > 1 else ''} {shown}{more}"


# --------------------------------------------------------------------- Palettes, names
def read_text_file(path: Path, what: str) -> list[str]:
    """The lines of a small UTF-8 text file; a missing, huge or binary file is a UserError."""
    if not path.is_file():
        raise UserError(f"the {what} {path} does not exist; give the path of a text file")
    if path.stat().st_size > TEXT_FILE_LIMIT:
        raise UserError(
            f"the {what} {path} is larger than {TEXT_FILE_LIMIT >> 20} MiB, too large for one; "
            "check that it is the right file"
        )
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a BOM is no text
    except UnicodeDecodeError:
        raise UserError(
            f"the {what} {path} is not UTF-8 text; check that it is the right file"
        ) from None


def read_palette(path: Path | str) -> dict[tuple[int, int, int], int]:
    """The colour -> value map of a palette file (format in the module docstring); each line
    is parsed as four integers, nothing is evaluated. A bad line is a UserError naming it."""
    path = Path(path)
    palette: dict[tuple[int, int, int], int] = {}
    first_line: dict[tuple[int, int, int], int] = {}
    for number, line in enumerate(read_text_file(path, "palette file"), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        colour, value = parse_palette_line(path, number, text)
        if colour in palette:
            raise UserError(
                f"the palette file {path} lists the colour {colour} on lines "
                f"{first_line[colour]} and {number}; keep one line per colour"
            )
        palette[colour], first_line[colour] = value, number
    if not palette:
        raise UserError(
            f"the palette file {path} lists no colour; write one 'R G B class' line each"
        )
    return palette


def parse_palette_line(path: Path, number: int, text: str) -> tuple[tuple[int, int, int], int]:
    """((R, G, B), value) of one palette line."""
    fields = text.split()
    # Plain decimal numbers only (str.isdigit alone would pass '²', which int() refuses).
    numbers = [int(field) for field in fields
               if field.isascii() and field.isdigit() and len(field) <= 5]  # fmt: skip
    if len(fields) != 4 or len(numbers) != 4 or max(numbers[:3]) > 255 or numbers[3] > 65535:
        raise UserError(
            f"line {number} of the palette file {path} reads {text!r}; write 'R G B class': "
            "three colour values 0-255 and the class (or ignore value) they stand for"
        )
    red, green, blue, value = numbers
    return (red, green, blue), value


def read_class_names(folder: Path | str) -> list[str] | None:
    """The class names in `folder`/classes.txt, one a line, class 0 first; None when there is
    no such file. Empty or repeated names, or fewer than 2, are a UserError."""
    path = Path(folder) / CLASS_NAMES_FILE
    if not path.exists():
        return None
    lines = read_text_file(path, "class names file")
    while lines and not lines[-1].strip():  # a trailing blank line is no class
        lines.pop()
    names = [line.strip() for line in lines]
    if "" in names:
        raise UserError(
            f"line {names.index('') + 1} of {path} is empty; write one class name a line, "
            "class 0 first, with no blank lines between"
        )
    repeated = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if repeated is not None:
        raise UserError(
            f"{path} names the class {repeated!r} twice (lines {names.index(repeated) + 1} and "
            f"{names.index(repeated, names.index(repeated) + 1) + 1}); give each class one line"
        )
    if len(names) < 2:
        raise UserError(
            f"{path} names {len(names)} class{'es' if len(names) != 1 else ''}; segmentation "
            "needs 2 or more (add the background, class 0, if it is missing)"
        )
    return names


# ----------------------------------------------------------------------- Colours
def class_colours(count: int) -> torch.Tensor:
    """(count, 3) uint8 colours of classes 0 to count-1: Pascal VOC's colour map (0 black,
    1 dark red, 2 dark green, ...), which spreads the bits of the index over R, G and B."""
    colours = torch.zeros(count, 3, dtype=torch.uint8)
    for index in range(count):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= (value & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours[index] = torch.tensor([red, green, blue])
    return colours


def index_palette(num_classes: int) -> list[int]:
    """The 768 numbers PIL's putpalette takes for an index PNG of `num_classes` classes:
    VOC's colour map for all 256 indices, so the ignore value 255 shows as VOC's border colour."""
    if not 1 <= num_classes <= 256:
        raise ValueError(f"an 8-bit palette image holds 1 to 256 classes, not {num_classes}")
    return class_colours(256).flatten().tolist()
