"""predict.py's restorations: each input image restored and written under --output-dir with its
own name (and, with --corrupt, the corrupted input beside it), one record per input.

Any image size goes through the U-Net: padded (mirrored) to a multiple of 2**depth, the side
its downsampling needs, and cropped back. --tile runs large images in overlapping tiles
(ops.tiling); by default they overlap by more than twice the model's receptive radius, so the
tiled result is the whole-image result.
"""

import argparse
import json
import os
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from . import {{ cookiecutter.model_name }} as architecture
from .data import check_corruption
from .engine.inference import InputGroup, PredictionBatch, Predictor
from .errors import UserError
from .input_files import InputFile
from .ops import corrupt, pad_to_multiple, tiled_apply

CORRUPTED_TAG = ".corrupted"  # --corrupt writes photo.png's corrupted input as photo.corrupted.png
LOSSY_QUALITY = 95  # JPEG and WebP: no visible loss, a fraction of a PNG's size
# The largest image run in one piece without --tile: each of the U-Net's first feature maps of
# a 4096 x 4096 image is 0.5 GiB at width 8, and the network holds several at once (a
# 12000 x 12000 image asked for 9 GB in one allocation).
WHOLE_IMAGE_MAX_PIXELS = 4096 * 4096
SUGGESTED_TILE = 1024  # the --tile the refusal suggests (rounded to what the model takes)


@dataclass(frozen=True)
class Tiling:
    """How --tile runs an image: tile side, overlap, the ramp's margin, tiles per forward pass."""

    size: int
    overlap: int
    margin: int  # pixels at a tile's inner edges that get no weight (see ops.tiling)
    tiles_per_run: int
    approximation: str = ""  # why tiles do not reproduce the whole-image result, if they do not


def check_tiling(args: argparse.Namespace, config: dict) -> Tiling | None:
    """--tile and --tile-overlap as a Tiling (None without --tile); a UserError when they do not
    suit the model."""
    if args.tile is None:
        if args.tile_overlap is not None:
            raise UserError("--tile-overlap needs --tile; give both, or neither")
        return None
    multiple = 2 ** config["depth"]
    if args.tile % multiple:
        lower = args.tile // multiple * multiple
        nearest = f"{lower} or {lower + multiple}" if lower else str(multiple)
        raise UserError(
            f"--tile {args.tile} is not a multiple of {multiple} (the model halves images "
            f"{config['depth']} times); give --tile {nearest}"
        )
    radius = architecture.receptive_radius(config["depth"])
    overlap = default_overlap(config["depth"]) if args.tile_overlap is None else args.tile_overlap
    if overlap > args.tile - multiple:
        if args.tile_overlap is None:
            raise UserError(
                f"--tile {args.tile} is too small for the default --tile-overlap {overlap} (more "
                f"than twice the model's receptive radius of {radius} px, so tiles agree with "
                f"the whole image); give --tile {overlap + multiple} or more, or a smaller "
                "--tile-overlap (tiles then agree only approximately)"
            )
        raise UserError(
            f"--tile-overlap {overlap} leaves --tile {args.tile} no room to step; give an "
            f"overlap of at most {args.tile - multiple}"
        )
    approximation = ""
    if config["norm"] == "group":  # no margin makes a tile exact
        approximation = "a group-norm model normalises each tile by its own statistics"
    elif overlap <= 2 * radius:
        approximation = f"exact tiles need an overlap above {2 * radius} px"
    # Exact tiles leave out their outer `radius` px. Otherwise a quarter of the overlap at each
    # side, the worst pixels of each tile, and a ramp across the middle half: the smallest
    # seams of the choices measured (no margin, a quarter, a half).
    margin = overlap // 4 if approximation else radius
    return Tiling(args.tile, overlap, margin, args.batch_size, approximation)


