"""Data: transforms and data sets, chosen by name (`--dataset`).

- synthetic: procedural shapes made on the fly; no files, no download (the default)
- folder: your images in ImageFolder layout, DIR/train/<class>/* and DIR/val/<class>/*
- cifar10, mnist, fashion_mnist: torchvision's sets, downloaded only when asked to
"""

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import datasets
from torchvision.transforms import v2
from torchvision.utils import make_grid

from .errors import UserError
from .image_files import image_sizes, load_rgb_image
from .ops import denormalize

DATASETS = ("synthetic", "folder", "cifar10", "mnist", "fashion_mnist")
SPLITS = ("train", "val")
# What this project trains; saved in checkpoints so test.py refuses another task's.
TASK = "classification"
SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# name -> (torchvision class, channels, native size, mean, std)

TORCHVISION_SETS = {
    "cifar10": (datasets.CIFAR10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "mnist": (datasets.MNIST, 1, 28, (0.1307,), (0.3081,)),
    "fashion_mnist": (datasets.FashionMNIST, 1, 28, (0.2860,), (0.3530,)),
}


@dataclass(frozen=True)
class InputFormat:
    """How images become model inputs: their size, and the normalisation unless the data
    set's own. Pretrained weights bring theirs (see backbones.pretrained_preprocessing)."""

    image_size: int  # the side of the square input
    resize_size: int | None = None  # evaluation: short side to this, then the centre square
    mean: tuple[float, ...] | None = None  # None: the data set's own statistics
    std: tuple[float, ...] | None = None
    rgb: bool = False  # grayscale sets as three channels (torchvision's networks take RGB)


@dataclass
class DataBundle:
    """The train and val splits and what the model and the logs need to know about them."""

    train: Dataset
    val: Dataset
    classes: list[str]
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int = 32
    resize_size: int = 32
    # For the training loader (engine.build_loaders): per-sample draw weights instead of a
    # shuffle (--balanced-sampling), and a transform of each batch (--mixup, --cutmix).
    train_sample_weights: torch.Tensor | None = None
    train_batch_transform: Callable | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def preprocessing(self) -> dict:
        """What a checkpoint records so that evaluation and prediction feed the model alike."""
        return {"image_size": self.image_size, "resize_size": self.resize_size,
                "mean": list(self.mean), "std": list(self.std),
                "in_channels": self.in_channels}  # fmt: skip


class SyntheticShapes(Dataset):
    """Coloured shapes on a coloured background with noise; the class is the shape.

    Position, size, colours and noise level vary per sample. Sample `index` of a split is a
    pure function of (seed, split, index), so the set is deterministic without storing a
    file, and train and val draw from disjoint random streams, so they never share an image.
    """

    MEAN = STD = (0.5, 0.5, 0.5)  # maps [0, 1] to [-1, 1]

    def __init__(
        self,
        size: int,
        image_size: int = 32,
        split: str = "train",
        seed: int = 0,
        mean: tuple[float, ...] = MEAN,
        std: tuple[float, ...] = STD,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.size, self.image_size, self.split, self.seed = size, image_size, split, seed
        self.classes = list(SHAPES)
        coords = torch.linspace(-1.0, 1.0, image_size)
        self._ys, self._xs = torch.meshgrid(coords, coords, indexing="ij")
        self._normalize = v2.Normalize(mean, std)

    def __len__(self) -> int:
        return self.size

    @property
    def targets(self) -> list[int]:
        """Every sample's class, without drawing an image (as torchvision's sets have it)."""
        return [index % len(SHAPES) for index in range(self.size)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(index)
        # numpy's SeedSequence hashes the whole (seed, split, index) key, so no two samples
        # share a stream (torch.Generator would keep only 32 bits of a combined seed).
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        label = index % len(SHAPES)  # as `targets` says
        mask = self._shape_mask(label, *rng.uniform(-0.4, 0.4, size=2), rng.uniform(0.35, 0.6))
        # A light shape on a dark ground, each of a random colour: the contrast keeps every
        # shape visible while colour alone says nothing about the class.
        foreground = torch.from_numpy(rng.uniform(0.55, 1.0, size=(3, 1, 1)).astype(np.float32))
        background = torch.from_numpy(rng.uniform(0.0, 0.4, size=(3, 1, 1)).astype(np.float32))
        noise_shape = (3, self.image_size, self.image_size)
        noise = rng.uniform(0.0, 0.1) * rng.standard_normal(noise_shape, dtype=np.float32)
        image = torch.where(mask, foreground, background) + torch.from_numpy(noise)
        return self._normalize(image.clamp(0.0, 1.0)), label

    def _shape_mask(self, label: int, center_x: float, center_y: float, radius: float):
        """A boolean (H, W) mask of shape `label` centred at (center_x, center_y), in [-1, 1]."""
        u, v = self._xs - center_x, self._ys - center_y  # v grows downwards, as in images
        distance = torch.sqrt(u**2 + v**2)
        shape = SHAPES[label]
        if shape == "circle":
            return distance < radius
        if shape == "square":
            return torch.maximum(u.abs(), v.abs()) < radius * 0.8
        if shape == "triangle":  # apex up
            return (v > -radius) & (v < radius * 0.7) & (u.abs() < (v + radius) * 0.6)
        if shape == "cross":
            arm, width = radius, radius * 0.3
            return ((u.abs() < width) & (v.abs() < arm)) | ((v.abs() < width) & (u.abs() < arm))
        if shape == "ring":
            return (distance < radius) & (distance > radius * 0.55)
        return u.abs() + v.abs() < radius  # diamond


def build_datasets(
    name: str,
    data_dir: str | Path = "data",
    image_size: int | InputFormat = 32,
    download: bool = False,
    seed: int = 0,
    synthetic_size: int = 8_000,
    hflip: bool = True,
) -> DataBundle:
    """Build the train and val splits of data set `name` with their transforms.

    The synthetic set has `synthetic_size` training images and a fifth as many for validation.
    `hflip` mirrors training images at random (folder, cifar10); turn it off for text, digits
    and anything else whose meaning changes in a mirror. `image_size` is the input side, or
    an InputFormat that also sets the normalisation (pretrained weights).
    """
    form = image_size if isinstance(image_size, InputFormat) else InputFormat(image_size)
    if name == "synthetic":
        mean, std = form.mean or SyntheticShapes.MEAN, form.std or SyntheticShapes.STD
        train = SyntheticShapes(synthetic_size, form.image_size, "train", seed, mean, std)
        val = SyntheticShapes(max(synthetic_size // 5, 1), form.image_size, "val", seed, mean, std)
        return DataBundle(train, val, train.classes, 3, mean, std, *_sizes(form))
    if name == "folder":
        return _image_folder(Path(data_dir), form, hflip)
    if name in TORCHVISION_SETS:
        return _torchvision_set(name, Path(data_dir), form, download, hflip)
    raise UserError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def _sizes(form: InputFormat) -> tuple[int, int]:
    """The input side and the evaluation resize of an input format."""
    return form.image_size, form.resize_size or form.image_size


def image_transforms(
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    train: bool,
    hflip: bool,
    resize_size: int | None = None,
) -> v2.Compose:
    """Resize (random crop, optional flip for training; centre crop for eval), normalise."""
    if train:
        geometry = [v2.RandomResizedCrop(image_size, scale=(0.6, 1.0), antialias=True)]
        geometry += [v2.RandomHorizontalFlip()] if hflip else []
    else:
        # The short side to resize_size (image_size unless pretrained weights say otherwise),
        # then the centre square: a square image stays whole at the default (no margin is cut
        # away, so tightly cropped scans keep their edges).
        resize = [v2.Resize(resize_size or image_size, antialias=True)]
        geometry = [*resize, v2.CenterCrop(image_size)]
    return v2.Compose(
        [v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    )


class ImageFolderDataset(datasets.ImageFolder):
    """ImageFolder that ignores hidden folders (.ipynb_checkpoints) and names unreadable files."""

    def __init__(self, root: str, transform=None) -> None:
        super().__init__(root, transform=transform, loader=load_rgb_image)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = sorted(
            entry.name
            for entry in os.scandir(directory)
            if entry.is_dir() and not entry.name.startswith(".")
        )
        if not classes:
            raise FileNotFoundError(f"no class folder in {directory}")
        return classes, {name: index for index, name in enumerate(classes)}


def _image_folder(data_dir: Path, form: InputFormat, hflip: bool) -> DataBundle:
    """DIR/train/<class>/* and DIR/val/<class>/*, any size, grayscale or RGB (loaded as RGB)."""
    if not data_dir.is_dir():
        raise UserError(
            f"--data-dir {data_dir} does not exist; point it at a folder with train/ and val/ "
            "subfolders of class folders"
        )
    for split in ("train", "val"):
        if not (data_dir / split).is_dir():
            raise UserError(
                f"--data-dir {data_dir} has no '{split}' folder; --dataset folder expects "
                f"{data_dir}/train/<class>/*.jpg and {data_dir}/val/<class>/*.jpg"
            )
    splits = {}
    mean, std = form.mean or IMAGENET_MEAN, form.std or IMAGENET_STD
    for split in ("train", "val"):
        train = split == "train"
        transform = image_transforms(form.image_size, mean, std, train, hflip, form.resize_size)
        try:
            splits[split] = ImageFolderDataset(str(data_dir / split), transform=transform)
        except FileNotFoundError as error:
            raise UserError(
                f"{data_dir / split} holds no images in class folders ({error}); "
                f"put them under {data_dir / split}/<class>/"
            ) from None
    if len(splits["train"].classes) < 2:
        raise UserError(
            f"{data_dir}/train holds one class folder ({splits['train'].classes[0]}); a "
            "classifier needs at least two, so add a folder of images for each other class"
        )
    if splits["train"].classes != splits["val"].classes:
        raise UserError(
            f"the class folders of {data_dir}/train ({', '.join(splits['train'].classes)}) and "
            f"{data_dir}/val ({', '.join(splits['val'].classes)}) differ; give both the same set"
        )
    for dataset in splits.values():  # now, before any run folder exists (headers only)
        image_sizes([Path(path) for path, _ in dataset.samples])
    classes = splits["train"].classes
    return DataBundle(splits["train"], splits["val"], classes, 3, mean, std, *_sizes(form))


def _torchvision_set(
    name: str, data_dir: Path, form: InputFormat, download: bool, hflip: bool
) -> DataBundle:
    """One of torchvision's sets, resized to image_size when that differs from its own size."""
    dataset_class, channels, native_size, mean, std = TORCHVISION_SETS[name]
    image_size = form.image_size
    resize = [] if image_size == native_size else [v2.Resize(image_size, antialias=True)]
    augment = [v2.RandomCrop(image_size, padding=image_size // 8)]
    if hflip and name == "cifar10":  # digits must not be mirrored; photos may
        augment.append(v2.RandomHorizontalFlip())
    to_tensor = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if form.rgb and channels == 1:  # grey digits as RGB for a torchvision network
        to_tensor, channels = [*to_tensor, v2.RGB()], 3
        mean, std = mean * 3, std * 3
    mean, std = form.mean or mean, form.std or std
    train_transform = v2.Compose([*to_tensor, *resize, *augment, v2.Normalize(mean, std)])
    val_transform = v2.Compose([*to_tensor, *resize, v2.Normalize(mean, std)])
    try:
        train = dataset_class(
            str(data_dir), train=True, download=download, transform=train_transform
        )
        val = dataset_class(str(data_dir), train=False, download=download, transform=val_transform)
    except (RuntimeError, OSError) as error:
        if download:  # offline, a proxy, a full disk: all end here
            raise UserError(
                f"could not download {name} into {data_dir} ({error}); check the network, "
                f"or put the files there yourself"
            ) from None
        if "download=True" not in str(error):
            raise
        raise UserError(
            f"{name} is not in {data_dir}; add --download to fetch it there "
            f"(or point --data-dir at a folder that has it)"
        ) from None
    return DataBundle(train, val, list(train.classes), channels, mean, std, image_size, image_size)


def inverse_class_frequency(labels: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """One draw weight per sample, 1 / (samples of its class): each class is drawn as often."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    return 1.0 / torch.bincount(labels)[labels].double()


def mix_batches(mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> v2.Transform | None:
    """MixUp, CutMix or (both on) one of them at random per batch; None when both are 0.

    It takes a collated batch (images, class indices) and returns the images mixed and the
    targets as (N, num_classes) probabilities, as torchvision's reference scripts use them.
    """
    mixes = []
    if cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    if mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if not mixes:
        return None
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def preview_grid(
    dataset: Dataset, mean: tuple[float, ...], std: tuple[float, ...], count: int = 32
):
    """The first `count` samples as one image grid, for a look at what the model is fed."""
    images = torch.stack([dataset[index][0] for index in range(min(count, len(dataset)))])
    return make_grid(denormalize(images, mean, std), nrow=8)
