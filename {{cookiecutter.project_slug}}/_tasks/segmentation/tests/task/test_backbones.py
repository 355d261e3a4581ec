"""torchvision's segmentation networks, --pretrained and the fine-tuning controls, offline:
weights files are written here from randomly initialised networks, never downloaded."""

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from {{ cookiecutter.package_name }} import backbones, hub_weights
from {{ cookiecutter.package_name }}.errors import UserError

from ..hub_cache_files import (
    MakesFolder,
    save_named_by_hash,
    unreachable_torch_home,
    url_of,
)

CLASSES = 3
SMALL = "lraspp_mobilenet_v3_large"  # the smallest network: for tests of any arch


@pytest.fixture(scope="module")
def networks() -> dict[str, nn.Module]:
    """Each arch built once for the module (ResNet-50 ones take seconds on a CPU), with its
    auxiliary head where it has one; tests that load weights build their own."""
    torch.manual_seed(0)
    build = backbones.build_torchvision_segmenter
    return {arch: build(arch, CLASSES, aux_loss=arch in backbones.WITH_AUX_HEAD)
            for arch in backbones.ARCHS}  # fmt: skip


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, and no network: a download attempt fails as it would offline."""
    return unreachable_torch_home(tmp_path, monkeypatch)


def cache_imagenet_weights(torch_home: Path, arch: str, monkeypatch) -> dict:
    """A randomly initialised ImageNet classifier of `arch`'s backbone, put in torch's hub
    cache under a name carrying its hash, where its weights' URL is pointed; returns it."""
    name = backbones.BACKBONES[arch]
    torch.manual_seed(7)
    state = torchvision.models.get_model(name, weights=None).state_dict()
    cached = save_named_by_hash(state, torch_home / "hub" / "checkpoints", name)
    monkeypatch.setattr(backbones.backbone_weights(arch).value, "url", url_of(cached))
    return state


def same(first: dict, second: dict, keys) -> bool:
    """Whether two state dicts hold bitwise equal tensors under `keys`."""
    return all(torch.equal(first[key], second[key]) for key in keys)


@pytest.mark.parametrize("arch", backbones.ARCHS)
def test_in_eval_each_network_returns_logits_of_the_input_size(networks, arch):
    model = networks[arch].eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 48))
    assert isinstance(logits, torch.Tensor) and logits.shape == (1, CLASSES, 64, 48)


@pytest.mark.parametrize("arch", backbones.WITH_AUX_HEAD)
def test_in_training_an_auxiliary_head_adds_its_own_logits(networks, arch):
    model = networks[arch].train()
    with torch.no_grad():
        outputs = model(torch.randn(2, 3, 64, 64))
    assert set(outputs) == {"out", "aux"}
    assert outputs["out"].shape == outputs["aux"].shape == (2, CLASSES, 64, 64)


def test_without_an_auxiliary_head_training_returns_the_logits_tensor(networks):
    with torch.no_grad():
        logits = networks[SMALL].train()(torch.randn(2, 3, 64, 64))
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, CLASSES, 64, 64)


def test_an_auxiliary_loss_for_a_network_without_that_head_is_refused():
    with pytest.raises(UserError) as error:
        backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=True)
    assert str(error.value) == (
        f"--arch {SMALL} has no auxiliary head; drop --aux-loss or pick another arch"
    )


def test_a_batch_of_one_is_refused_for_deeplabv3_only():
    with pytest.raises(UserError, match="batches of 2 or more images per process"):
        backbones.check_batch_size("deeplabv3_resnet50", 1)
    backbones.check_batch_size(SMALL, 1)
    backbones.check_batch_size("deeplabv3_mobilenet_v3_large", 2)


@pytest.mark.parametrize("arch", ["fcn_resnet50", "deeplabv3_mobilenet_v3_large"])
def test_imagenet_loads_the_backbone_from_the_hub_cache_and_leaves_the_head(
    arch, torch_home, monkeypatch
):
    imagenet = cache_imagenet_weights(torch_home, arch, monkeypatch)
    model = backbones.build_torchvision_segmenter(arch, CLASSES, aux_loss=False)
    head_before = {key: value.clone() for key, value in model.classifier.state_dict().items()}
    backbones.load_pretrained(model, arch, "imagenet")
    backbone = model.backbone.state_dict()
    # Under the segmentation network's names: ResNet's own, MobileNet's features renumbered.
    prefix = "" if backbones.BACKBONES[arch] == "resnet50" else "features."
    assert all(torch.equal(value, imagenet[prefix + key]) for key, value in backbone.items())
    assert same(model.classifier.state_dict(), head_before, head_before)


