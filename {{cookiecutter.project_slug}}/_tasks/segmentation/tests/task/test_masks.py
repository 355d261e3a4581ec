"""Mask files of every format, and every bad mask, palette and class names file."""

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.package_name }}.errors import UserError
from {{ cookiecutter.package_name }}.masks import (
    class_colours,
    index_palette,
    read_class_names,
    read_mask,
    read_mask_with_format,
    read_palette,
)

IGNORE = 255
# A 3x4 mask of classes 0-2 with two ignored pixels (VOC's object border).
CLASSES = np.array([[0, 0, 1, 1],
                    [0, 255, 1, 2],
                    [0, 255, 2, 2]], dtype=np.uint8)  # fmt: skip
VOC_COLOURS = {(0, 0, 0): 0, (128, 0, 0): 1, (0, 128, 0): 2, (224, 224, 192): 255}


def save(tmp_path, array: np.ndarray, mode: str | None = None, name: str = "mask.png"):
    image = Image.fromarray(array)
    if mode == "P":
        image = image.convert("L").convert("P")
        image.putpalette(index_palette(3))
    elif mode is not None:
        image = image.convert(mode)
    image.save(tmp_path / name)
    return tmp_path / name


def as_colours(classes: np.ndarray) -> np.ndarray:
    by_class = {value: colour for colour, value in VOC_COLOURS.items()}
    return np.array([[by_class[int(v)] for v in row] for row in classes], dtype=np.uint8)


def read(path, num_classes=3, ignore_index=IGNORE, **options):
    return read_mask_with_format(
        path, num_classes=num_classes, ignore_index=ignore_index, **options
    )


