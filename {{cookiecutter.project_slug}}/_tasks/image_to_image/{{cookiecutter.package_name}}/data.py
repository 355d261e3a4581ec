"""Data: pairs (corrupted image, clean image) made on the fly from clean images (`--dataset`).

- synthetic: procedural scenes (gradients, shapes, stripes); no files, no download (default)
- folder: your clean photos, DIR/train/** and DIR/val/** (any size and mode, loaded as RGB)

The corruption (`--corruption noise|blur|downsample` and its strength) is applied per sample,
with randomness seeded from (seed, epoch, index), so runs and resumes see the same pairs.
Images stay in [0, 1] (not normalised): the model, the losses and PSNR/SSIM all use that range.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.utils import make_grid

from .errors import UserError
from .image_files import IMAGE_SUFFIXES, image_sizes, images_under, load_rgb_image
from .ops import CORRUPTIONS, STRENGTH, corrupt

DATASETS = ("synthetic", "folder")
SPLITS = ("train", "val")
# What this project trains; saved in checkpoints so test.py refuses another task's.
TASK = "image_to_image"


@dataclass
class DataBundle:
    """The train and val splits and what the model and the logs need to know about them."""

    train: Dataset
    val: Dataset
    in_channels: int = 3
    # Restoration has no classes; checkpoints store this empty list in their "classes" entry.
    classes: list[str] = field(default_factory=list)
    image_size: int = 32  # the side of the square crops the model trains on
    # What a training loader may take besides the data (engine.build_loaders); none here.
    train_sample_weights: torch.Tensor | None = None
    train_batch_transform: Callable | None = None

    @property
    def preprocessing(self) -> dict:
        """What a checkpoint records of how images become model inputs (values in [0, 1])."""
        return {"image_size": self.image_size, "in_channels": self.in_channels}


class SyntheticScenes(Dataset):
    """Clean procedural images: a colour gradient, then shapes and stripes in random colours.

    Sample `index` of a split is a pure function of (seed, split, index), and train and val
    draw from disjoint random streams. Sharp edges, flat areas and fine stripes give a
    restoration model each kind of content to learn.
    """

    def __init__(self, size: int, image_size: int = 32, split: str = "train", seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.size, self.image_size, self.split, self.seed = size, image_size, split, seed
        coords = torch.linspace(-1.0, 1.0, image_size)
        self._ys, self._xs = torch.meshgrid(coords, coords, indexing="ij")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.size:
            raise IndexError(index)
        # numpy's SeedSequence hashes the whole (seed, split, index) key, so no two samples
        # share a stream (torch.Generator would keep only 32 bits of a combined seed).
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * self._xs + np.sin(angle) * self._ys + 1) / 2  # 0..1 across
        start, stop = self._colour(rng), self._colour(rng)
        image = start + (stop - start) * ramp
        for _ in range(rng.integers(2, 6)):
            image = torch.where(self._shape(rng), self._colour(rng), image)
        return image.clamp(0.0, 1.0)

    @staticmethod
    def _colour(rng: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(0.0, 1.0, size=(3, 1, 1)).astype(np.float32))

    def _shape(self, rng: np.random.Generator) -> torch.Tensor:
        """A boolean (H, W) mask: a disc, a rectangle or a patch of stripes."""
        center_x, center_y = rng.uniform(-0.8, 0.8, size=2)
        radius = rng.uniform(0.15, 0.6)
        u, v = self._xs - center_x, self._ys - center_y
        kind = rng.integers(3)
        if kind == 0:
            return u**2 + v**2 < radius**2
        box = (u.abs() < radius) & (v.abs() < radius * rng.uniform(0.4, 1.0))
        if kind == 1:
            return box
        period, tilt = rng.uniform(0.15, 0.4), rng.uniform(0, np.pi)
        phase = (np.cos(tilt) * u + np.sin(tilt) * v) / period
        return box & (torch.frac(phase) < 0.5)


class ImageFiles(Dataset):
    """Every image under a folder (searched recursively; hidden folders skipped) as crops.

    Training takes `crops_per_image` random crops of each image per epoch (a random
    position and a random horizontal flip); validation one fixed centre crop of each.
    """

    def __init__(self, root: Path, image_size: int, train: bool, crops_per_image: int = 1):
        self.files = images_under(root)
        if not self.files:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise UserError(f"{root} holds no images ({suffixes}); put clean images there")
        self.image_size, self.train = image_size, train
        self.crops_per_image = crops_per_image if train else 1
        # Now, not minutes into training: headers only, in parallel.
        for path, (width, height) in zip(self.files, image_sizes(self.files), strict=True):
            if min(width, height) < image_size:
                raise UserError(
                    f"the image {path} is {width}x{height} px, smaller than --image-size "
                    f"{image_size}; lower --image-size or remove the image"
                )

    def __len__(self) -> int:
        return len(self.files) * self.crops_per_image

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.files[index // self.crops_per_image]
        image = v2.functional.pil_to_tensor(load_rgb_image(str(path)))
        height, width = image.shape[-2:]
        size = self.image_size
        if self.train:  # drawn from torch's generator, which EpochSeeded seeds per sample
            top = int(torch.randint(height - size + 1, ()))
            left = int(torch.randint(width - size + 1, ()))
        else:
            top, left = (height - size) // 2, (width - size) // 2
        crop = image[:, top : top + size, left : left + size]
        if self.train and bool(torch.rand(()) < 0.5):
            crop = crop.flip(-1)
        return crop.float() / 255.0


class CorruptedPairs(Dataset):
    """(corrupted, clean) pairs from a data set of clean images."""

    def __init__(self, clean: Dataset, corruption: str, strength: float) -> None:
        self.clean, self.corruption, self.strength = clean, corruption, strength

    def __len__(self) -> int:
        return len(self.clean)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clean = self.clean[index]
        return corrupt(clean, self.corruption, self.strength), clean


def build_datasets(
    name: str,
    data_dir: str | Path = "data",
    image_size: int = 32,
    seed: int = 0,
    synthetic_size: int = 8_000,
    corruption: str = "noise",
    strength: float | None = None,
    crops_per_image: int = 8,
) -> DataBundle:
    """Build the train and val pairs of data set `name`, corrupted by `corruption`.

    `strength` None means the corruption's default (STRENGTH). The synthetic set has
    `synthetic_size` training images and a fifth as many for validation.
    """
    strength = check_corruption(corruption, strength, image_size)
    if name == "synthetic":
        train = SyntheticScenes(synthetic_size, image_size, "train", seed)
        val = SyntheticScenes(max(synthetic_size // 5, 1), image_size, "val", seed)
    elif name == "folder":
        train, val = _image_folder(Path(data_dir), image_size, crops_per_image)
    else:
        raise UserError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DataBundle(
        CorruptedPairs(train, corruption, strength),
        CorruptedPairs(val, corruption, strength),
        image_size=image_size,
    )


def check_corruption(corruption: str, strength: float | None, image_size: int) -> float:
    """The strength to use; a UserError naming the limit when it makes no sense."""
    if corruption not in CORRUPTIONS:
        raise UserError(
            f"unknown corruption {corruption!r}; choose one of {', '.join(CORRUPTIONS)}"
        )
    meaning, default = STRENGTH[corruption]
    strength = default if strength is None else strength
    limits = {
        "noise": (0.0 < strength <= 1.0, "between 0 and 1"),
        "blur": (0.0 < strength <= image_size / 4, f"above 0 and at most {image_size / 4:g}"),
        "downsample": (1.0 < strength <= image_size / 2, f"above 1 and at most {image_size / 2:g}"),
    }
    valid, allowed = limits[corruption]
    if not valid:
        raise UserError(
            f"--corruption-strength {strength:g} does not suit --corruption {corruption} "
            f"({meaning}); give a value {allowed}"
        )
    return strength


def _image_folder(data_dir: Path, image_size: int, crops_per_image: int) -> tuple[Dataset, Dataset]:
    """DIR/train/** and DIR/val/**: clean images of any size and mode."""
    if not data_dir.is_dir():
        raise UserError(
            f"--data-dir {data_dir} does not exist; point it at a folder with train/ and val/ "
            "subfolders of clean images"
        )
    for split in SPLITS:
        if not (data_dir / split).is_dir():
            raise UserError(
                f"--data-dir {data_dir} has no '{split}' folder; --dataset folder expects "
                f"clean images in {data_dir}/train/ and {data_dir}/val/"
            )
    train = ImageFiles(data_dir / "train", image_size, True, crops_per_image)
    val = ImageFiles(data_dir / "val", image_size, False)
    return train, val


def preview_grid(dataset: Dataset, count: int = 8) -> torch.Tensor:
    """The first `count` pairs as an image grid: corrupted above, clean below."""
    pairs = [dataset[index] for index in range(min(count, len(dataset)))]
    corrupted, clean = (torch.stack(images) for images in zip(*pairs, strict=True))
    return make_grid(torch.cat([corrupted, clean]), nrow=len(pairs))


def comparison_grid(
    corrupted: torch.Tensor, output: torch.Tensor, target: torch.Tensor, count: int = 8
) -> torch.Tensor:
    """Rows of corrupted input | model output | target, for TensorBoard and --save-samples."""
    rows = [
        images[:count].detach().float().clamp(0.0, 1.0).cpu()
        for images in (corrupted, output, target)
    ]
    return make_grid(torch.cat(rows), nrow=rows[0].size(0))
