import shutil
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision import models
from torchvision.models import vgg16

from {{ cookiecutter.package_name }} import hub_weights
from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.losses import (
    PixelLoss,
    RestorationLoss,
    VGGPerceptualLoss,
)
from {{ cookiecutter.package_name }}.losses import perceptual as perceptual_module

from ..hub_cache_files import MakesFolder, offline_torch_cache, save_named_by_hash, url_of

# weights=None everywhere: random VGG weights, so no test downloads anything.


@pytest.fixture(scope="module")
def vgg_loss() -> VGGPerceptualLoss:
    torch.manual_seed(0)
    return VGGPerceptualLoss("vgg16", layers=("relu1_2", "relu2_2"), weights=None)


def test_gradient_reaches_the_input_but_never_the_vgg_parameters(vgg_loss):
    prediction = torch.rand(2, 3, 16, 16, requires_grad=True)
    vgg_loss(prediction, torch.rand(2, 3, 16, 16)).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    parameters = list(vgg_loss.parameters())
    assert parameters and all(not p.requires_grad and p.grad is None for p in parameters)


def test_slices_cover_the_layers_up_to_each_cut_in_order(vgg_loss):
    names = [list(block._modules) for block in vgg_loss.slices]
    assert names == [
        ["conv1_1", "relu1_1", "conv1_2", "relu1_2"],
        ["pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2"],
    ]
    assert all(isinstance(block, nn.Sequential) for block in vgg_loss.slices)


def test_cuts_by_index_match_cuts_by_name():
    by_index = VGGPerceptualLoss("vgg19", layers=(3, 8, 17), weights=None)
    names = [list(block._modules)[-1] for block in by_index.slices]
    assert names == ["relu1_2", "relu2_2", "relu3_4"]


def test_it_stays_in_eval_mode_inside_a_model_put_in_train_mode(vgg_loss):
    model = nn.ModuleDict({"net": nn.Conv2d(3, 3, 1), "loss": vgg_loss})
    model.train()
    assert model["net"].training
    assert not vgg_loss.training and not any(m.training for m in vgg_loss.modules())


def test_it_moves_with_to_and_runs_where_its_inputs_are(vgg_loss):
    device = torch.device("meta")  # a real second device is not needed to see buffers move
    moved = VGGPerceptualLoss("vgg16", layers=("relu1_2",), weights=None).to(device)
    assert moved.mean.device.type == "meta"
    assert all(p.device.type == "meta" for p in moved.parameters())
    out = moved(torch.rand(1, 3, 8, 8, device=device), torch.rand(1, 3, 8, 8, device=device))
    assert out.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_it_runs_on_cuda(vgg_loss):
    vgg_loss.to("cuda")
    x = torch.rand(1, 3, 16, 16, device="cuda")
    assert vgg_loss(x, x).device.type == "cuda"
    vgg_loss.to("cpu")


def test_identical_images_cost_nothing_and_different_ones_do(vgg_loss):
    x = torch.rand(1, 3, 16, 16)
    assert vgg_loss(x, x).item() == 0.0
    assert vgg_loss(x, torch.rand(1, 3, 16, 16)).item() > 0.0


def test_layer_weights_scale_each_slice():
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    torch.manual_seed(0)
    only_first = VGGPerceptualLoss(
        "vgg16", layers=("relu1_2", "relu2_2"), layer_weights=(1.0, 0.0), weights=None
    )
    torch.manual_seed(0)
    both = VGGPerceptualLoss("vgg16", layers=("relu1_2", "relu2_2"), weights=None)
    assert 0 < only_first(x, y).item() < both(x, y).item()


def test_weights_from_a_local_file_are_loaded(tmp_path):
    torch.manual_seed(1)
    source = vgg16(weights=None)
    path = tmp_path / "vgg16.pt"
    torch.save(source.state_dict(), path)
    loss = VGGPerceptualLoss("vgg16", layers=("relu1_2",), weights=path)
    torch.testing.assert_close(loss.slices[0].conv1_1.weight, source.features[0].weight)


