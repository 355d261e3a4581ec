"""torchvision's segmentation networks, their pretrained weights, and what fine-tuning freezes.

--arch picks one of torchvision's segmentation networks (ARCHS). --pretrained starts it from
the ImageNet weights of its backbone (ResNet-50 or MobileNetV3-Large, read from torch's hub
cache: the head that scores the classes always starts fresh), or from a file holding a whole
model: a state dict (torchvision's own COCO-trained files among them) or a checkpoint this
project wrote. Layers that score classes are re-initialised when the file scored another
number of classes, and a line says so; every other weight must fit exactly.
"""

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.segmentation import LRASPP
from tqdm import tqdm

# Absolute, so isort keeps it apart from the task's own imports whatever the package is called.
import {{ cookiecutter.package_name }}.hub_weights as hub_weights

from .errors import UserError

ARCHS = (
    "fcn_resnet50",
    "deeplabv3_resnet50",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
)
# The backbone of each, whose ImageNet weights --pretrained imagenet loads: torchvision's
# segmentation recipes start from these (IMAGENET1K_V1 for ResNet-50, not its newer V2).
BACKBONES = {
    "fcn_resnet50": "resnet50",
    "deeplabv3_resnet50": "resnet50",
    "deeplabv3_mobilenet_v3_large": "mobilenet_v3_large",
    "lraspp_mobilenet_v3_large": "mobilenet_v3_large",
}
# LR-ASPP has no auxiliary head; the others add one on an earlier stage with --aux-loss.
WITH_AUX_HEAD = ("fcn_resnet50", "deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large")
# DeepLabV3's ASPP pools each image to one pixel before a batch norm: in training that norm
# needs 2 or more images per batch (per process), or it fails with a ValueError.
POOLED_BATCH_NORM = ("deeplabv3_resnet50", "deeplabv3_mobilenet_v3_large")
AUX_PREFIX = "aux_classifier."


# ------------------------------------------------------------------------------ Models
class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation network that returns a (N, C, H, W) logits tensor, as
    evaluation and export want; in training with an auxiliary head, {"out", "aux"} logits
    for SegmentationLoss. Its parts keep torchvision's names (backbone, classifier,
    aux_classifier), so torchvision's state dicts load into it as they are.
    """

    def __init__(self, network: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = network.backbone
        self.classifier = network.classifier
        self.aux_classifier = getattr(network, "aux_classifier", None)
        # LR-ASPP's head reads two feature maps ("low", "high"); the others' read "out".
        self.head_reads_all_features = isinstance(network, LRASPP)
        self.num_classes = num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        features = self.backbone(images)
        head_input = features if self.head_reads_all_features else features["out"]
        logits = self.to_input_size(self.classifier(head_input), images)
        if self.training and self.aux_classifier is not None:
            aux = self.to_input_size(self.aux_classifier(features["aux"]), images)
            return {"out": logits, "aux": aux}
        return logits

    @staticmethod
    def to_input_size(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """The heads score a coarser grid (1/8 or 1/16 of the input): scaled up bilinearly."""
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def build_torchvision_segmenter(arch: str, num_classes: int, aux_loss: bool) -> nn.Module:
    """torchvision's `arch`, randomly initialised, scoring `num_classes` classes (with an
    auxiliary head when `aux_loss`); nothing is downloaded."""
    if arch not in ARCHS:
        raise UserError(
            f"--arch {arch} is not a segmentation network; use one of {', '.join(ARCHS)}"
        )
    if aux_loss and arch not in WITH_AUX_HEAD:
        raise UserError(
            f"--arch {arch} has no auxiliary head; drop --aux-loss or pick another arch"
        )
    # weights_backbone=None: the builders would otherwise download ImageNet weights and read
    # them their own way; load_pretrained reads them through hub_weights instead.
    network = torchvision.models.get_model(
        arch, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux_loss
    )
    return TorchvisionSegmenter(network, num_classes)


def check_batch_size(arch: str, batch_size: int) -> None:
    """Refuse a per-process batch of 1 for the networks whose batch norm needs 2 images."""
    if arch in POOLED_BATCH_NORM and batch_size < 2:
        raise UserError(
            f"--arch {arch} trains on batches of 2 or more images per process (its ASPP block "
            f"normalises one pooled value per image), not {batch_size}; raise --batch-size"
        )


# ----------------------------------------------------------------------------- Weights
def backbone_weights(arch: str) -> torchvision.models.WeightsEnum:
    """The ImageNet weights of `arch`'s backbone (their transforms() give the mean and std
    the inputs must be normalised with)."""
    name = BACKBONES[arch]
    return torchvision.models.get_model_weights(name).IMAGENET1K_V1


def load_pretrained(model: nn.Module, arch: str, source: str) -> None:
    """Load --pretrained weights into `model` (built by build_torchvision_segmenter)."""
    if source == "none":
        return
    if source == "imagenet":
        fit(model.backbone, imagenet_backbone_state(arch), f"the ImageNet weights of {arch}")
        tqdm.write(
            f"pretrained: the backbone from the ImageNet weights of {BACKBONES[arch]}; the "
            "segmentation head starts fresh"
        )
        return
    loaded = read_weights_file(source)
    hub_weights.check_arch(source, loaded.get("arch"), arch, loadable=ARCHS)  # not the own U-Net
    state, fresh, notes = fit_whole_model(model, loaded["model"])
    fit(model, state, source, optional=fresh)
    tqdm.write(f"pretrained: {source}" + "".join(f"; {note}" for note in notes))


def fit_whole_model(model: nn.Module, state: dict) -> tuple[dict, set[str], list[str]]:
    """`state` made to fit `model` where a file of another problem may differ, the keys left
    as initialised, and what was done, in words: layers that score another number of classes
    are re-initialised, an auxiliary head this model lacks is left out, and one the file
    lacks stays as initialised."""
    expected = model.state_dict()
    other_classes = sorted(key for key in class_layer_keys(model)
                           if key in state and state[key].shape != expected[key].shape)  # fmt: skip
    unused_aux = {key for key in state if key.startswith(AUX_PREFIX) and key not in expected}
    fresh_aux = {key for key in expected if key.startswith(AUX_PREFIX) and key not in state}
    notes = []
    if other_classes:
        scored = state[other_classes[0]].shape[0]
        notes.append(
            f"re-initialised {', '.join(other_classes)} (the file scores {scored} classes, "
            f"this data has {model.num_classes})"
        )
    if unused_aux:
        notes.append("its auxiliary head left out (add --aux-loss to train one)")
    if fresh_aux:
        notes.append("the auxiliary head starts fresh (the file has none)")
    dropped = set(other_classes) | unused_aux
    state = {key: value for key, value in state.items() if key not in dropped}
    return state, set(other_classes) | fresh_aux, notes


def class_layer_keys(model: nn.Module) -> set[str]:
    """The state-dict keys of the layers that output one score per class (the last
    convolution of each head: LR-ASPP has two, for its low and high features)."""
    return {
        f"{name}.{key}"
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and module.out_channels == model.num_classes
        for key, _ in module.named_parameters()
    }


def fit(module: nn.Module, state: dict, source: str, optional: set[str] = frozenset()) -> None:
    """Load `state` into `module`: every key must match in name and shape (the `optional`
    ones may be missing), or a UserError lists what does not."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state) - set(optional))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(key for key in set(state) & set(expected)
                        if state[key].shape != expected[key].shape)  # fmt: skip
    found = {"missing": missing, "unexpected": unexpected, "of another shape": mismatched}
    problems = [
        f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
        for label, keys in found.items()
        if keys
    ]
    if problems:
        raise UserError(
            f"{source} does not fit this --arch (keys {'; '.join(problems)}); give weights of "
            "the same architecture"
        )
    module.load_state_dict(state, strict=False)