def message_of(call) -> str:
    with pytest.raises(UserError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("mode", ["P", "L"])
def test_an_8_bit_index_mask_reads_as_its_classes_with_the_ignore_value_kept(tmp_path, mode):
    mask, kind = read(save(tmp_path, CLASSES, mode))
    assert kind == "index" and mask.dtype == torch.int64
    assert torch.equal(mask, torch.from_numpy(CLASSES).long())


def test_a_16_bit_index_mask_holds_classes_above_255(tmp_path):
    classes = np.array([[0, 300], [299, 65535]], dtype=np.uint16)
    path = tmp_path / "mask.png"
    Image.fromarray(classes).save(path)
    mask, kind = read(path, num_classes=301, ignore_index=65535)
    assert kind == "index16"
    assert torch.equal(mask, torch.from_numpy(classes.astype(np.int64)))


def test_a_32_bit_integer_image_reads_as_its_classes(tmp_path):
    classes = np.array([[0, 1], [700, 2]], dtype=np.int32)
    path = tmp_path / "mask.tif"  # PNG holds no 32-bit values; TIFF does
    Image.fromarray(classes).save(path)
    assert torch.equal(read_mask(path, num_classes=701, ignore_index=IGNORE),
                       torch.from_numpy(classes.astype(np.int64)))  # fmt: skip


def test_a_black_and_white_mask_of_two_classes_reads_as_0_and_1(tmp_path):
    path = save(tmp_path, np.array([[0, 255], [255, 0]], dtype=np.uint8))
    mask, kind = read(path, num_classes=2)
    assert kind == "binary"
    assert torch.equal(mask, torch.tensor([[0, 1], [1, 0]]))


def test_0_and_255_of_more_classes_or_told_not_binary_are_class_0_and_ignored(tmp_path):
    path = save(tmp_path, np.array([[0, 255], [255, 0]], dtype=np.uint8))
    for options in ({"num_classes": 3}, {"num_classes": 2, "binary": False}):
        mask, kind = read(path, **options)
        assert kind == "index" and torch.equal(mask, torch.tensor([[0, 255], [255, 0]]))


def test_a_binary_mask_with_other_values_names_them(tmp_path):
    path = save(tmp_path, np.array([[0, 255], [128, 0]], dtype=np.uint8))
    message = message_of(lambda: read(path, num_classes=2, binary=True))
    assert message == (
        f"the binary mask {path} holds the value 128 besides 0 and 255; save it as black (0) "
        "and white (255) only, or as class indices"
    )


def test_a_colour_mask_maps_through_the_palette(tmp_path):
    mask, kind = read(save(tmp_path, as_colours(CLASSES)), palette=VOC_COLOURS)
    assert kind == "palette"
    assert torch.equal(mask, torch.from_numpy(CLASSES).long())


def test_a_palette_image_maps_by_its_colours_when_a_palette_file_is_given(tmp_path):
    # The file's indices are 0, 1, 2, 255; the palette file says what those colours mean.
    swapped = {(0, 0, 0): 0, (128, 0, 0): 2, (0, 128, 0): 1, (224, 224, 192): 255}
    mask, _ = read(save(tmp_path, CLASSES, "P"), palette=swapped)
    expected = np.select([CLASSES == 1, CLASSES == 2], [2, 1], CLASSES.astype(np.int64))
    assert torch.equal(mask, torch.from_numpy(expected).long())


def test_a_colour_not_in_the_palette_is_named_with_the_file(tmp_path):
    colours = as_colours(CLASSES)
    colours[1, 3] = colours[2, 3] = (10, 20, 30)  # not the first pixels: named by colour
    path = save(tmp_path, colours)
    message = message_of(lambda: read(path, palette=VOC_COLOURS))
    assert message == (
        f"the mask {path} has the colour (10, 20, 30) at 2 pixels, which the palette file does "
        "not list; add a line 'R G B class' for each (the class may be the ignore value)"
    )


def test_a_colour_mask_without_a_palette_asks_for_one(tmp_path):
    path = save(tmp_path, as_colours(CLASSES))
    message = message_of(lambda: read(path))
    assert message.startswith(f"the mask {path} is a colour image; give --palette FILE")


def test_a_grayscale_mask_saved_as_rgb_reads_as_an_index_mask(tmp_path):
    mask, kind = read(save(tmp_path, np.repeat(CLASSES[..., None], 3, axis=2)))
    assert kind == "index" and torch.equal(mask, torch.from_numpy(CLASSES).long())


def test_a_value_neither_class_nor_ignore_names_the_file_the_value_and_the_fix(tmp_path):
    classes = CLASSES.copy()
    classes[2, 3] = 7
    path = save(tmp_path, classes, "P")
    message = message_of(lambda: read(path))
    assert message == (
        f"the mask {path} is not a mask of 3 classes: it holds the value 7 (first at row 2, "
        "column 3), neither a class (0-2) nor the ignore value 255; relabel those pixels, or "
        "set --ignore-index 7 if 7 means 'no label'"
    )


def test_a_palette_value_outside_the_classes_is_blamed_on_the_palette(tmp_path):
    path = save(tmp_path, as_colours(CLASSES))
    message = message_of(lambda: read(path, num_classes=2, palette=VOC_COLOURS))
    assert "the palette file maps its colours to the value 2 (first at row 1, column 3)" in message
    assert "correct those palette lines" in message


def test_the_ignore_value_is_what_ignore_index_says(tmp_path):
    path = save(tmp_path, np.array([[0, 1], [9, 9]], dtype=np.uint8))
    mask = read_mask(path, num_classes=2, ignore_index=9)
    assert torch.equal(mask, torch.tensor([[0, 1], [9, 9]]))


def test_a_mask_turned_by_its_exif_orientation_turns_as_its_photo_does(tmp_path):
    image = Image.fromarray(CLASSES)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated 90 degrees clockwise
    image.save(tmp_path / "mask.png", exif=exif)
    mask = read_mask(tmp_path / "mask.png", num_classes=3, ignore_index=IGNORE)
    assert torch.equal(mask, torch.from_numpy(np.rot90(CLASSES, k=-1).copy()).long())


def test_a_float_image_holds_no_classes(tmp_path):
    path = tmp_path / "mask.tif"
    Image.fromarray(CLASSES.astype(np.float32)).save(path)
    message = message_of(lambda: read(path))
    assert message == (
        f"the mask {path} is a F image, which holds no class indices; save masks as 8- or "
        "16-bit grayscale, palette or RGB PNGs"
    )


@pytest.mark.parametrize("content", [b"not an image", "truncated"])
def test_an_unreadable_mask_file_is_named(tmp_path, content):
    path = save(tmp_path, np.zeros((64, 64), dtype=np.uint8) + CLASSES[0, 2], "L")
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    else:
        path.write_bytes(content)
    message = message_of(lambda: read(path))
    assert message.startswith(f"cannot read the mask {path} (")
    assert message.endswith("); remove or replace it")


# ----------------------------------------------------------------------- Palette files
def test_a_palette_file_maps_colours_to_classes_and_the_ignore_value(tmp_path):
    path = tmp_path / "palette.txt"
    path.write_text("# R G B class\n0 0 0 0   # background\n\n128 0 0 1\n0 128 0\t2\n"
                    "224 224 192 255  # borders\n")  # fmt: skip
    assert read_palette(path) == VOC_COLOURS


@pytest.mark.parametrize(
    "line", ["128 0 0", "128 0 0 1 2", "256 0 0 1", "red 0 0 1", "1.5 0 0 1", "0 0 0 -1",
             "0 0 0 \u00b2", "0 0 0 " + "9" * 5000]
)  # fmt: skip
def test_a_bad_palette_line_is_named_with_what_to_write(tmp_path, line):
    path = tmp_path / "palette.txt"
    path.write_text(f"0 0 0 0\n{line}\n")
    message = message_of(lambda: read_palette(path))
    assert message == (
        f"line 2 of the palette file {path} reads {line!r}; write 'R G B class': three colour "
        "values 0-255 and the class (or ignore value) they stand for"
    )


def test_a_colour_listed_twice_is_refused(tmp_path):
    path = tmp_path / "palette.txt"
    path.write_text("0 0 0 0\n128 0 0 1\n0 0 0 2\n")
    message = message_of(lambda: read_palette(path))
    assert message == (
        f"the palette file {path} lists the colour (0, 0, 0) on lines 1 and 3; keep one line "
        "per colour"
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"# nothing\n\n", "lists no colour"),
        (b"\xff\xfe\x00\x01", "is not UTF-8 text"),
        (b"0 0 0 0\n" * 200_000, "is larger than 1 MiB"),
        (None, "does not exist"),
    ],
)
def test_a_palette_file_that_is_no_palette_is_refused(tmp_path, content, expected):
    path = tmp_path / "palette.txt"
    if content is not None:
        path.write_bytes(content)
    assert f"the palette file {path} {expected}" in message_of(lambda: read_palette(path))


