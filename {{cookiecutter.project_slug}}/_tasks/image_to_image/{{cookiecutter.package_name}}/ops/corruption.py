"""Corruptions that turn a clean image into a restoration task's input (pure torch).

Each takes a (C, H, W) or (N, C, H, W) image in [0, 1] and returns the same shape, clipped
to [0, 1]; noise draws from torch's global generator (the data seeds it per sample) unless a
generator is given.
"""

import math

import torch
import torch.nn.functional as F

CORRUPTIONS = ("noise", "blur", "downsample")
# What --corruption-strength means, and its default, for each corruption.
STRENGTH = {
    "noise": ("the standard deviation of Gaussian noise, on [0, 1] pixel values", 0.1),
    "blur": ("the sigma of a Gaussian blur, in pixels", 1.5),
    "downsample": ("the factor by which the image is shrunk before it is scaled back up", 2.0),
}


def add_noise(
    image: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Additive white Gaussian noise of standard deviation `sigma`.

    The noise is drawn where `generator` lives (a CPU one draws the same noise for an image on
    any device); without one, from torch's global generator on the image's device.
    """
    if generator is None:
        noise = torch.randn_like(image)
    else:
        noise = torch.randn(
            image.shape, generator=generator, dtype=image.dtype, device=generator.device
        ).to(image.device)
    return (image + sigma * noise).clamp(0.0, 1.0)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of `sigma` pixels, reflecting at the border (kernel of +-3 sigma)."""
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, batch.size(-1) - 1, batch.size(-2) - 1)  # reflect padding's limit
    coords = torch.arange(-radius, radius + 1, dtype=batch.dtype, device=batch.device)
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = batch.size(1)
    padded = F.pad(batch, (radius,) * 4, mode="reflect")
    # Separable: a row pass, then a column pass.
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    out = F.conv2d(rows, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    out = out.clamp(0.0, 1.0)
    return out if image.dim() == 4 else out.squeeze(0)


def downsample(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Shrink by `factor` (antialiased), then scale back up bicubically: lost detail, same size."""
    batch = image if image.dim() == 4 else image.unsqueeze(0)
    height, width = batch.shape[-2:]
    small_size = (max(1, round(height / factor)), max(1, round(width / factor)))
    small = F.interpolate(batch, size=small_size, mode="bilinear", antialias=True)
    out = F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False)
    out = out.clamp(0.0, 1.0)
    return out if image.dim() == 4 else out.squeeze(0)


def corrupt(
    image: torch.Tensor, kind: str, strength: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply corruption `kind` (one of CORRUPTIONS) of the given strength; `generator` seeds
    the noise (blur and downsample draw nothing)."""
    if kind == "noise":
        return add_noise(image, strength, generator)
    if kind == "blur":
        return gaussian_blur(image, strength)
    if kind == "downsample":
        return downsample(image, strength)
    raise ValueError(f"unknown corruption {kind!r}; choose one of {', '.join(CORRUPTIONS)}")
