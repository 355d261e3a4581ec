"""predict.py's restorations: each input image restored and written under --output-dir with its
own name (and, with --corrupt, the corrupted input beside it), one record per input.

Any image size goes through the U-Net: padded (mirrored) to a multiple of 2**depth, the side
its downsampling needs, and cropped back. --tile runs large images in overlapping tiles
(tiled_inference); by default they overlap by more than twice the model's receptive radius, so the
tiled result is the whole-image result.
"""

import argparse
import zlib
from pathlib import Path

import torch
from PIL import Image

from . import {{ cookiecutter.model_name }} as architecture
from .data import check_corruption
from .engine.inference import InputGroup, Predictor
from .errors import UserError
from .input_files import InputFile
from .ops import corrupt
from .output_files import (
    OutputFilePredictions,
    check_outputs,
    make_output_dir,
    save_picture,
)
from .tiled_inference import (
    GROUP_NORM,
    ModelGrid,
    Tiling,
    check_tiling,
    describe,
    run_any_size,
)

CORRUPTED_TAG = ".corrupted"  # --corrupt writes photo.png's corrupted input as photo.corrupted.png
LOSSY_QUALITY = 95  # JPEG and WebP: no visible loss, a fraction of a PNG's size


def model_grid(config: dict) -> ModelGrid:
    """The U-Net's downsampling (2**depth) and receptive radius, for tiling."""
    depth = config["depth"]
    inexact = GROUP_NORM if config["norm"] == "group" else ""
    return ModelGrid(2**depth, architecture.receptive_radius(depth), inexact)


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


def output_names(image: InputFile, with_corrupted: bool) -> list[str]:
    """The files predict.py writes for an input: its restoration (and its corrupted input)."""
    return [image.name, corrupted_name(image.name)] if with_corrupted else [image.name]


def noise_generator(name: str) -> torch.Generator:
    """A CPU generator seeded by the image's output name: the same noise on every run, in any
    batch and on any device."""
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


class Predictions(OutputFilePredictions):
    """Restores batches of images and writes them; one record per input, in input order:
    {"path", "output", "width", "height"[, "corrupted"]} or {"path", "error"}."""

    def __init__(
        self,
        card: dict,
        output_dir: Path,
        tiling: Tiling | None,
        corruption: tuple[str, float] | None,
    ) -> None:
        super().__init__(output_dir, model_grid(card["model_config"]), tiling)
        self.corruption = corruption

    def write_group(self, predictor: Predictor, group: InputGroup) -> list[dict]:
        """Restore one group (corrupted first with --corrupt) and write each image."""
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
        return [self._write(image, after, before)
                for image, after, before in zip(group.inputs, restored, befores, strict=True)]  # fmt: skip

    def restore(self, predictor: Predictor, images: torch.Tensor) -> torch.Tensor:
        """The model's output for a (N, C, H, W) batch of any H and W, clipped to [0, 1]."""
        images = images.to(predictor.device)
        return run_any_size(predictor.run, images, self.grid, self.tiling).clamp(0.0, 1.0)

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

    def summary(self) -> str:
        """One line: how many images were restored, how many failed, where they went."""
        line = f"{self.written} image(s) restored, {self.failed} failed; written to "
        line += str(self.output_dir)
        if self.corruption is not None:
            kind = self.corruption[0]
            line += f", each beside its {kind}-corrupted input (NAME{CORRUPTED_TAG}.EXT)"
        return line + describe(self.tiling)


def save_image(image: torch.Tensor, path: Path) -> None:
    """A (C, H, W) image in [0, 1] as an 8-bit file of the format its suffix names, written
    whole or not at all."""
    formats = Image.registered_extensions()
    if path.suffix.lower() not in formats:
        raise ValueError(f"no image format is known for the suffix {path.suffix!r}")
    pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    picture = Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels)
    image_format = formats[path.suffix.lower()]
    options = {"quality": LOSSY_QUALITY} if image_format in ("JPEG", "WEBP") else {}
    save_picture(picture, path, format=image_format, **options)


def prepare_predictions(
    args: argparse.Namespace, card: dict, images: list[InputFile]
) -> Predictions:
    """Check the flags and the output paths, create --output-dir: ready to restore."""
    tiling = check_tiling(args, model_grid(card["model_config"]))
    corruption = corruption_of(card) if args.corrupt else None
    check_outputs(args.output_dir, images, lambda image: output_names(image, args.corrupt))
    make_output_dir(args.output_dir)
    return Predictions(card, args.output_dir, tiling, corruption)