# ------------------------------------------------------------------------ Class names
def test_class_names_are_read_one_a_line(tmp_path):
    (tmp_path / "classes.txt").write_text("background\ncat\n dog \n\n")
    assert read_class_names(tmp_path) == ["background", "cat", "dog"]


def test_no_class_names_file_is_none(tmp_path):
    assert read_class_names(tmp_path) is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("background\n\ncat\n", "line 2 of {path} is empty; write one class name a line"),
        ("background\ncat\ncat\n", "{path} names the class 'cat' twice (lines 2 and 3)"),
        ("cat\n", "{path} names 1 class; segmentation needs 2 or more"),
        ("", "{path} names 0 classes; segmentation needs 2 or more"),
    ],
)
def test_bad_class_names_are_refused(tmp_path, content, expected):
    path = tmp_path / "classes.txt"
    path.write_text(content)
    assert expected.format(path=path) in message_of(lambda: read_class_names(tmp_path))


# ---------------------------------------------------------------------------- Colours
def test_the_index_palette_is_vocs_colour_map():
    palette = index_palette(21)
    assert len(palette) == 768
    assert palette[:15] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
    assert palette[255 * 3 :] == [224, 224, 192]  # the ignore value: VOC's border colour
    assert torch.equal(class_colours(21), torch.tensor(palette[: 21 * 3]).view(21, 3).byte())


def test_an_index_png_written_with_the_palette_reads_back_as_its_classes(tmp_path):
    image = Image.fromarray(CLASSES, mode="L").convert("P")
    image.putpalette(index_palette(3))
    image.save(tmp_path / "prediction.png")
    assert torch.equal(read_mask(tmp_path / "prediction.png", num_classes=3, ignore_index=IGNORE),
                       torch.from_numpy(CLASSES).long())  # fmt: skip


def test_more_classes_than_an_8_bit_palette_holds_are_refused():
    with pytest.raises(ValueError, match="1 to 256 classes, not 300"):
        index_palette(300)