def test_imagenet_weights_missing_offline_say_where_to_put_them(torch_home):
    model = backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=False)
    url = backbones.backbone_weights(SMALL).url
    with pytest.raises(UserError) as error:
        backbones.load_pretrained(model, SMALL, "imagenet")
    message = str(error.value)
    assert message.startswith(
        f"the ImageNet weights of mobilenet_v3_large (the backbone of {SMALL}) are not in "
        f"torch's cache ({hub_weights.cached_file(url)})"
    )
    assert message.endswith(f"download {url} to that path on a machine with network, or point "
                            "TORCH_HOME at a cache that has it")  # fmt: skip


def test_a_pickle_planted_as_imagenet_weights_never_runs(torch_home, tmp_path, monkeypatch):
    marker = tmp_path / "payload-ran"
    cache = torch_home / "hub" / "checkpoints"
    planted = save_named_by_hash({"0.0.weight": MakesFolder(marker)}, cache, "mobilenet_v3_large")
    monkeypatch.setattr(backbones.backbone_weights(SMALL).value, "url", url_of(planted))
    model = backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=False)
    with pytest.raises(UserError, match="delete it so that it is downloaded again"):
        backbones.load_pretrained(model, SMALL, "imagenet")
    assert not marker.exists()


def test_a_state_dict_of_the_same_network_loads_whole(tmp_path, capsys):
    torch.manual_seed(1)
    source = backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=False).state_dict()
    torch.save(source, tmp_path / "weights.pt")
    model = backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=False)
    backbones.load_pretrained(model, SMALL, str(tmp_path / "weights.pt"))
    assert same(model.state_dict(), source, source)
    assert capsys.readouterr().out.strip() == f"pretrained: {tmp_path / 'weights.pt'}"


def test_torchvisions_file_of_other_classes_gives_all_but_the_class_layers(tmp_path, capsys):
    # As torchvision's COCO-trained file: 21 classes and an auxiliary head.
    torch.manual_seed(2)
    arch = "deeplabv3_mobilenet_v3_large"
    network = torchvision.models.get_model(arch, weights=None, weights_backbone=None,
                                           num_classes=21, aux_loss=True)  # fmt: skip
    source = network.state_dict()
    torch.save(source, tmp_path / "coco.pth")
    model = backbones.build_torchvision_segmenter(arch, CLASSES, aux_loss=False)
    backbones.load_pretrained(model, arch, str(tmp_path / "coco.pth"))
    loaded = model.state_dict()
    class_layers = backbones.class_layer_keys(model)
    assert class_layers == {"classifier.4.weight", "classifier.4.bias"}
    assert loaded["classifier.4.weight"].shape[0] == CLASSES
    assert same(loaded, source, set(loaded) - class_layers)
    assert capsys.readouterr().out.strip() == (
        f"pretrained: {tmp_path / 'coco.pth'}; re-initialised classifier.4.bias, "
        "classifier.4.weight (the file scores 21 classes, this data has 3); its auxiliary "
        "head left out (add --aux-loss to train one)"
    )


def test_an_auxiliary_head_the_file_lacks_starts_fresh(tmp_path, capsys):
    arch = "deeplabv3_mobilenet_v3_large"
    source = backbones.build_torchvision_segmenter(arch, CLASSES, aux_loss=False).state_dict()
    torch.save(source, tmp_path / "weights.pt")
    model = backbones.build_torchvision_segmenter(arch, CLASSES, aux_loss=True)
    backbones.load_pretrained(model, arch, str(tmp_path / "weights.pt"))
    assert same(model.state_dict(), source, source)
    assert "the auxiliary head starts fresh (the file has none)" in capsys.readouterr().out


