"""predict.py's masks: each input segmented and written under --output-dir as an index PNG of
its own size (pixel value = class, the PNG's palette colours the classes), with --overlay the
mask blended on the image beside it; one record per input.

Any image size goes through the network: padded (mirrored) to a multiple of its downsampling
and cropped back. --tile runs large images in overlapping tiles (tiled_inference), averaging the
class scores (logits) where tiles overlap; for the own U-Net they overlap by default by more
than twice its receptive radius, so the tiled masks are the whole-image masks.
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import {{ cookiecutter.model_name }} as architecture
from .data import normalize_image
from .engine.inference import InputGroup, Predictor
from .input_files import InputFile
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

OVERLAY_TAG = ".overlay"  # --overlay writes photo.jpg's blend as photo.overlay.png
OVERLAY_ALPHA = 0.5  # the mask's share of an overlay's colour
# torchvision's segmenters downsample by 8 (dilated ResNet, MobileNet) and see the whole tile
# (ASPP's image pooling), so no overlap makes their tiles exact.
TORCHVISION_MULTIPLE = 8


class SegmentationInput:
    """An RGB image as the model's input: (3, H, W), normalised as in training, any size.

    A class (not a closure) so DataLoader workers can take it (it is pickled).
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean, self.std = mean, std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)
        return normalize_image(pixels, self.mean, self.std)


def model_grid(config: dict) -> ModelGrid:
    """The network's downsampling and (own U-Net) receptive radius, for tiling."""
    if config.get("arch", "own") != "own":
        return ModelGrid(TORCHVISION_MULTIPLE, None, f"{config['arch']} sees the whole tile")
    depth = config["depth"]
    inexact = GROUP_NORM if config["norm"] == "group" else ""
    return ModelGrid(2**depth, architecture.receptive_radius(depth), inexact)


def output_name(name: str, tag: str = "") -> str:
    """Where the mask of input `name` goes: photo.jpg -> photo.png (photo.overlay.png)."""
    path = Path(name)
    return path.with_name(f"{path.stem}{tag}.png").as_posix()


def output_names(image: InputFile, overlay: bool) -> list[str]:
    """The files predict.py writes for an input: its mask (and its overlay)."""
    tags = ["", OVERLAY_TAG] if overlay else [""]
    return [output_name(image.name, tag) for tag in tags]


class Predictions(OutputFilePredictions):
    """Segments batches of images and writes their masks; one record per input, in order:
    {"path", "output", ["overlay",] "width", "height", "fractions"} or {"path", "error"}."""

    def __init__(self, card: dict, output_dir: Path, tiling: Tiling | None, overlay: bool) -> None:
        super().__init__(output_dir, model_grid(card["model_config"]), tiling)
        self.overlay = overlay
        self.classes, self.palette = card["classes"], card["palette"]
        form = card["preprocessing"]
        self.mean, self.std = form["mean"], form["std"]

    def write_group(self, predictor: Predictor, group: InputGroup) -> list[dict]:
        """Segment one group and write each image's mask (and overlay)."""
        masks = self.segment(predictor, group.batch).cpu()
        photos = group.batch.cpu() if self.overlay else [None] * len(masks)
        return [self._write(image, mask, photo)
                for image, mask, photo in zip(group.inputs, masks, photos, strict=True)]  # fmt: skip

    def logits(self, predictor: Predictor, images: torch.Tensor) -> torch.Tensor:
        """The class scores (N, C, H, W) of a batch of any H and W (whole, or tiled)."""
        images = images.to(predictor.device)
        return run_any_size(predictor.run, images, self.grid, self.tiling)

    def segment(self, predictor: Predictor, images: torch.Tensor) -> torch.Tensor:
        """The class of every pixel, (N, H, W) int64."""
        return self.logits(predictor, images).argmax(1)

    def _write(self, image: InputFile, mask: torch.Tensor, photo: torch.Tensor | None) -> dict:
        """Save one mask (and its overlay); its record, or an error record."""
        output = self.output_dir / output_name(image.name)
        record = {"path": str(image.path), "output": str(output)}
        picture = mask_image(mask, self.palette)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            save_picture(picture, output, format="PNG")
            if photo is not None:
                record["overlay"] = str(self.output_dir / output_name(image.name, OVERLAY_TAG))
                overlay = self.overlay_image(photo, picture)
                save_picture(overlay, Path(record["overlay"]), format="PNG")
        except OSError as error:
            return {"path": str(image.path), "error": f"cannot write {output} ({error})"}
        height, width = mask.shape
        counts = torch.bincount(mask.flatten(), minlength=len(self.classes)).tolist()
        fractions = {name: round(count / mask.numel(), 4)
                     for name, count in zip(self.classes, counts, strict=True)}  # fmt: skip
        return {**record, "width": width, "height": height, "fractions": fractions}

    def overlay_image(self, photo: torch.Tensor, mask: Image.Image) -> Image.Image:
        """The mask's colours blended over the (denormalised) input image."""
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        pixels = ((photo * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
        rgb = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
        return Image.blend(rgb, mask.convert("RGB"), OVERLAY_ALPHA)

    def summary(self) -> str:
        """One line: how many images were segmented, how many failed, where the masks went."""
        line = f"{self.written} image(s) segmented, {self.failed} failed; masks written to "
        line += f"{self.output_dir} (index PNGs with the class palette)"
        if self.overlay:
            line += f", overlays beside them (NAME{OVERLAY_TAG}.png)"
        return line + describe(self.tiling)


def mask_image(mask: torch.Tensor, palette: list[int]) -> Image.Image:
    """A (H, W) class mask as a PNG-ready image: palette ("P") mode with the class colours for up
    to 256 classes, else 16-bit grey ("I;16", values = classes)."""
    if len(palette) // 3 <= 256:
        picture = Image.fromarray(mask.to(torch.uint8).numpy())
        picture.putpalette(palette)  # makes the grey image a palette ("P") image
        return picture
    return Image.fromarray(mask.to(torch.int32).numpy().astype(np.uint16))


def prepare_predictions(
    args: argparse.Namespace, card: dict, images: list[InputFile]
) -> Predictions:
    """Check the flags and the output paths, create --output-dir: ready to segment."""
    tiling = check_tiling(args, model_grid(card["model_config"]))
    check_outputs(args.output_dir, images, lambda image: output_names(image, args.overlay),
                  " (masks are PNGs named after their image)")  # fmt: skip
    make_output_dir(args.output_dir)
    return Predictions(card, args.output_dir, tiling, args.overlay)
