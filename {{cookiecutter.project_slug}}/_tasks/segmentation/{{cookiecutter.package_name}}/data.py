"""Data: (image, mask) pairs, chosen by name (`--dataset`).

- synthetic: procedural scenes of shapes on textured backgrounds, with their masks; no files,
  no download (the default)
- folder: your images and masks, DIR/{train,val}/images/* and DIR/{train,val}/masks/*.png,
  paired by file stem (see masks.py for the mask formats read)

A mask is a (H, W) int64 tensor: the class of each pixel, or the ignore value (--ignore-index)
for pixels that never count. Images are normalised with ImageNet's mean and std, what
torchvision's pretrained backbones expect (and as good as any for the own network).
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.utils import draw_segmentation_masks, make_grid

from .errors import UserError
from .image_files import IMAGE_SUFFIXES, header_size, load_rgb_image
from .masks import class_colours, read_class_names, read_mask, read_palette
from .ops import denormalize

DATASETS = ("synthetic", "folder")
SPLITS = ("train", "val")
# What this project trains; saved in checkpoints so test.py refuses another task's.
TASK = "segmentation"
SYNTHETIC_CLASSES = ("background", "disc", "square", "triangle")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Training's random resize, relative to each image's own size: validation and predict.py see
# images at their own size, so training sees that scale on average (not --crop-size's).
SCALE_RANGE = (0.5, 2.0)
MASK_THREADS = 8  # masks are decoded in parallel when checked up front
ANY_VALUE = 1 << 17  # read_mask's class count when reading values as stored (above 16-bit)


@dataclass
class DataBundle:
    """The train and val splits and what the model and the logs need to know about them."""

    train: Dataset
    val: Dataset
    classes: list[str]
    ignore_index: int = 255
    image_size: int = 64  # the side of the training crops (synthetic: of the scenes)
    palette: list[int] | None = None  # RGB triples of --palette, class by class (colour masks)
    # Training pixels per class, for --class-weights auto (counted once, kept in checkpoints).
    class_pixels: list[int] | None = None
    class_weights: list[float] | None = None  # --class-weights auto's, from class_pixels
    in_channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    # What a training loader may take besides the data (engine.build_loaders); none here.
    train_sample_weights: torch.Tensor | None = None
    train_batch_transform: Callable | None = None
    notes: list[str] = field(default_factory=list)  # what the data check found (said once)
    binary_masks: bool = False  # masks of 0 and 255 read as classes 0 and 1 (kept in checkpoints)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def preprocessing(self) -> dict:
        """What a checkpoint records of how images become model inputs (any size, normalised)."""
        return {"image_size": self.image_size, "in_channels": self.in_channels,
                "mean": list(self.mean), "std": list(self.std)}  # fmt: skip


def normalize_image(image: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """A uint8 (3, H, W) image as the model's float input."""
    return v2.functional.normalize(image.float() / 255.0, list(mean), list(std))