def test_weights_of_another_network_are_refused_in_one_sentence(tmp_path):
    other = backbones.build_torchvision_segmenter("deeplabv3_mobilenet_v3_large", CLASSES, False)
    torch.save(other.state_dict(), tmp_path / "weights.pt")
    model = backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=False)
    with pytest.raises(UserError) as error:
        backbones.load_pretrained(model, SMALL, str(tmp_path / "weights.pt"))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'weights.pt'} does not fit this --arch (keys missing ")
    assert "; unexpected classifier.0.convs.0.0.weight" in message
    assert message.endswith("give weights of the same architecture") and "\n" not in message


def test_a_checkpoint_gives_its_averaged_weights_when_it_kept_them(tmp_path):
    model = backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=False)
    ema = {key: torch.full_like(value, 0.5) if value.is_floating_point() else value
           for key, value in model.state_dict().items()}  # fmt: skip
    checkpoint = {"model": model.state_dict(), "ema": ema, "model_config": {"arch": SMALL}}
    torch.save(checkpoint, tmp_path / "best.pt")
    backbones.load_pretrained(model, SMALL, str(tmp_path / "best.pt"))
    assert same(model.state_dict(), ema, ema)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "is neither none, imagenet nor a file"),
        ("code", "could not be read as weights (it holds Python objects other than tensors"),
        ("list", "holds no state dict (a dict of tensors) nor a checkpoint of this project"),
        ("damaged", "could not be read as weights (it is damaged or was not written by"),
    ],
)
def test_a_pretrained_file_that_holds_no_weights_is_one_sentence(tmp_path, content, expected):
    path = tmp_path / f"{content}.pt"
    if content == "code":
        torch.save({"classifier.weight": MakesFolder(tmp_path / "payload-ran")}, path)
    elif content == "list":
        torch.save([torch.zeros(1)], path)
    elif content == "damaged":
        path.write_bytes(b"PK\x03\x04 not a whole archive")
    with pytest.raises(UserError) as error:
        backbones.read_weights_file(str(path))
    assert str(error.value).startswith(f"--pretrained {path} {expected}")
    assert not (tmp_path / "payload-ran").exists()


def test_parameter_groups_split_head_and_backbone_and_scale_the_backbone(networks):
    model = networks["deeplabv3_mobilenet_v3_large"]
    (head, head_scale), (backbone, backbone_scale) = backbones.parameter_groups(model, 0.1)
    assert (head_scale, backbone_scale) == (1.0, 0.1)
    ids = [id(parameter) for parameter in head + backbone]
    assert sorted(ids) == sorted(id(parameter) for parameter in model.parameters())  # each once
    assert {id(p) for p in model.backbone.parameters()} == {id(p) for p in backbone}
    assert {id(p) for p in model.aux_classifier.parameters()} <= {id(p) for p in head}


def test_a_frozen_backbone_trains_nothing_and_keeps_its_statistics_but_the_head_learns(networks):
    model = networks["deeplabv3_mobilenet_v3_large"].train()
    assert backbones.set_backbone_frozen(model, frozen=True)
    assert not any(parameter.requires_grad for parameter in model.backbone.parameters())
    assert all(parameter.requires_grad for parameter in backbones.head_parameters(model))
    norms = [module for module in model.modules() if isinstance(module, nn.BatchNorm2d)]
    in_backbone = {id(module) for module in model.backbone.modules()}
    assert all(not norm.training for norm in norms if id(norm) in in_backbone)
    assert all(norm.training for norm in norms if id(norm) not in in_backbone)
    assert not backbones.set_backbone_frozen(model, frozen=True)  # no change the second time
    model.train()
    assert backbones.set_backbone_frozen(model, frozen=False)
    assert all(parameter.requires_grad for parameter in model.parameters())


def test_a_network_without_a_backbone_has_only_head_parameters():
    own = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, CLASSES, 1))
    assert backbones.backbone_parameters(own) == [] and backbones.backbone_modules(own) == []
    (head, _), (backbone, _) = backbones.parameter_groups(own, 0.1)
    assert len(head) == len(list(own.parameters())) and backbone == []
    assert not backbones.set_backbone_frozen(own.train(), frozen=True)
    assert own[1].training  # nothing was frozen


@pytest.mark.parametrize(
    ("recorded", "switch"),
    [("fcn_resnet50", "add --arch fcn_resnet50, or "), ("own", "")],
    ids=["torchvision-arch", "own-unet"],  # the own U-Net takes no --pretrained file
)
def test_a_checkpoint_of_another_arch_names_it(tmp_path, recorded, switch):
    torch.save({"model": {"weight": torch.zeros(1)},
                "model_config": {"arch": recorded}}, tmp_path / "best.pt")  # fmt: skip
    model = backbones.build_torchvision_segmenter(SMALL, CLASSES, aux_loss=False)
    with pytest.raises(UserError) as error:
        backbones.load_pretrained(model, SMALL, str(tmp_path / "best.pt"))
    assert str(error.value) == (
        f"{tmp_path / 'best.pt'} holds weights of --arch {recorded}, not {SMALL}; {switch}"
        f"give weights of {SMALL}"
    )
