"""The data: synthetic scenes, image/mask folders checked up front, joint augmentation."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from {{ cookiecutter.package_name }}.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SCALE_RANGE,
    SYNTHETIC_CLASSES,
    RandomScaledCrop,
    SyntheticScenes,
    build_datasets,
    train_transform,
)
from {{ cookiecutter.package_name }}.errors import UserError
from {{ cookiecutter.package_name }}.masks import index_palette

from ..helpers import TINY_RUN_FLAGS, load_script, run_script
from .task_cases import write_data_folder, write_pair


def test_synthetic_scenes_are_a_function_of_seed_split_and_index():
    first, again = (
        SyntheticScenes(10, 32, "train", seed=3),
        SyntheticScenes(10, 32, "train", seed=3),
    )
    image, mask = first[4]
    assert torch.equal(image, again[4][0]) and torch.equal(mask, again[4][1])
    assert not torch.equal(image, first[5][0])
    assert not torch.equal(image, SyntheticScenes(10, 32, "val", seed=3)[4][0])
    assert not torch.equal(image, SyntheticScenes(10, 32, "train", seed=4)[4][0])


def test_synthetic_masks_hold_every_class_and_match_their_images():
    scenes = SyntheticScenes(40, 64)
    masks = torch.stack([scenes[index][1] for index in range(40)])
    assert masks.dtype == torch.int64 and masks.shape == (40, 64, 64)
    assert set(masks.unique().tolist()) == set(range(len(SYNTHETIC_CLASSES)))
    # A shape is drawn in one colour: its pixels vary by the noise alone, far less than the
    # background's gradient and stripes do.
    image, mask = scenes.scene(0)
    for label in mask.unique().tolist()[1:]:
        inside = image.float()[:, mask == label]
        assert inside.std(dim=1).max() < 20


def write_bad_folder(root, problem: str) -> str:
    """A valid folder with one thing wrong; returns the text the error must hold."""
    write_data_folder(root)
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    masks, images = root / "train" / "masks", root / "train" / "images"
    if problem == "image-without-mask":
        (masks / "3.png").unlink()
        return "the image " + str(images / "3.png") + " has no mask"
    if problem == "mask-without-image":
        (images / "3.png").unlink()
        return "the mask " + str(masks / "3.png") + " has no image of the same name"
    if problem == "mask-size":
        Image.new("L", (10, 10)).save(masks / "2.png")
        return f"the mask {masks / '2.png'} is 10x10 px but its image"
    if problem == "unknown-value":
        Image.fromarray(np.full((40, 48), 7, dtype=np.uint8)).save(masks / "1.png")
        return f"the mask {masks / '1.png'} is not a mask of 3 classes"
    if problem == "corrupt-image":
        (images / "4.png").write_bytes(b"not a png at all")
        return f"cannot read the image {images / '4.png'}"
    if problem == "no-masks-folder":
        for path in (root / "val" / "masks").iterdir():
            path.unlink()
        (root / "val" / "masks").rmdir()
        return "has no val/masks folder"
    if problem == "stray-value-without-class-names":
        (root / "classes.txt").unlink()
        mask = np.array(Image.open(masks / "1.png"))
        mask[5, 6] = 7  # one stray pixel: classes 0-2 are there, 3-6 nowhere
        Image.fromarray(mask).save(masks / "1.png")
        return f"the largest mask value, 7 (first in {masks / '1.png'}), but no mask holds 3-6"
    if problem == "one-class":
        (root / "classes.txt").unlink()
        for split in ("train", "val"):
            for path in (root / split / "masks").iterdir():
                Image.new("L", (48, 40)).save(path)
        return "hold one class only"
    raise AssertionError(problem)


PROBLEMS = ["image-without-mask", "mask-without-image", "mask-size", "unknown-value",
            "stray-value-without-class-names", "corrupt-image", "no-masks-folder",
            "one-class"]  # fmt: skip


@pytest.mark.parametrize("problem", PROBLEMS)
def test_each_bad_folder_is_one_sentence_naming_the_file(tmp_path, problem):
    expected = write_bad_folder(tmp_path / "data", problem)
    with pytest.raises(UserError) as error:
        build_datasets("folder", tmp_path / "data", 32)
    message = str(error.value)
    assert expected in message and "\n" not in message, message
    assert message.count("; ") >= 1  # the problem, then the fix


def test_train_py_exits_2_on_a_bad_folder_before_writing_anything(tmp_path, monkeypatch, capsys):
    expected = write_bad_folder(tmp_path / "data", "unknown-value")
    runs = tmp_path / "runs"
    code, _, err = run_script(
        load_script("train"), "train.py", monkeypatch, capsys,
        "--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--out-dir", str(runs),
    )  # fmt: skip
    assert code == 2
    assert expected in err and err.strip().count("\n") == 0
    assert not runs.exists()


def test_a_palette_for_the_synthetic_scenes_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    # The scenes have index masks: a --palette would only be read (and fail) at the first
    # picture of the masks, hundreds of steps in.
    runs = tmp_path / "runs"
    code, _, err = run_script(
        load_script("train"), "train.py", monkeypatch, capsys,
        "--palette", str(tmp_path / "missing.txt"), "--out-dir", str(runs),
    )  # fmt: skip
    assert code == 2 and err.strip().count("\n") == 0
    assert "maps the colours of a folder's RGB masks" in err and "drop --palette" in err
    assert not runs.exists()


def test_a_folder_reads_classes_counts_pixels_and_pads_validation(tmp_path):
    write_data_folder(tmp_path / "data")
    (tmp_path / "data" / "classes.txt").write_text("dark\nmid\nbright\n")
    data = build_datasets("folder", tmp_path / "data", 32)
    assert data.classes == ["dark", "mid", "bright"]
    total = sum(data.class_pixels)
    assert total == 48 * 40 * 46  # the train masks (48 x 40 px) less their 2 ignored columns
    image, mask = data.val[0]
    assert image.shape == (3, 40, 48) and mask.shape == (40, 48)
    assert set(mask[:, :2].unique().tolist()) == {255}


def test_binary_masks_stored_as_0_and_255_are_read_as_two_classes(tmp_path):
    for split in ("train", "val"):
        for number in range(2):
            mask = np.zeros((20, 24), dtype=np.uint8)
            mask[5:15, 4 + number : 12 + number] = 255
            write_pair(tmp_path / split, str(number), Image.new("RGB", (24, 20)), mask)
    data = build_datasets("folder", tmp_path, 16)
    assert data.classes == ["class_0", "class_1"]
    assert "binary" in data.notes[0]
    assert set(data.val[0][1].unique().tolist()) == {0, 1}


def test_augmentation_moves_image_and_mask_together(tmp_path):
    # Columns of a class each, coloured by their class: after any resize, crop and flip the
    # image's colour still says the mask's class (but at blended edges), and the padding is
    # ignored.
    classes = np.repeat(np.arange(4), 24)[None, :].repeat(30, axis=0)  # 30 x 96, 4 bands
    picture = np.stack([classes * 60, np.zeros_like(classes), np.zeros_like(classes)], -1)
    image = tv_tensors.Image(torch.from_numpy(picture.astype(np.uint8)).permute(2, 0, 1))
    mask = tv_tensors.Mask(torch.from_numpy(classes))
    transform = train_transform(40, ignore_index=255)
    mean, std = torch.tensor(IMAGENET_MEAN)[0], torch.tensor(IMAGENET_STD)[0]
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        assert out_image.shape == (3, 40, 40) and out_mask.shape == (40, 40)
        assert out_mask.dtype == torch.int64
        assert set(out_mask.unique().tolist()) <= {0, 1, 2, 3, 255}
        red = (out_image[0] * std + mean) * 255
        labelled = out_mask != 255
        agree = ((red / 60).round() == out_mask)[labelled].float().mean()
        assert agree > 0.8, (seed, agree)  # band edges blend over 2 px or so of 12 or more
        assert (red[~labelled] < 1).all()  # padding: black image, ignored mask


def test_training_crops_show_the_image_at_a_random_factor_of_its_own_size():
    # Training sees images around the scale validation and predict.py see them at: the crop
    # is a window of crop / factor px of the original, factor in SCALE_RANGE, whatever the
    # image's size (a large photo is cropped before it is resized).
    low, high = SCALE_RANGE
    transform = RandomScaledCrop(40, SCALE_RANGE, mask_fill=255)
    for height, width in ((30, 90), (3000, 4000)):
        image = tv_tensors.Image(torch.zeros(3, height, width, dtype=torch.uint8))
        mask = tv_tensors.Mask(torch.zeros(height, width, dtype=torch.int64))
        windows = []
        for seed in range(40):
            torch.manual_seed(seed)
            window = transform.make_params([image, mask])["window"]
            assert 40 / high - 1 <= window <= 40 / low + 1
            windows.append(window)
            torch.manual_seed(seed)
            out_image, out_mask = transform(image, mask)
            assert out_image.shape == (3, 40, 40) and out_mask.shape == (40, 40)
        assert min(windows) < 40 < max(windows)  # enlarged and shrunk both


# An RGB colour for each value of write_data_folder's masks (3 classes and the ignore band).
COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 255: (224, 224, 192)}


def rewrite_masks(root, mask_format: str) -> list[str]:
    """Write every mask of a write_data_folder tree again in `mask_format`; the flags it needs."""
    for path in root.glob("*/masks/*.png"):
        values = np.asarray(Image.open(path))
        if mask_format == "palette":  # VOC style: "P" mode, the pixel is the class index
            image = Image.frombytes("P", values.shape[::-1], values.astype(np.uint8).tobytes())
            image.putpalette(index_palette(3))
        elif mask_format == "16-bit":
            image = Image.fromarray(values.astype(np.uint16))
        else:  # colours, through a palette file
            image = Image.fromarray(np.array([[COLOURS[int(v)] for v in row] for row in values],
                                             dtype=np.uint8))  # fmt: skip
        image.save(path)
    if mask_format != "rgb":
        return []
    lines = [f"{r} {g} {b} {value}\n" for value, (r, g, b) in COLOURS.items()]
    (root / "palette.txt").write_text("".join(lines))
    return ["--palette", str(root / "palette.txt")]


def test_every_mask_format_trains_the_weights_its_8_bit_index_masks_train(train_script, tmp_path):
    def train(mask_format: str):
        root = tmp_path / mask_format
        write_data_folder(root)
        flags = [] if mask_format == "8-bit" else rewrite_masks(root, mask_format)
        flags += [*TINY_RUN_FLAGS, "--dataset", "folder", "--data-dir", str(root), "--epochs",
                  "1", "--out-dir", str(tmp_path / "runs"), "--run-name", mask_format]  # fmt: skip
        assert train_script.main(flags) == 0  # main() seeds the run
        last = tmp_path / "runs" / mask_format / "checkpoints" / "last.pt"
        return torch.load(last, weights_only=True)["model"]

    reference = train("8-bit")
    for mask_format in ("palette", "16-bit", "rgb"):
        weights = train(mask_format)
        assert all(torch.equal(weights[name], reference[name]) for name in reference), mask_format
