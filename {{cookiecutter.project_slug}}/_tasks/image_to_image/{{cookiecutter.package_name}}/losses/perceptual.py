"""VGG perceptual loss: distances between frozen VGG features of the output and the target.

Johnson et al. (2016). The VGG `features` stack is cut at chosen layers into nn.Sequential
slices, run one after the other; each slice's output is compared, so shallow slices weigh
edges and colour, deep ones texture and shape.
"""

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from .. import hub_weights
from ..errors import UserError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ARCHS = {"vgg16": models.VGG16_Weights.IMAGENET1K_V1, "vgg19": models.VGG19_Weights.IMAGENET1K_V1}
# After the last ReLU of blocks 1-4: the usual choice for restoration (Johnson et al.).
DEFAULT_LAYERS = {
    "vgg16": ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
    "vgg19": ("relu1_2", "relu2_2", "relu3_4", "relu4_4"),
}


def vgg_layer_names(features: nn.Sequential) -> list[str]:
    """Names of the modules of a VGG `features` stack: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    names, block, conv = [], 1, 0
    for module in features:
        if isinstance(module, nn.Conv2d):
            conv += 1
            names.append(f"conv{block}_{conv}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{conv}")
        else:  # MaxPool2d ends a block
            names.append(f"pool{block}")
            block, conv = block + 1, 0
    return names


def imagenet_weights_path(arch: str = "vgg16") -> Path:
    """Where torchvision keeps the ImageNet weights of `arch`: the torch hub cache."""
    return hub_weights.cached_file(ARCHS[arch].url)


def imagenet_weights_cached(arch: str = "vgg16") -> bool:
    """True when torchvision's ImageNet weights of `arch` are already in the torch hub cache."""
    return imagenet_weights_path(arch).is_file()


def fetch_imagenet_weights(arch: str = "vgg16", download: bool = True) -> bool:
    """Put torchvision's ImageNet weights of `arch` in the torch hub cache, downloading them
    (with a progress bar) if missing and `download`; False, with nothing left in the cache,
    when that fails."""
    if imagenet_weights_cached(arch) or not download:
        return imagenet_weights_cached(arch)
    try:
        hub_weights.fetch(ARCHS[arch].url)
    except hub_weights.DownloadError:
        return False
    return True


def load_vgg_features(arch: str, weights: str | Path | None) -> nn.Sequential:
    """VGG `features` with ImageNet weights ("imagenet"), a local file's, or random ones (None)."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {', '.join(ARCHS)}, got {arch!r}")
    if weights is None:
        return getattr(models, arch)(weights=None).features
    if weights == "imagenet":
        if not fetch_imagenet_weights(arch):
            raise UserError(
                f"could not download the ImageNet weights of {arch} from "
                f"{urlsplit(ARCHS[arch].url).hostname}; connect to the network once, or pass a "
                "local weights file, or turn the perceptual term off"
            )
        # Read by hub_weights: checked against the hash in its name, never unpickled as code.
        state = hub_weights.load_state_dict(ARCHS[arch].url)
        return _features_from_state(state, imagenet_weights_path(arch), arch)
    return _features_from_file(Path(weights), arch)


def _features_from_file(path: Path, arch: str) -> nn.Sequential:
    """VGG `features` from a local weights file, read with weights_only=True."""
    expected = f"give a {arch} state dict saved with torch.save, or auto, imagenet or random"
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise UserError(f"--perceptual-weights {path} is not a torch weights file; {expected}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a pickled class or function
        raise UserError(
            f"--perceptual-weights {path} holds Python objects other than tensors, so it was "
            f"not loaded (loading them could run code); {expected}"
        ) from None
    except Exception as error:  # a damaged archive can fail in many ways
        raise UserError(
            f"cannot read the VGG weights file {path} ({type(error).__name__}); {expected}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise UserError(f"{path} holds no state dict; save one with torch.save(vgg.state_dict())")
    return _features_from_state(state, path, arch)


def _features_from_state(state: dict, path: Path, arch: str) -> nn.Sequential:
    """VGG `features` loaded from a state dict of the whole VGG (features.* keys) or of its
    features alone (read from `path`)."""
    if any(key.startswith("features.") for key in state):
        state = {
            k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")
        }
    vgg = getattr(models, arch)(weights=None)  # built only now: a bad file fails fast
    try:
        vgg.features.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise UserError(
            f"{path} does not hold {arch} weights ({first}); pass a file saved from "
            f"torchvision.models.{arch}"
        ) from None
    return vgg.features


class VGGPerceptualLoss(nn.Module):
    """Weighted L1 distance between VGG features of `prediction` and `target` (both in [0, 1]).

    `layers` names (e.g. "relu2_2") or indices of the `features` modules after which to cut;
    each slice's features count `layer_weights[i]` times. The network is frozen and always
    in eval mode; ImageNet normalisation happens inside, and grayscale is repeated to RGB.
    """

    def __init__(
        self,
        arch: str = "vgg16",
        layers: Sequence[str | int] | None = None,
        layer_weights: Sequence[float] | None = None,
        weights: str | Path | None = "imagenet",
    ) -> None:
        super().__init__()
        features = load_vgg_features(arch, weights)
        names = vgg_layer_names(features)
        layers = DEFAULT_LAYERS[arch] if layers is None else layers
        cuts = [self._index(layer, names) for layer in layers]
        if cuts != sorted(set(cuts)):
            raise ValueError(f"layers must be distinct and in network order, got {list(layers)}")
        self.layer_weights = list(layer_weights or [1.0] * len(cuts))
        if len(self.layer_weights) != len(cuts):
            raise ValueError(f"{len(cuts)} layers but {len(self.layer_weights)} layer_weights")
        # One nn.Sequential per slice, filled with add_module so the modules keep VGG's names.
        self.slices = nn.ModuleList()
        start = 0
        for cut in cuts:
            block = nn.Sequential()
            for index in range(start, cut + 1):
                block.add_module(names[index], features[index])
            self.slices.append(block)
            start = cut + 1
        self.requires_grad_(False)
        self.train(False)
        # Buffers, not parameters: they move with .to(device) and are never trained.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _index(layer: str | int, names: list[str]) -> int:
        if isinstance(layer, int):
            if not 0 <= layer < len(names):
                raise ValueError(f"layer index {layer} is outside 0..{len(names) - 1}")
            return layer
        if layer not in names:
            raise ValueError(f"unknown layer {layer!r}; choose from {', '.join(names)}")
        return names.index(layer)

    def train(self, mode: bool = True) -> "VGGPerceptualLoss":
        """Ignore `mode`: a frozen feature extractor stays in eval mode (no dropout, fixed BN)."""
        return super().train(False)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.size(1) == 1:
            images = images.expand(-1, 3, -1, -1)
        x = (images - self.mean) / self.std
        outputs = []
        for block in self.slices:
            x = block(x)
            outputs.append(x)
        return outputs

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the target's features need no graph
            target_features = self._features(target)
        loss = prediction.new_zeros(())
        for weight, ours, theirs in zip(
            self.layer_weights, self._features(prediction), target_features, strict=True
        ):
            loss = loss + weight * F.l1_loss(ours, theirs)
        return loss
