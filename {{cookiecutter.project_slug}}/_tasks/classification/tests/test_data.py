import hashlib

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from {{ cookiecutter.package_name }}.data import (
    SHAPES,
    SyntheticShapes,
    build_datasets,
)
from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.engine.loader import build_loader


def image_hashes(dataset) -> set[str]:
    return {hashlib.sha1(dataset[i][0].numpy().tobytes()).hexdigest() for i in range(len(dataset))}


def test_synthetic_samples_are_a_function_of_seed_split_and_index():
    first, again = SyntheticShapes(20, seed=3), SyntheticShapes(20, seed=3)
    for index in (0, 7, 19):
        assert torch.equal(first[index][0], again[index][0])
        assert first[index][1] == again[index][1]
    assert not torch.equal(first[0][0], SyntheticShapes(20, seed=4)[0][0])


def test_synthetic_train_and_val_splits_share_no_image():
    bundle = build_datasets("synthetic", synthetic_size=300)
    assert len(bundle.train) == 300 and len(bundle.val) == 60
    assert image_hashes(bundle.train).isdisjoint(image_hashes(bundle.val))


def test_synthetic_labels_are_balanced_and_images_normalised():
    dataset = SyntheticShapes(60, image_size=24)
    labels = [dataset[i][1] for i in range(60)]
    assert sorted(set(labels)) == list(range(len(SHAPES)))
    assert all(labels.count(label) == 10 for label in set(labels))
    image = dataset[0][0]
    assert image.shape == (3, 24, 24) and image.min() >= -1 and image.max() <= 1


def write_image_folder(root, classes_per_split, sizes=((40, 30), (20, 50))):
    """Tiny ImageFolder tree with images of mixed sizes and modes (grayscale and RGB)."""
    for split, classes in classes_per_split.items():
        for class_index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for image_index, size in enumerate(sizes):
                mode = "L" if image_index % 2 else "RGB"
                color = 40 * class_index + 60 if mode == "L" else (200, 30 * class_index, 90)
                Image.new(mode, size, color).save(folder / f"{image_index}.png")


def test_folder_dataset_resizes_any_image_to_rgb_of_image_size(tmp_path):
    write_image_folder(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})
    bundle = build_datasets("folder", tmp_path, image_size=24)
    assert bundle.classes == ["cat", "dog"] and bundle.in_channels == 3
    for dataset in (bundle.train, bundle.val):
        for index in range(len(dataset)):
            assert dataset[index][0].shape == (3, 24, 24)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (None, "does not exist"),
        ({"train": ["cat"]}, "has no 'val' folder"),
        ({"train": ["cat", "dog"], "val": ["cat", "cow"]}, "differ"),
    ],
)
def test_folder_dataset_errors_name_the_problem(tmp_path, layout, message):
    data_dir = tmp_path / "data"
    if layout is not None:
        write_image_folder(data_dir, layout)
    with pytest.raises(UserError, match=message):
        build_datasets("folder", data_dir)


def test_folder_dataset_with_an_empty_split_says_where_images_go(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(UserError, match="holds no images"):
        build_datasets("folder", tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_torchvision_set_without_files_asks_for_download(tmp_path, name):
    with pytest.raises(UserError, match="add --download"):
        build_datasets(name, tmp_path, download=False)


def test_shuffle_order_is_a_function_of_seed_and_epoch_and_can_skip():
    dataset = SyntheticShapes(40)
    loader = build_loader(dataset, batch_size=4, train=True, num_workers=0, seed=1)
    orders = []
    for epoch in (0, 0, 1):
        loader.sampler.set_epoch(epoch)
        orders.append([index for _, index in loader.sampler])
    assert orders[0] == orders[1] != orders[2]
    loader.sampler.set_epoch(0, skip=8)
    assert [index for _, index in loader.sampler] == orders[0][8:] and len(loader) == 8


def test_augmentation_is_a_function_of_seed_epoch_and_index(tmp_path):
    write_image_folder(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})
    Image.linear_gradient("L").save(tmp_path / "train" / "cat" / "gradient.png")  # crops differ
    train = build_datasets("folder", tmp_path, image_size=16).train
    gradient = train.samples.index((str(tmp_path / "train" / "cat" / "gradient.png"), 0))
    loader = build_loader(train, batch_size=4, train=True, num_workers=0, seed=5)
    seeded = loader.dataset
    torch.manual_seed(123)  # the global RNG does not matter
    first = seeded[(2, gradient)][0]
    torch.manual_seed(456)
    assert torch.equal(seeded[(2, gradient)][0], first)
    assert not torch.equal(seeded[(3, gradient)][0], first)  # another epoch, another crop


def test_an_unreadable_image_is_named(tmp_path):
    write_image_folder(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})
    broken = tmp_path / "val" / "dog" / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(UserError, match=f"cannot read the image {broken}"):
        build_datasets("folder", tmp_path, image_size=16)  # headers are read up front


def test_hidden_folders_are_not_classes(tmp_path):
    write_image_folder(
        tmp_path, {"train": ["cat", "dog", ".ipynb_checkpoints"], "val": ["cat", "dog"]}
    )
    assert build_datasets("folder", tmp_path).classes == ["cat", "dog"]


def test_hflip_can_be_turned_off_for_data_a_mirror_changes(tmp_path):
    write_image_folder(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})

    def flips(bundle) -> bool:
        return any(
            isinstance(step, v2.RandomHorizontalFlip) for step in bundle.train.transform.transforms
        )

    assert flips(build_datasets("folder", tmp_path))
    assert not flips(build_datasets("folder", tmp_path, hflip=False))
