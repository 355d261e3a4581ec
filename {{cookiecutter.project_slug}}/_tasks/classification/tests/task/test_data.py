import hashlib

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from {{ cookiecutter.package_name }}.data import (
    SHAPES,
    SyntheticShapes,
    build_datasets,
    inverse_class_frequency,
)
from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.engine.loader import build_loader, build_loaders

from ..helpers import TINY_RUN_FLAGS
from .task_cases import write_class_folders, write_skewed_folder


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


def test_folder_dataset_resizes_any_image_to_rgb_of_image_size(tmp_path):
    write_class_folders(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})
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
        write_class_folders(data_dir, layout)
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


def test_shuffle_order_is_a_function_of_seed_and_epoch_and_can_start_part_way():
    dataset = SyntheticShapes(40)
    loader = build_loader(dataset, batch_size=4, train=True, num_workers=0, seed=1)
    orders = []
    for epoch in (0, 0, 1):
        loader.sampler.set_epoch(epoch)
        orders.append([index for _, index in loader.sampler])
    assert orders[0] == orders[1] != orders[2]
    loader.sampler.set_epoch(0, consumed=8)
    assert [index for _, index in loader.sampler] == orders[0][8:] and len(loader) == 8


def test_augmentation_is_a_function_of_seed_epoch_and_index(tmp_path):
    write_class_folders(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})
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
    write_class_folders(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})
    broken = tmp_path / "val" / "dog" / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(UserError, match=f"cannot read the image {broken}"):
        build_datasets("folder", tmp_path, image_size=16)  # headers are read up front


def test_hidden_folders_are_not_classes(tmp_path):
    write_class_folders(
        tmp_path, {"train": ["cat", "dog", ".ipynb_checkpoints"], "val": ["cat", "dog"]}
    )
    assert build_datasets("folder", tmp_path).classes == ["cat", "dog"]


def test_hflip_can_be_turned_off_for_data_a_mirror_changes(tmp_path):
    write_class_folders(tmp_path, {"train": ["cat", "dog"], "val": ["cat", "dog"]})

    def flips(bundle) -> bool:
        return any(
            isinstance(step, v2.RandomHorizontalFlip) for step in bundle.train.transform.transforms
        )

    assert flips(build_datasets("folder", tmp_path))
    assert not flips(build_datasets("folder", tmp_path, hflip=False))


def balanced_loader(tmp_path, **shard):
    """A training loader over the skewed folder (40 a, 4 b) with --balanced-sampling's weights."""
    write_skewed_folder(tmp_path)
    train = build_datasets("folder", tmp_path, image_size=16).train
    weights = inverse_class_frequency(train.targets)
    return build_loader(train, 4, True, 0, seed=3, sample_weights=weights, **shard)


def epoch_order(loader, epoch: int, consumed: int = 0) -> list[int]:
    loader.sampler.set_epoch(epoch, consumed=consumed)
    return [index for _, index in loader.sampler]


def test_synthetic_targets_are_the_labels_of_the_samples():
    dataset = SyntheticShapes(14, image_size=8)
    assert dataset.targets == [dataset[index][1] for index in range(14)]


def test_balanced_sampling_draws_each_class_about_equally_from_a_skewed_folder(tmp_path):
    loader = balanced_loader(tmp_path)
    targets = loader.dataset.dataset.targets
    drawn = [targets[index] for epoch in range(50) for index in epoch_order(loader, epoch)]
    # 50 epochs of 44 draws, each class with probability 1/2: class b's share has a standard
    # deviation of 1.1 points, so 40-60 % is a 9-sigma band; the folder itself has 9 % b.
    assert len(drawn) == 2200 and 0.4 < drawn.count(1) / len(drawn) < 0.6


def test_balanced_order_is_a_function_of_seed_and_epoch(tmp_path):
    loader = balanced_loader(tmp_path)
    torch.manual_seed(1)  # the global RNG plays no part
    first = epoch_order(loader, 0)
    torch.manual_seed(2)
    assert epoch_order(loader, 0) == first != epoch_order(loader, 1)
    assert len(first) == 44 and len(set(first)) < 44  # a draw with replacement


def test_balanced_shards_of_two_ranks_interleave_to_the_epochs_draw(tmp_path):
    ranks = [balanced_loader(tmp_path / str(rank), rank=rank, world_size=2) for rank in (0, 1)]
    shares = [epoch_order(loader, 2) for loader in ranks]
    ranks[0].sampler.set_epoch(2)
    draw = ranks[0].sampler.epoch_order()
    assert len(draw) == 44 and shares[0] == draw[0::2] and shares[1] == draw[1::2]
    assert len(ranks[0]) == len(ranks[1]) == 5  # 22 samples each, in batches of 4


def test_balanced_resume_drops_exactly_the_samples_the_ranks_trained_on(tmp_path):
    loader = balanced_loader(tmp_path, rank=1, world_size=2)
    share = epoch_order(loader, 4)
    # 16 samples of the epoch's draw done by both ranks together: 8 of each rank's share.
    assert epoch_order(loader, 4, consumed=16) == share[8:] and len(loader.sampler) == 22 - 8


@pytest.mark.parametrize(
    "flags", [["--mixup", "0.4"], ["--cutmix", "1.0"], ["--mixup", "0.4", "--cutmix", "1.0"]]
)
def test_mixup_and_cutmix_make_training_targets_soft_and_leave_validation_hard(train_script, flags):
    args = train_script.parse_args([*TINY_RUN_FLAGS, *flags])
    data = train_script.task.build_data(args)
    loaders = build_loaders(data.train, data.val, torch.device("cpu"), args,
                            data.train_sample_weights, data.train_batch_transform)  # fmt: skip
    loaders[0].sampler.set_epoch(0)
    (_, train_targets), (_, val_targets) = (next(iter(loader)) for loader in loaders)
    assert train_targets.shape == (16, len(SHAPES)) and train_targets.is_floating_point()
    torch.testing.assert_close(train_targets.sum(dim=1), torch.ones(16))
    assert (train_targets.max(dim=1).values < 1).any()  # mixed rows, not one-hot ones
    assert val_targets.shape == (16,) and val_targets.dtype == torch.int64


def test_without_mixing_training_targets_stay_class_indices(train_script):
    data = train_script.task.build_data(train_script.parse_args(TINY_RUN_FLAGS))
    assert data.train_batch_transform is None and data.train_sample_weights is None


def test_mixed_batches_are_a_function_of_seed_epoch_and_position(train_script):
    args = train_script.parse_args([*TINY_RUN_FLAGS, "--mixup", "0.4", "--cutmix", "1.0"])
    data = train_script.task.build_data(args)

    def batches(workers: int, consumed: int, global_seed: int) -> list[tuple[torch.Tensor, ...]]:
        torch.manual_seed(global_seed)
        loader = build_loader(data.train, 16, True, workers, seed=0,
                              batch_transform=data.train_batch_transform)  # fmt: skip
        loader.sampler.set_epoch(1, consumed=consumed)
        return list(loader)

    straight = batches(workers=0, consumed=0, global_seed=1)
    resumed = batches(workers=2, consumed=32, global_seed=2)  # from the third batch, in 2 workers
    assert len(resumed) == len(straight) - 2 == 4
    for (images, targets), (their_images, their_targets) in zip(resumed, straight[2:], strict=True):
        assert torch.equal(images, their_images) and torch.equal(targets, their_targets)