class SyntheticScenes(Dataset):
    """Scenes of discs, squares and triangles on textured backgrounds, with their masks.

    Sample `index` of a split is a pure function of (seed, split, index); train and val draw
    from disjoint random streams. The background is a colour gradient with stripes and noise;
    each shape has a random colour, so the model must learn shapes, not colours. Shapes are
    drawn in order, later ones over earlier ones, and the mask follows what is visible.
    """

    def __init__(self, size: int, image_size: int = 64, split: str = "train", seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.size, self.image_size, self.split, self.seed = size, image_size, split, seed
        coords = torch.linspace(-1.0, 1.0, image_size)
        self._ys, self._xs = torch.meshgrid(coords, coords, indexing="ij")

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.scene(index)
        return normalize_image(image), mask

    def scene(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 (3, H, W) image and int64 (H, W) mask of sample `index`."""
        if not 0 <= index < self.size:
            raise IndexError(index)
        # numpy's SeedSequence hashes the whole key, so no two samples share a stream.
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), index])
        image = self._background(rng)
        mask = torch.zeros(self.image_size, self.image_size, dtype=torch.int64)
        for _ in range(rng.integers(1, 4)):
            label = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
            inside = self._shape(label, rng)
            image = torch.where(inside, self._colour(rng), image)
            mask[inside] = label
        noise = torch.from_numpy(rng.normal(0.0, 0.03, size=image.shape).astype(np.float32))
        return ((image + noise).clamp(0.0, 1.0) * 255).round().to(torch.uint8), mask

    def _background(self, rng: np.random.Generator) -> torch.Tensor:
        angle, tilt = rng.uniform(0, 2 * np.pi, size=2)
        ramp = (np.cos(angle) * self._xs + np.sin(angle) * self._ys + 1) / 2
        start, stop = self._colour(rng), self._colour(rng)
        stripes = torch.sin(
            (np.cos(tilt) * self._xs + np.sin(tilt) * self._ys) * rng.uniform(5, 20)
        )
        return start + (stop - start) * ramp + 0.1 * stripes

    @staticmethod
    def _colour(rng: np.random.Generator) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(0.0, 1.0, size=(3, 1, 1)).astype(np.float32))

    def _shape(self, label: int, rng: np.random.Generator) -> torch.Tensor:
        """A boolean (H, W) mask of one shape of class `label`, at a random place and size."""
        center_x, center_y = rng.uniform(-0.6, 0.6, size=2)
        radius = rng.uniform(0.2, 0.45)
        u, v = self._xs - center_x, self._ys - center_y
        if SYNTHETIC_CLASSES[label] == "disc":
            return u**2 + v**2 < radius**2
        if SYNTHETIC_CLASSES[label] == "square":
            return (u.abs() < radius * 0.85) & (v.abs() < radius * 0.85)
        # An upright triangle: above the base, below both slanted sides.
        return (v < radius * 0.6) & (2 * u.abs() - radius < -v)


@dataclass(frozen=True)
class Pair:
    """An image file and its mask file."""

    image: Path
    mask: Path


class FolderPairs(Dataset):
    """Images and masks of one split of a folder; `transform` moves them together."""

    def __init__(self, pairs: list[Pair], read: Callable[[Path], torch.Tensor], transform):
        self.pairs, self.read, self.transform = pairs, read, transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]
        image = tv_tensors.Image(v2.functional.pil_to_tensor(load_rgb_image(pair.image)))
        mask = tv_tensors.Mask(self.read(pair.mask))
        image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


class RandomScaledCrop(v2.Transform):
    """A `size` px crop of an image and its mask resized by a random factor of their own size
    (uniform over `scales`); where the resized image is smaller than the crop, the rest is
    padding (black image, `mask_fill` in the mask). Computed as a crop of size / factor px of
    the original, resized to `size` (the image bilinear with antialiasing, a tv_tensors.Mask
    nearest): its cost does not grow with the image."""

    def __init__(self, size: int, scales: tuple[float, float], mask_fill: int) -> None:
        super().__init__()
        self.size, self.scales, self.mask_fill = size, scales, mask_fill

    def make_params(self, flat_inputs: list) -> dict:
        height, width = next(v2.functional.get_size(inpt) for inpt in flat_inputs
                             if isinstance(inpt, tv_tensors.Image))  # fmt: skip
        factor = torch.empty(()).uniform_(*self.scales).item()
        window = max(1, round(self.size / factor))
        return {"window": window, "top": _offset(height, window), "left": _offset(width, window)}

    def transform(self, inpt, params: dict):
        if not isinstance(inpt, tv_tensors.Image | tv_tensors.Mask):
            return inpt
        # The part of the window inside the image is cropped and resized; the padding around
        # it comes after the resize, so no pixel blends image and padding.
        height, width = v2.functional.get_size(inpt)
        rows = _span(params["top"], params["window"], height, self.size)
        columns = _span(params["left"], params["window"], width, self.size)
        box = v2.functional.crop(inpt, rows.start, columns.start, rows.length, columns.length)
        resized = v2.functional.resize(box, [rows.resized, columns.resized], antialias=True)
        fill = self.mask_fill if isinstance(inpt, tv_tensors.Mask) else 0
        padding = [columns.before, rows.before, columns.after, rows.after]
        return v2.functional.pad(resized, padding, fill=fill)


class Span(NamedTuple):
    """Along one side: the part of a crop's window inside the image (its start and length in
    the image), its length once resized, and the padding before and after it in the crop."""

    start: int
    length: int
    resized: int
    before: int
    after: int


def _span(offset: int, window: int, side: int, size: int) -> Span:
    """The window [offset, offset + window) along an image side of `side` px, shown at `size`."""
    start, stop = max(offset, 0), min(offset + window, side)
    scale = size / window
    before = min(size - 1, round((start - offset) * scale))
    resized = max(1, min(size - before, round((stop - start) * scale)))
    return Span(start, stop - start, resized, before, size - before - resized)


def _offset(length: int, window: int) -> int:
    """Where a window starts along a side of `length` px: anywhere inside when it fits, else
    anywhere that holds the whole side (negative: padding before the image)."""
    if length >= window:
        return int(torch.randint(0, length - window + 1, ()))
    return -int(torch.randint(0, window - length + 1, ()))


def train_transform(crop_size: int, ignore_index: int) -> v2.Transform:
    """A crop of --crop-size after a random resize (SCALE_RANGE of the image's own size),
    padded where the resized image is smaller (black image, ignored mask), a random
    horizontal flip, then normalisation. The randomness comes from torch's generator, which
    the loader seeds per sample."""
    return v2.Compose([
        RandomScaledCrop(crop_size, SCALE_RANGE, mask_fill=ignore_index),
        v2.RandomHorizontalFlip(),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
    ])  # fmt: skip


def eval_transform(height: int, width: int, ignore_index: int) -> v2.Transform:
    """The whole image, normalised, padded at the bottom and right to the split's largest size
    (so images of any size share a batch); the padding's mask pixels are ignored, so the scores
    are those of the images alone."""
    return v2.Compose([
        PadTo(height, width, ignore_index),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(list(IMAGENET_MEAN), list(IMAGENET_STD)),
    ])  # fmt: skip


class PadTo(v2.Transform):
    """Pad images (zeros) and masks (the ignore value) at the bottom and right to a size."""

    def __init__(self, height: int, width: int, ignore_index: int) -> None:
        super().__init__()
        self.height, self.width, self.ignore_index = height, width, ignore_index

    def transform(self, inpt, params):
        height, width = inpt.shape[-2:]
        fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
        padding = [0, 0, self.width - width, self.height - height]
        return v2.functional.pad(inpt, padding, fill=fill)


def build_datasets(
    name: str,
    data_dir: str | Path = "data",
    crop_size: int = 64,
    seed: int = 0,
    synthetic_size: int = 2_000,
    ignore_index: int = 255,
    palette_file: str | Path | None = None,
    count_pixels: bool = False,
    splits: tuple[str, ...] = SPLITS,
    class_names: list[str] | None = None,
    binary_masks: bool | None = None,
) -> DataBundle:
    """The train and val splits of data set `name`; with `count_pixels`, the training masks'
    pixels per class too (for --class-weights auto). A folder's `splits` alone are read (the
    others are empty), its classes named by classes.txt, else by `class_names`, else counted;
    `binary_masks` says how 0/255 masks are read (None: decided from the masks)."""
    if name == "synthetic":
        train = SyntheticScenes(synthetic_size, crop_size, "train", seed)
        val = SyntheticScenes(max(synthetic_size // 5, 1), crop_size, "val", seed)
        data = DataBundle(train, val, list(SYNTHETIC_CLASSES), ignore_index, crop_size)
        if count_pixels:
            data.class_pixels = synthetic_class_pixels(train)
        return data
    if name == "folder":
        return _image_folder(
            Path(data_dir), crop_size, ignore_index, palette_file, splits, class_names, binary_masks
        )
    raise UserError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def synthetic_class_pixels(scenes: SyntheticScenes) -> list[int]:
    """Pixels per class over the synthetic training masks."""
    counts = torch.zeros(len(SYNTHETIC_CLASSES), dtype=torch.int64)
    for index in range(len(scenes)):
        counts += torch.bincount(scenes.scene(index)[1].flatten(), minlength=len(counts))
    return counts.tolist()


def _image_folder(
    data_dir: Path,
    crop_size: int,
    ignore_index: int,
    palette_file: str | Path | None,
    splits: tuple[str, ...] = SPLITS,
    class_names: list[str] | None = None,
    binary_masks: bool | None = None,
) -> DataBundle:
    """DIR/{train,val}/{images,masks} (of `splits`): every pair checked before training
    (paired, same size, known mask values), and the training pixels counted per class."""
    check_layout(data_dir, splits)
    palette = read_palette(palette_file) if palette_file is not None else None
    names = read_class_names(data_dir) or class_names
    split_pairs = {split: paired_files(data_dir / split) if split in splits else []
                   for split in SPLITS}  # fmt: skip
    found = {
        split: survey_masks(pairs, ignore_index, palette) for split, pairs in split_pairs.items()
    }
    surveys = [survey for split in SPLITS for survey in found[split]]
    # One decision for the data set (a 0/255 mask without foreground would look binary too),
    # taken over every split in training and kept, so an evaluation reads masks alike.
    binary = binary_masks
    if binary is None:
        binary = palette is None and looks_binary(surveys) and (names is None or len(names) == 2)
    if names is None:
        pairs = [pair for split in SPLITS for pair in split_pairs[split]]
        classes = count_classes(data_dir, pairs, surveys, ignore_index, binary)
        names = [f"class_{index}" for index in range(classes)]
    if len(names) < 2:
        raise UserError(
            f"the masks under {data_dir} hold one class only (0); segmentation needs two or "
            f"more (e.g. background and object), or a {data_dir / 'classes.txt'} naming them"
        )

    def read(path: Path) -> torch.Tensor:
        return read_mask(path, num_classes=len(names), ignore_index=ignore_index,
                         palette=palette, binary=binary)  # fmt: skip

    for split in SPLITS:
        for pair, survey in zip(split_pairs[split], found[split], strict=True):
            check_survey(pair, survey, len(names), ignore_index, binary, read)
    counts = class_pixels(found["train"], len(names), ignore_index, binary)
    sizes = [survey.size for survey in found["val"]]
    height, width = max(size[0] for size in sizes), max(size[1] for size in sizes)
    train = FolderPairs(split_pairs["train"], read, train_transform(crop_size, ignore_index))
    val = FolderPairs(split_pairs["val"], read, eval_transform(height, width, ignore_index))
    notes = [f"the masks under {data_dir} hold only 0 and 255: read as binary masks, "
             "0 = class 0, 255 = class 1"] if binary else []  # fmt: skip
    return DataBundle(
        train, val, names, ignore_index, crop_size,
        palette=palette_colours(palette, len(names)) if palette else None,
        class_pixels=counts.tolist(), notes=notes, binary_masks=binary,
    )  # fmt: skip


def check_layout(data_dir: Path, splits: tuple[str, ...] = SPLITS) -> None:
    """DIR/train/images, DIR/train/masks and the same under val/ (of `splits`), or one
    sentence saying what is missing."""
    if not data_dir.is_dir():
        raise UserError(
            f"--data-dir {data_dir} does not exist; point it at a folder with train/ and val/, "
            "each holding images/ and masks/"
        )
    for split in splits:
        for kind in ("images", "masks"):
            if not (data_dir / split / kind).is_dir():
                raise UserError(
                    f"--data-dir {data_dir} has no {split}/{kind} folder; --dataset folder expects "
                    f"{data_dir}/{split}/images/ and {data_dir}/{split}/masks/ (masks as PNG)"
                )


def paired_files(split_dir: Path) -> list[Pair]:
    """The split's images and masks paired by file stem; one left without its partner, or two
    images of one stem, is a UserError naming the file."""
    images = _files_by_stem(split_dir / "images", IMAGE_SUFFIXES)
    masks = _files_by_stem(split_dir / "masks", {".png"})
    for stem, image in images.items():
        if stem not in masks:
            raise UserError(
                f"the image {image} has no mask (looked for {split_dir / 'masks' / stem}.png); "
                "add the mask or remove the image"
            )
    for stem, mask in masks.items():
        if stem not in images:
            raise UserError(
                f"the mask {mask} has no image of the same name in {split_dir / 'images'}; "
                "add the image or remove the mask"
            )
    if not images:
        raise UserError(f"{split_dir / 'images'} holds no images; put images and masks there")
    return [Pair(images[stem], masks[stem]) for stem in sorted(images)]


def _files_by_stem(folder: Path, suffixes: set[str]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes:
            continue
        if path.stem in files:
            raise UserError(
                f"{files[path.stem]} and {path} share the name {path.stem!r}; images and masks are "
                "paired by name, so rename or remove one"
            )
        files[path.stem] = path
    return files


@dataclass(frozen=True)
class MaskSurvey:
    """What a mask holds, read once: its size (H, W) and pixels per value."""

    size: tuple[int, int]
    counts: dict[int, int]


def survey_masks(pairs: list[Pair], ignore_index: int, palette) -> list[MaskSurvey]:
    """Read every mask of a split now (in threads; PNG decoding frees the GIL), each value as
    stored (colours through the palette): classes are counted and checked from these."""

    def survey(pair: Pair) -> MaskSurvey:
        values = read_mask(pair.mask, num_classes=ANY_VALUE, ignore_index=ignore_index,
                           palette=palette, binary=False)  # fmt: skip
        unique, counts = torch.unique(values, return_counts=True)
        return MaskSurvey(
            tuple(values.shape), dict(zip(unique.tolist(), counts.tolist(), strict=True))
        )

    with ThreadPoolExecutor(max_workers=MASK_THREADS) as pool:
        return list(pool.map(survey, pairs))


def class_pixels(
    surveys: list[MaskSurvey], classes: int, ignore_index: int, binary: bool
) -> torch.Tensor:
    """Pixels per class over the surveyed masks (binary: 0 and 255 are classes 0 and 1)."""
    counts = torch.zeros(classes, dtype=torch.int64)
    for survey in surveys:
        for value, count in survey.counts.items():
            if binary:
                counts[int(value == 255)] += count
            elif value != ignore_index:
                counts[value] += count
    return counts


def looks_binary(surveys: list[MaskSurvey]) -> bool:
    """Whether the masks are black and white pictures: only 0 and 255 in all, 255 in some."""
    values = set().union(*(survey.counts for survey in surveys))
    return values <= {0, 255} and 255 in values


def count_classes(
    data_dir: Path, pairs: list[Pair], surveys: list[MaskSurvey], ignore_index: int, binary: bool
) -> int:
    """Without classes.txt: the largest class value in any mask, plus one. A value no mask
    holds below it is a UserError: the largest is then likely a stray value (or the ignore
    value is another than --ignore-index), which would add classes that never occur."""
    if binary:
        return 2
    values = set().union(*(survey.counts for survey in surveys)) - {ignore_index}
    top = max(values, default=0)
    missing = sorted(set(range(top)) - values)
    if missing:
        first = next(pair.mask for pair, survey in zip(pairs, surveys, strict=True)
                     if top in survey.counts)  # fmt: skip
        raise UserError(
            f"without {data_dir / 'classes.txt'} the classes are 0 to the largest mask value, "
            f"{top} (first in {first}), but no mask holds {value_ranges(missing)}; relabel the stray "
            f"values, set --ignore-index to the value that means 'no label', or write "
            "classes.txt with one name a line for each class"
        )
    return top + 1


def value_ranges(values: list[int]) -> str:
    """Sorted integers in short: [3, 4, 5, 6, 9] -> '3-6, 9'."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][-1] + 1:
            runs[-1].append(value)
        else:
            runs.append([value])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def check_survey(
    pair: Pair,
    survey: MaskSurvey,
    classes: int,
    ignore_index: int,
    binary: bool,
    read: Callable[[Path], torch.Tensor],
) -> None:
    """A mask whose size differs from its image's, or with a value neither a class nor the
    ignore value, is a UserError naming it (read_mask words the second)."""
    width, height = header_size(pair.image)
    if survey.size != (height, width):
        raise UserError(
            f"the mask {pair.mask} is {survey.size[1]}x{survey.size[0]} px but its image "
            f"{pair.image} is {width}x{height}; masks must be their image's size"
        )
    allowed = {0, 255} if binary else {*range(classes), ignore_index}
    if not set(survey.counts) <= allowed:
        read(pair.mask)  # raises the UserError that names the value and where it is
        raise UserError(f"the mask {pair.mask} holds values that are no class of {classes}")


def palette_colours(palette: dict[tuple[int, int, int], int], classes: int) -> list[int]:
    """The classes' colours as PIL's flat palette list: each class's first colour in the
    palette file, VOC's colour for a class the file gives none."""
    colours = standard_colours(classes)
    seen = set()
    for colour, value in palette.items():
        if value < classes and value not in seen:
            colours[3 * value : 3 * value + 3] = colour
            seen.add(value)
    return colours


def colour_masks(
    images: torch.Tensor, masks: torch.Tensor, palette: list[int], alpha: float = 0.5
) -> torch.Tensor:
    """uint8 images (N, 3, H, W) with each mask's classes painted over them in the palette's
    colours (ignored pixels left as they are)."""
    colours = [tuple(palette[3 * c : 3 * c + 3]) for c in range(len(palette) // 3)]
    painted = []
    for image, mask in zip(images, masks, strict=True):
        layers = torch.stack([mask == c for c in range(len(colours))])
        painted.append(draw_segmentation_masks(image, layers, alpha=alpha, colors=colours))
    return torch.stack(painted)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Normalised model inputs back to uint8 images."""
    restored = denormalize(images.detach().float().cpu(), IMAGENET_MEAN, IMAGENET_STD)
    return (restored.clamp(0.0, 1.0) * 255).round().to(torch.uint8)


def mask_grid(
    images: torch.Tensor, masks: list[torch.Tensor], palette: list[int], count: int = 8
) -> torch.Tensor:
    """Rows: the images, then the images under each of `masks` (true, predicted, ...)."""
    photos = to_uint8(images[:count])
    rows = [photos] + [colour_masks(photos, mask[:count].cpu(), palette) for mask in masks]
    return make_grid(torch.cat(rows), nrow=photos.size(0))


def preview_grid(dataset: Dataset, palette: list[int], count: int = 8) -> torch.Tensor:
    """The first `count` training samples: images above, their masks over them below."""
    pairs = [dataset[index] for index in range(min(count, len(dataset)))]
    images, masks = (torch.stack(items) for items in zip(*pairs, strict=True))
    return mask_grid(images, [masks], palette, count)


def standard_colours(classes: int) -> list[int]:
    """VOC's colours of the classes (masks.class_colours), as PIL's flat palette list."""
    return class_colours(classes).flatten().tolist()


def class_palette(num_classes: int, palette: list[int] | None) -> list[int]:
    """The colours of the classes: --palette's, else VOC's."""
    return palette if palette is not None else standard_colours(num_classes)
