import math

import numpy as np
import pytest
import torch

from {{ cookiecutter.package_name }}.ops import (
    corrupt,
    psnr,
    ssim,
)
from {{ cookiecutter.package_name }}.ops.metrics import (
    SSIM_K1,
    SSIM_K2,
    gaussian_window,
)


def test_psnr_of_a_known_mse():
    target = torch.zeros(2, 3, 8, 8)
    prediction = target.clone()
    prediction[0] += 0.1  # MSE 0.01 -> 20 dB
    prediction[1, :, :, :4] += 0.5  # half the pixels off by 0.5: MSE 0.125 -> 9.03 dB
    expected = [20.0, 10 * math.log10(1 / 0.125)]
    torch.testing.assert_close(psnr(prediction, target), torch.tensor(expected))


def test_psnr_of_identical_images_is_capped_not_infinite():
    x = torch.rand(1, 3, 8, 8)
    assert psnr(x, x).item() == pytest.approx(100.0)


def test_ssim_of_an_image_with_itself_is_one():
    x = torch.rand(3, 3, 24, 24)
    torch.testing.assert_close(ssim(x, x), torch.ones(3))


def test_ssim_of_two_flat_images_has_its_closed_form():
    # Flat images: no variance, so SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 0.2, 0.7, SSIM_K1**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    value = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def reference_ssim_one_window(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of one 11x11 window, written out from the paper's formula in float64."""
    w = gaussian_window(11, 1.5).double().numpy()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cov = (w * (x - mx) * (y - my)).sum()
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    return ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))


def test_ssim_matches_the_formula_on_a_single_window():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 11, 11, generator=generator, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    expected = reference_ssim_one_window(x[0, 0].numpy(), y[0, 0].numpy())
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-4)
    assert 0.0 < expected < 1.0


def test_ssim_falls_as_noise_grows():
    x = torch.rand(1, 3, 32, 32)
    values = [ssim(corrupt(x, "noise", sigma), x).item() for sigma in (0.02, 0.1, 0.3)]
    assert values[0] > values[1] > values[2]


def test_metrics_stay_on_the_input_device():
    x = torch.rand(1, 3, 16, 16, device="meta")
    assert psnr(x, x).device.type == "meta" and ssim(x, x).device.type == "meta"


@pytest.mark.parametrize(("kind", "strength"), [("noise", 0.1), ("blur", 1.5), ("downsample", 2.0)])
def test_corruptions_keep_shape_and_range_and_change_the_image(kind, strength):
    torch.manual_seed(0)
    x = torch.rand(3, 16, 16)
    y = corrupt(x, kind, strength)
    assert y.shape == x.shape and y.min() >= 0.0 and y.max() <= 1.0
    assert (y - x).abs().mean() > 0.01


def test_noise_has_the_asked_standard_deviation():
    torch.manual_seed(0)
    x = torch.full((3, 64, 64), 0.5)
    assert (corrupt(x, "noise", 0.1) - x).std().item() == pytest.approx(0.1, rel=0.05)


def test_blur_and_downsample_leave_flat_images_flat():
    x = torch.full((1, 3, 16, 16), 0.3)
    torch.testing.assert_close(corrupt(x, "blur", 2.0), x)
    torch.testing.assert_close(corrupt(x, "downsample", 2.0), x)