def test_a_bad_weights_file_is_one_sentence(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"features.0.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="does not hold vgg16 weights"):
        VGGPerceptualLoss("vgg16", weights=path)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(UserError, match="junk.pt is not a torch weights file; give a vgg16"):
        VGGPerceptualLoss("vgg16", weights=tmp_path / "junk.pt")
    (tmp_path / "damaged.pt").write_bytes(path.read_bytes()[:-200])  # a zip missing its end
    with pytest.raises(UserError, match="damaged.pt is not a torch weights file"):
        VGGPerceptualLoss("vgg16", weights=tmp_path / "damaged.pt")


@pytest.fixture
def empty_torch_cache(tmp_path, monkeypatch):
    """An empty torch hub cache in tmp_path, and no way out to the network."""
    return offline_torch_cache(tmp_path, monkeypatch)


@pytest.fixture
def vgg16_server(tmp_path, monkeypatch) -> list[str]:
    """A fake download of VGG16's ImageNet weights (random `features` ones, under a name carrying
    their hash, which the weights' URL is pointed at); returns the URLs downloaded."""
    torch.manual_seed(2)
    features = vgg16(weights=None).features.state_dict()
    state = {f"features.{key}": value for key, value in features.items()}
    served = save_named_by_hash(state, tmp_path / "server", "vgg16")
    monkeypatch.setattr(models.VGG16_Weights.IMAGENET1K_V1.value, "url", url_of(served))
    monkeypatch.setattr(hub_weights, "host_answers", lambda url: True)
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append(url)
        shutil.copyfile(served, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    return calls


def test_imagenet_weights_are_downloaded_once_into_the_cache(empty_torch_cache, vgg16_server):
    url = models.VGG16_Weights.IMAGENET1K_V1.url
    assert perceptual_module.fetch_imagenet_weights() and perceptual_module.fetch_imagenet_weights()
    assert vgg16_server == [url]
    cached = empty_torch_cache / Path(url).name
    loss = VGGPerceptualLoss("vgg16", layers=("relu1_2",), weights="imagenet")
    saved = torch.load(cached, weights_only=True)["features.0.weight"]
    torch.testing.assert_close(loss.slices[0].conv1_1.weight, saved)
    assert vgg16_server == [url]  # the loss used the cached file


def test_a_pickle_planted_in_the_cache_never_runs(empty_torch_cache, tmp_path, monkeypatch):
    monkeypatch.setattr(hub_weights, "host_answers", lambda url: False)
    marker = tmp_path / "payload-ran"
    empty_torch_cache.mkdir(parents=True)
    torch.save({"features.0.weight": MakesFolder(marker)}, empty_torch_cache / "vgg16-397923af.pth")
    with pytest.raises(UserError, match="vgg16-397923af.pth in torch's hub cache is not the file"):
        VGGPerceptualLoss("vgg16", weights="imagenet")
    assert not marker.exists()


def test_auto_perceptual_weights_offline_train_with_the_pixel_loss(
    train_script, empty_torch_cache, monkeypatch, capsys
):
    monkeypatch.setattr(hub_weights, "host_answers", lambda url: False)
    started = time.monotonic()
    criterion = train_script.task.build_criterion(train_script.parse_args([]))
    assert time.monotonic() - started < 30  # no stall: only the (here faked) connect check ran
    assert criterion.perceptual is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("perceptual loss off: the ImageNet VGG16")


def test_auto_perceptual_weights_download_when_the_network_answers(
    train_script, empty_torch_cache, vgg16_server
):
    criterion = train_script.task.build_criterion(train_script.parse_args([]))
    assert criterion.perceptual is not None and criterion.perceptual_scale == 0.1
    name = Path(models.VGG16_Weights.IMAGENET1K_V1.url).name
    assert len(vgg16_server) == 1 and (empty_torch_cache / name).is_file()


def test_the_smoke_test_never_downloads(train_script, empty_torch_cache, monkeypatch):
    def forbidden(url):
        raise AssertionError("the smoke test checked the network")

    monkeypatch.setattr(hub_weights, "host_answers", forbidden)
    criterion = train_script.task.build_criterion(train_script.parse_args(["--smoke-test"]))
    assert criterion.perceptual is None


def test_imagenet_weights_offline_are_one_sentence(empty_torch_cache, monkeypatch):
    monkeypatch.setattr(hub_weights, "host_answers", lambda url: False)
    with pytest.raises(UserError, match="could not download the ImageNet weights of vgg16"):
        VGGPerceptualLoss("vgg16", weights="imagenet")
    assert not empty_torch_cache.exists() or not any(empty_torch_cache.iterdir())


def test_unknown_layers_and_mismatched_weights_are_refused():
    with pytest.raises(ValueError, match="unknown layer"):
        VGGPerceptualLoss("vgg16", layers=("relu9_9",), weights=None)
    with pytest.raises(ValueError, match="in network order"):
        VGGPerceptualLoss("vgg16", layers=("relu2_2", "relu1_2"), weights=None)
    with pytest.raises(ValueError, match="layer_weights"):
        VGGPerceptualLoss("vgg16", layers=("relu1_2",), layer_weights=(1, 2), weights=None)


def test_pixel_losses_against_hand_computed_values():
    prediction, target = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.0, 0.0, 0.0])
    assert PixelLoss("l1")(prediction, target).item() == pytest.approx(0.5)
    eps = 1e-3
    expected = (eps + (0.25 + eps**2) ** 0.5 + (1 + eps**2) ** 0.5) / 3
    charbonnier = PixelLoss("charbonnier", eps)(prediction, target).item()
    assert charbonnier == pytest.approx(expected)


def test_restoration_loss_without_the_perceptual_term_builds_no_vgg(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("VGG was built")

    monkeypatch.setattr(perceptual_module, "load_vgg_features", forbidden)
    loss = RestorationLoss("l1", perceptual_scale=0.0)
    assert loss.perceptual is None and not list(loss.parameters())
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert loss(x, y).item() == pytest.approx((x - y).abs().mean().item())


def test_restoration_loss_adds_the_scaled_perceptual_term():
    x, y = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    torch.manual_seed(0)
    combined = RestorationLoss("l1", perceptual_scale=0.5, perceptual_weights=None)
    expected = (x - y).abs().mean() + 0.5 * combined.perceptual(x, y)
    torch.testing.assert_close(combined(x, y), expected)
