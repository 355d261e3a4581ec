import hashlib

import pytest
import torch

from {{ cookiecutter.package_name }}.data import (
    SyntheticScenes,
    build_datasets,
)
from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.engine.loader import build_loader

from .task_cases import write_mixed_images


def digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.numpy().tobytes()).hexdigest()


def test_synthetic_images_are_a_function_of_seed_split_and_index():
    first, again = SyntheticScenes(8, 32, "train", 0), SyntheticScenes(8, 32, "train", 0)
    assert digest(first[3]) == digest(again[3])
    assert digest(first[3]) != digest(SyntheticScenes(8, 32, "train", 1)[3])
    assert digest(first[3]) != digest(first[4])


def test_synthetic_train_and_val_share_no_image():
    train, val = SyntheticScenes(50, 16, "train"), SyntheticScenes(50, 16, "val")
    assert not {digest(train[i]) for i in range(50)} & {digest(val[i]) for i in range(50)}


def test_synthetic_images_are_rgb_in_the_unit_range_and_not_flat():
    image = SyntheticScenes(4, 24)[0]
    assert image.shape == (3, 24, 24) and image.min() >= 0 and image.max() <= 1
    assert image.std() > 0.05


@pytest.mark.parametrize("corruption", ["noise", "blur", "downsample"])
def test_pairs_are_corrupted_and_clean_of_the_same_shape(corruption):
    data = build_datasets("synthetic", image_size=16, synthetic_size=10, corruption=corruption)
    corrupted, clean = data.train[0]
    assert corrupted.shape == clean.shape == (3, 16, 16)
    assert (corrupted - clean).abs().mean() > 0.005
    assert len(data.val) == 2 and data.classes == [] and data.in_channels == 3


def test_the_same_epoch_gives_the_same_pairs_and_another_epoch_other_noise():
    data = build_datasets("synthetic", image_size=16, synthetic_size=32)

    def first_batch(epoch: int, num_workers: int) -> torch.Tensor:
        loader = build_loader(data.train, 8, True, num_workers, seed=3)
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))[0]

    torch.testing.assert_close(first_batch(0, 0), first_batch(0, 2))  # workers change nothing
    torch.testing.assert_close(first_batch(1, 0), first_batch(1, 0))
    assert not torch.equal(first_batch(0, 0), first_batch(1, 0))


def test_validation_pairs_are_the_same_on_every_pass():
    data = build_datasets("synthetic", image_size=16, synthetic_size=40)
    loader = build_loader(data.val, 4, False, 0, seed=0)
    first, second = next(iter(loader)), next(iter(loader))
    torch.testing.assert_close(first, second)


def test_folder_crops_any_size_and_mode_to_rgb_of_image_size(tmp_path):
    write_mixed_images(tmp_path)
    data = build_datasets("folder", tmp_path, image_size=24, crops_per_image=3)
    assert len(data.train) == 6 and len(data.val) == 2
    for dataset in (data.train, data.val):
        corrupted, clean = dataset[1]
        assert corrupted.shape == clean.shape == (3, 24, 24)
    # Validation crops are fixed: the centre of the image, every time.
    torch.testing.assert_close(data.val.clean[0], data.val.clean[0])


def test_training_crops_are_drawn_per_sample_seed(tmp_path):
    write_mixed_images(tmp_path, sizes=((64, 64), (64, 64)))
    data = build_datasets("folder", tmp_path, image_size=16, crops_per_image=4)
    loader = build_loader(data.train, 8, True, 0, seed=0)
    loader.sampler.set_epoch(0)
    first, second = next(iter(loader)), next(iter(loader))
    torch.testing.assert_close(first, second)
    crops = first[1]
    assert len({digest(crop) for crop in crops}) == len(crops)  # four crops per image differ


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "does not exist"),
        ("no-val", "has no 'val' folder"),
        ("empty-train", "holds no images"),
    ],
)
def test_bad_folders_are_one_sentence(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        (root / "train").mkdir(parents=True)
        if layout == "empty-train":
            (root / "val").mkdir()
            (root / "train" / "notes.txt").write_text("not an image")
    with pytest.raises(UserError, match=message):
        build_datasets("folder", root, image_size=16)


def test_an_image_smaller_than_the_crop_is_named(tmp_path):
    write_mixed_images(tmp_path, sizes=((20, 12), (64, 64)))
    with pytest.raises(UserError, match=r"0.png is 20x12 px, smaller than --image-size 16"):
        build_datasets("folder", tmp_path, image_size=16)  # before any training starts


def test_an_unreadable_image_is_named(tmp_path):
    write_mixed_images(tmp_path)
    (tmp_path / "val" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        build_datasets("folder", tmp_path, image_size=16)


def test_an_image_that_breaks_while_decoding_is_named(tmp_path):
    write_mixed_images(tmp_path)
    whole = (tmp_path / "val" / "nested" / "1.png").read_bytes()
    (tmp_path / "val" / "nested" / "1.png").write_bytes(whole[: len(whole) // 2])  # header intact
    data = build_datasets("folder", tmp_path, image_size=16)
    with pytest.raises(UserError, match="1.png"):
        data.val[1]


@pytest.mark.parametrize(
    ("corruption", "strength", "message"),
    [
        ("noise", 0.0, "between 0 and 1"),
        ("noise", 2.0, "between 0 and 1"),
        ("downsample", 1.0, "above 1"),
        ("blur", -1.0, "above 0"),
        ("jpeg", None, "unknown corruption"),
    ],
)
def test_a_strength_that_makes_no_sense_is_one_sentence(corruption, strength, message):
    with pytest.raises(UserError, match=message):
        build_datasets("synthetic", image_size=16, corruption=corruption, strength=strength)
