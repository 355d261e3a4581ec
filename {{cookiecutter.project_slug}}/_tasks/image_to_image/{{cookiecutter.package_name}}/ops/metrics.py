"""Image quality metrics in torch (images in [0, 1]); one value per image, on the device."""

import torch
import torch.nn.functional as F

# Wang et al. (2004): an 11x11 Gaussian window of sigma 1.5, and these stabilising constants.
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image of a (N, C, H, W) batch: shape (N,).

    Identical images would give infinity; the MSE is floored at 1e-10 (100 dB for range 1).
    """
    mse = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(data_range**2 / mse.clamp_min(1e-10))


def gaussian_window(size: int, sigma: float, device=None) -> torch.Tensor:
    """A (size, size) Gaussian that sums to 1."""
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    line = torch.exp(-(coords**2) / (2 * sigma**2))
    line = line / line.sum()
    return line[:, None] * line[None, :]


def ssim(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity of each image of a (N, C, H, W) batch: shape (N,).

    Local statistics under a Gaussian window (no padding: only windows that fit inside the
    image count, as in the reference implementation), averaged over positions and channels.
    Images smaller than the window use the largest odd window that fits.
    """
    x, y = prediction.float(), target.float()
    channels = x.size(1)
    size = min(SSIM_WINDOW, x.size(-2), x.size(-1))
    size -= 1 - size % 2  # odd
    window = gaussian_window(size, SSIM_SIGMA, x.device).expand(channels, 1, size, size)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return F.conv2d(image, window, groups=channels)  # one window per channel

    mu_x, mu_y = blur(x), blur(y)
    # (Co)variances are shift-invariant: computing them on mean-free images keeps
    # E[x^2] - E[x]^2 from cancelling catastrophically in float32 on bright, flat areas.
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    y = y - y.mean(dim=(-2, -1), keepdim=True)
    mu_xc, mu_yc = blur(x), blur(y)
    var_x = blur(x * x) - mu_xc**2
    var_y = blur(y * y) - mu_yc**2
    cov = blur(x * y) - mu_xc * mu_yc
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1)