def imagenet_backbone_state(arch: str) -> dict:
    """The ImageNet state dict of `arch`'s backbone, under the names the segmentation
    network gives it, from torch's hub cache (downloaded only when missing, then read by
    hub_weights: hash-checked, weights_only). The classifier's weights are left out."""
    weights = backbone_weights(arch)
    try:
        hub_weights.fetch(weights.url)
    except hub_weights.DownloadError as error:
        raise UserError(
            f"the ImageNet weights of {BACKBONES[arch]} (the backbone of {arch}) are not in "
            f"torch's cache ({hub_weights.cached_file(weights.url)}) and could not be downloaded "
            f"({error}); download {weights.url} to that path on a machine with network, or "
            "point TORCH_HOME at a cache that has it"
        ) from None
    state = hub_weights.load_state_dict(weights.url)
    if BACKBONES[arch] == "resnet50":  # the segmentation network keeps the ResNet but its fc
        return {key: value for key, value in state.items() if not key.startswith("fc.")}
    # MobileNetV3's segmentation backbone is its `features` alone, numbered as they are there.
    return {key.removeprefix("features."): value for key, value in state.items()
            if key.startswith("features.")}  # fmt: skip


def read_weights_file(path: str) -> dict:
    """A --pretrained weights file as {"model": state dict, "arch"} ("arch" only when a
    checkpoint of this project recorded it)."""
    state, checkpoint = hub_weights.read_weights_file(path)
    if checkpoint is None:
        return {"model": state}
    return {"model": state, "arch": (checkpoint.get("model_config") or {}).get("arch")}


# ---------------------------------------------------------------------------- Freezing
def backbone_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of the pretrained feature extractor (`model.backbone`); none for a network
    without one, as this project's own."""
    backbone = getattr(model, "backbone", None)
    return list(backbone.modules()) if isinstance(backbone, nn.Module) else []


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of the pretrained feature extractor (none for a network without one)."""
    backbone = getattr(model, "backbone", None)
    return list(backbone.parameters()) if isinstance(backbone, nn.Module) else []


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter outside the backbone: the segmentation head(s)."""
    in_backbone = {id(parameter) for parameter in backbone_parameters(model)}
    return [parameter for parameter in model.parameters() if id(parameter) not in in_backbone]


def parameter_groups(model: nn.Module, backbone_lr_scale: float) -> list:
    """(parameters, learning-rate scale) pairs: the head at the full rate, the backbone scaled."""
    return [(head_parameters(model), 1.0), (backbone_parameters(model), backbone_lr_scale)]


def set_backbone_frozen(model: nn.Module, frozen: bool) -> bool:
    """Freeze (or thaw) the backbone's parameters; a frozen backbone's batch-norm layers also
    keep their running statistics (eval mode; the head's go on learning theirs). Call after
    model.train(). Returns whether the set of trainable parameters changed."""
    changed = False
    for parameter in backbone_parameters(model):
        changed |= parameter.requires_grad == frozen
        parameter.requires_grad_(not frozen)
    if frozen:
        for module in backbone_modules(model):
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    return changed