def default_overlap(depth: int) -> int:
    """The smallest multiple of 2**depth above twice the receptive radius: tiles then agree
    exactly with the whole image (both tiles of an overlap leave out their outer `radius` px)."""
    multiple = 2**depth
    return (2 * architecture.receptive_radius(depth) // multiple + 1) * multiple


def corruption_of(card: dict) -> tuple[str, float]:
    """The corruption (kind, strength) the model was trained to undo, from its model card."""
    settings = card["settings"]
    if settings.get("corruption") is None:
        raise UserError(
            f"{card.get('checkpoint', 'the model file')} records no corruption, so --corrupt "
            "cannot apply one; drop --corrupt and give corrupted images"
        )
    kind = settings["corruption"]
    image_size = card["preprocessing"]["image_size"]
    return kind, check_corruption(kind, settings.get("corruption_strength"), image_size)


def corrupted_name(name: str) -> str:
    """Where --corrupt writes the corrupted input of `name`: photo.png -> photo.corrupted.png."""
    path = Path(name)
    return path.with_name(f"{path.stem}{CORRUPTED_TAG}{path.suffix}").as_posix()


def noise_generator(name: str) -> torch.Generator:
    """A CPU generator seeded by the image's output name: the same noise on every run, in any
    batch and on any device."""
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def check_outputs(output_dir: Path, images: list[InputFile], with_corrupted: bool) -> None:
    """Refuse, before any work, outputs that would overwrite an input or each other."""
    inputs = {image.path.resolve(): image.path for image in images}
    input_files = {_file_id(path) for path in inputs} - {None}
    planned: dict[Path, str] = {}
    for image in images:
        names = [image.name, corrupted_name(image.name)] if with_corrupted else [image.name]
        for name in names:
            output = (output_dir / name).resolve()
            if output in inputs or _file_id(output) in input_files:
                raise UserError(
                    f"--output-dir {output_dir} would write {output_dir / name} over the input "
                    f"{inputs.get(output, output)}; pick an --output-dir outside the inputs"
                )
            if output in planned:
                raise UserError(
                    f"the outputs of {planned[output]} and {image.path} would both be "
                    f"{output_dir / name}; rename one of them"
                )
            planned[output] = str(image.path)


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (two names of one file share it), else None."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def make_output_dir(output_dir: Path) -> None:
    """Create --output-dir (and its parents); a UserError when that is impossible."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create --output-dir {output_dir} ({error.strerror or error}); "
            "pick a writable folder"
        ) from None


class Predictions:
    """Restores batches of images and writes them; one record per input, in input order."""

    def __init__(
        self,
        card: dict,
        images: list[InputFile],
        output_dir: Path,
        tiling: Tiling | None,
        corruption: tuple[str, float] | None,
    ) -> None:
        self.images, self.output_dir = images, output_dir
        self.tiling, self.corruption = tiling, corruption
        self.multiple = 2 ** card["model_config"]["depth"]
        # The smallest --tile that the default overlap leaves room in (see check_tiling).
        self.smallest_tile = default_overlap(card["model_config"]["depth"]) + self.multiple
        self.written = self.failed = 0
        self._records: dict[int, dict] = {}

    def __enter__(self) -> "Predictions":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """Nothing to close: each image is written whole (under a temporary name) as it comes."""

    @property
    def records(self) -> list[dict]:
        """{"path", "output", "width", "height"[, "corrupted"]} or {"path", "error"}, by input."""
        return [self._records[index] for index in sorted(self._records)]

    def add(self, predictor: Predictor, batch: PredictionBatch) -> None:
        """Restore the batch's images and write them; its records (failed inputs: error
        records) go to stdout as JSON lines, in input order."""
        records = {index: {"path": str(image.path), "error": reason}
                   for index, image, reason in batch.failures}  # fmt: skip
        for group in batch.groups:
            if self.tiling is None and group.batch[0, 0].numel() > WHOLE_IMAGE_MAX_PIXELS:
                records.update(self._too_large(group))
                continue
            inputs = group.batch
            if self.corruption is not None:
                kind, strength = self.corruption
                inputs = torch.stack(
                    [corrupt(clean, kind, strength, noise_generator(image.name))
                     for clean, image in zip(inputs, group.inputs, strict=True)]
                )  # fmt: skip
            restored = self.restore(predictor, inputs).cpu()
            # One copy to the host per group; the corrupted inputs too, when they are written.
            befores = inputs.cpu() if self.corruption is not None else [None] * len(inputs)
            for index, image, after, before in zip(
                group.indices, group.inputs, restored, befores, strict=True
            ):
                records[index] = self._write(image, after, before)
        for index in sorted(records):
            self._record(index, records[index])
        sys.stdout.flush()

    def _too_large(self, group: InputGroup) -> dict[int, dict]:
        """Error records for a group of images too large to run whole (all of one size)."""
        height, width = group.batch.shape[-2:]
        tile = max(SUGGESTED_TILE // self.multiple * self.multiple, self.smallest_tile)
        return {
            index: {
                "path": str(image.path),
                "error": f"{image.path} is too large for one piece ({width}x{height} px, more "
                f"than {WHOLE_IMAGE_MAX_PIXELS} px): use --tile {tile}",
            }
            for index, image in zip(group.indices, group.inputs, strict=True)
        }

    def restore(self, predictor: Predictor, images: torch.Tensor) -> torch.Tensor:
        """The model's output for a (N, C, H, W) batch of any H and W, clipped to [0, 1]."""
        height, width = images.shape[-2:]
        padded = pad_to_multiple(images.to(predictor.device), self.multiple)
        if self.tiling is None:
            output = predictor.run(padded)
        else:
            tiling = self.tiling
            output = tiled_apply(
                predictor.run, padded, tiling.size, tiling.overlap, self.multiple,
                tiling.margin, tiling.tiles_per_run,
            )  # fmt: skip
        return output[..., :height, :width].clamp(0.0, 1.0)

    def _write(self, image: InputFile, restored: torch.Tensor, corrupted: torch.Tensor | None):
        """Save one restored image (and its corrupted input); its record, or an error record."""
        output = self.output_dir / image.name
        record = {"path": str(image.path), "output": str(output)}
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            save_image(restored, output)
            if corrupted is not None:
                record["corrupted"] = str(self.output_dir / corrupted_name(image.name))
                save_image(corrupted, Path(record["corrupted"]))
        except (OSError, ValueError, KeyError) as error:
            return {"path": str(image.path), "error": f"cannot write {output} ({error})"}
        height, width = restored.shape[-2:]
        return {**record, "width": width, "height": height}

    def _record(self, index: int, record: dict) -> None:
        if "error" in record:
            self.failed += 1
        else:
            self.written += 1
        self._records[index] = record
        print(json.dumps(record))

    def summary(self) -> str:
        """One line: how many images were restored, how many failed, where they went."""
        line = f"{self.written} image(s) restored, {self.failed} failed; written to "
        line += str(self.output_dir)
        if self.corruption is not None:
            kind = self.corruption[0]
            line += f", each beside its {kind}-corrupted input (NAME{CORRUPTED_TAG}.EXT)"
        if self.tiling is not None:
            tiling = self.tiling
            line += f"; {tiling.size} px tiles overlapping {tiling.overlap} px"
            if tiling.approximation:
                line += f" (approximate: {tiling.approximation})"
        return line


def save_image(image: torch.Tensor, path: Path) -> None:
    """A (C, H, W) image in [0, 1] as an 8-bit file of the format its suffix names, written
    under a temporary name and renamed into place (never a half-written file)."""
    formats = Image.registered_extensions()
    if path.suffix.lower() not in formats:
        raise ValueError(f"no image format is known for the suffix {path.suffix!r}")
    pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    picture = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
    image_format = formats[path.suffix.lower()]
    options = {"quality": LOSSY_QUALITY} if image_format in ("JPEG", "WEBP") else {}
    temporary = path.with_name(f".{path.name}.partial")
    try:
        picture.save(temporary, format=image_format, **options)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def prepare_predictions(
    args: argparse.Namespace, card: dict, images: list[InputFile]
) -> Predictions:
    """Check the flags and the output paths, create --output-dir: ready to restore."""
    tiling = check_tiling(args, card["model_config"])
    corruption = corruption_of(card) if args.corrupt else None
    check_outputs(args.output_dir, images, args.corrupt)
    make_output_dir(args.output_dir)
    return Predictions(card, images, args.output_dir, tiling, corruption)
