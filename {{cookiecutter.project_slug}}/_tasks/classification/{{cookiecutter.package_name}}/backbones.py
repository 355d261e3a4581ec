"""Backbones: this project's own network or any torchvision classifier, and pretrained weights.

--arch picks the network: `{{ cookiecutter.model_name }}` (this project's, the default) or any
classification model torchvision builds (`python train.py --list-archs`), with its classifier
head sized for the data's classes. --pretrained starts it from ImageNet weights (torchvision's
default weights for that arch, through torch's hub cache) or from a file: a plain state dict or
a checkpoint this project wrote. The backbone must fit the weights exactly; a head trained on
other classes is re-initialised, and a line says so.
"""

import argparse
import difflib
import re
import types

import torchvision
from torch import nn
from tqdm import tqdm

# Absolute, so isort keeps it apart from the model module's import whatever the model is called.
import {{ cookiecutter.package_name }}.hub_weights as hub_weights

from . import {{ cookiecutter.model_name }} as architecture
from .errors import UserError

OWN_ARCH = "{{ cookiecutter.model_name }}"
# Builders whose training forward also returns auxiliary logits (a tuple a loss cannot take):
# they are built without those heads, and the heads' weights are left out when loading.
AUXILIARY_HEADS = {"inception_v3": ("AuxLogits.",), "googlenet": ("aux1.", "aux2.")}
# Builders whose positional embedding is sized for the input: told --image-size when built.
SIZED_BY_INPUT = ("vit_",)


def arch_names() -> list[str]:
    """Every --arch value: this project's network first, then torchvision's classifiers."""
    return [OWN_ARCH, *torchvision.models.list_models(module=torchvision.models)]


def arch(text: str) -> str:
    """argparse type of --arch: a known name, or an error naming the closest ones."""
    names = arch_names()
    if text in names:
        return text
    closest = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    hint = f"closest: {', '.join(closest)}" if closest else f"e.g. {OWN_ARCH}, resnet18"
    raise argparse.ArgumentTypeError(
        f"{text!r} is not an architecture ({hint}); python train.py --list-archs prints them all"
    )


class ListArchs(argparse.Action):
    """--list-archs: print the --arch names, one per line, and exit."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print("\n".join(arch_names()))
        parser.exit()


# ------------------------------------------------------------------------------ Models
def model_config(arch: str, num_classes: int, in_channels: int, image_size: int, **own) -> dict:
    """The config build_model() takes: the arch, the classes, and what that arch needs."""
    if arch == OWN_ARCH:
        return {"arch": arch, "in_channels": in_channels, "num_classes": num_classes, **own}
    check_input_size(arch, image_size)
    sized = {"image_size": image_size} if arch.startswith(SIZED_BY_INPUT) else {}
    return {"arch": arch, "num_classes": num_classes, **sized}


def check_input_size(arch: str, image_size: int) -> None:
    """Refuse an input size the torchvision network cannot take, before anything is built: a
    ViT's side must be a multiple of its patch; others have a minimum in their weights' meta."""
    crop = torchvision.models.get_model_weights(arch).DEFAULT.transforms().crop_size[0]
    if arch.startswith(SIZED_BY_INPUT):
        patch = int(re.search(r"_(\d+)$", arch).group(1))  # vit_b_16: 16-px patches
        fits, needed = image_size % patch == 0, f"a multiple of {patch} px"
    else:
        smallest = torchvision.models.get_model_weights(arch).DEFAULT.meta["min_size"][0]
        fits, needed = image_size >= smallest, f"at least {smallest} px"
    if not fits:
        raise UserError(
            f"--arch {arch} needs input images of {needed}, not {image_size}; set --image-size "
            f"to such a size (its ImageNet weights use {crop})"
        )


def build_model(config: dict) -> nn.Module:
    """The network of a model config, freshly initialised, with a `num_classes` attribute (a
    config without "arch" is one saved before --arch existed: this project's own network)."""
    config = dict(config)
    name = config.pop("arch", OWN_ARCH)
    if name == OWN_ARCH:
        return architecture.{{ cookiecutter.__model_class }}(**config)
    no_auxiliary = {"aux_logits": False} if name in AUXILIARY_HEADS else {}
    model = torchvision.models.get_model(name, weights=None, **config, **no_auxiliary)
    model.num_classes = config["num_classes"]  # as the own network has it: the head's size
    return model


def classifier_head(model: nn.Module, num_classes: int) -> tuple[str, nn.Module]:
    """The layer that outputs the class scores: the last Linear with num_classes outputs (a
    1x1 convolution in SqueezeNet), with its name. Every torchvision classifier defines it last."""
    linears = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and module.out_features == num_classes]  # fmt: skip
    convolutions = [(name, module) for name, module in model.named_modules()
                    if isinstance(module, nn.Conv2d) and module.out_channels == num_classes]  # fmt: skip
    found = linears or convolutions
    if not found:
        raise ValueError(f"{type(model).__name__} has no layer with {num_classes} outputs")
    return found[-1]


def head_parameter_names(model: nn.Module, num_classes: int) -> set[str]:
    """The state-dict keys of the classifier head (its weight and bias)."""
    name, head = classifier_head(model, num_classes)
    return {f"{name}.{key}" for key, _ in head.named_parameters()}


# ------------------------------------------------------------------------ Preprocessing
def imagenet_weights(arch: str) -> torchvision.models.WeightsEnum:
    """torchvision's default weights of `arch`; the own network has none."""
    if arch == OWN_ARCH:
        raise UserError(
            f"--pretrained imagenet needs a torchvision --arch ({OWN_ARCH} is this project's own "
            "network and has no ImageNet weights); add e.g. --arch resnet18, or give a weights file"
        )
    return torchvision.models.get_model_weights(arch).DEFAULT


def pretrained_preprocessing(arch: str, source: str) -> dict | None:
    """The input size and normalisation the pretrained weights were trained with: their own
    transforms' for imagenet, the recorded ones of a project checkpoint; None otherwise."""
    if source == "none":
        return None
    if source == "imagenet":
        transforms = imagenet_weights(arch).transforms()
        return {
            "image_size": transforms.crop_size[0],
            "resize_size": transforms.resize_size[0],
            "mean": tuple(transforms.mean),
            "std": tuple(transforms.std),
        }
    return read_weights_file(source).get("preprocessing")


# ----------------------------------------------------------------------------- Weights
def load_pretrained(model: nn.Module, arch: str, source: str, classes: list[str]) -> None:
    """Load --pretrained weights into `model` (built by build_model for `classes`): the
    backbone strictly, the head too when it was trained on the same classes."""
    if source == "none":
        return
    if source == "imagenet":
        weights = imagenet_weights(arch)
        state, source_classes = imagenet_state_dict(arch, weights), weights.meta["categories"]
        described = f"the ImageNet weights of {arch}"
    else:
        loaded = read_weights_file(source)
        state, source_classes = loaded["model"], loaded.get("classes")
        described = source
        hub_weights.check_arch(source, loaded.get("arch"), arch)
    head = head_parameter_names(model, len(classes))
    same_head = same_classes(state, head, source_classes, classes)
    fit_backbone(model, state if same_head else drop(state, head), head, same_head, described)
    if not same_head:
        trained_on = f"{len(source_classes)} classes" if source_classes else "other classes"
        tqdm.write(
            f"pretrained: {described}; re-initialised {', '.join(sorted(head))} (the head was "
            f"trained on {trained_on}, this data has {len(classes)})"
        )
    else:
        tqdm.write(f"pretrained: {described}, the head included (same classes)")


def same_classes(state: dict, head: set[str], source: list[str] | None, target: list[str]) -> bool:
    """Whether the saved head scores the same classes: same names when the file names them,
    else the same count."""
    if source is not None:
        return list(source) == list(target)
    weight = state.get(next(key for key in sorted(head) if key.endswith("weight")))
    return weight is not None and weight.shape[0] == len(target)


def drop(state: dict, keys: set[str]) -> dict:
    """`state` without `keys`."""
    return {key: value for key, value in state.items() if key not in keys}


def fit_backbone(model: nn.Module, state: dict, head: set[str], strict: bool, source: str) -> None:
    """Load `state` into `model`: every key must match in name and shape, but for the head
    when it is re-initialised (`strict` False)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state) - (set() if strict else head))
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
            f"{source} does not fit this --arch and its flags (keys {'; '.join(problems)}); "
            "give weights of the same architecture, built with the same --width/--norm and "
            "--image-size"
        )
    model.load_state_dict(state, strict=strict)


def imagenet_state_dict(arch: str, weights: torchvision.models.WeightsEnum) -> dict:
    """The ImageNet state dict of `arch` from torch's hub cache, downloaded only when missing and
    read by hub_weights (hash-checked, weights_only), never by torchvision's own loading."""
    try:
        hub_weights.fetch(weights.url)
    except hub_weights.DownloadError as error:
        raise UserError(
            f"the ImageNet weights of {arch} are not in torch's cache "
            f"({hub_weights.cached_file(weights.url)}) and could not be downloaded ({error}); "
            f"download {weights.url} to that path on a machine with network, or point TORCH_HOME "
            "at a cache that has it"
        ) from None
    state = with_current_keys(arch, hub_weights.load_state_dict(weights.url))
    auxiliary = AUXILIARY_HEADS.get(arch)
    return {key: value for key, value in state.items()
            if not (auxiliary and key.startswith(auxiliary))}  # fmt: skip


def with_current_keys(arch: str, state: dict) -> dict:
    """`state` under today's key names: torchvision's DenseNet files predate them, and only its
    own loader renames them (given the state dict already read, it downloads nothing)."""
    if not arch.startswith("densenet"):
        return state
    network = torchvision.models.get_model(arch, weights=None)
    already_read = types.SimpleNamespace(get_state_dict=lambda **options: state)
    torchvision.models.densenet._load_state_dict(network, already_read, progress=False)
    return network.state_dict()


def read_weights_file(path: str) -> dict:
    """A --pretrained weights file as {"model": state dict, "classes", "preprocessing", "arch"}
    (the last three only when a checkpoint of this project recorded them)."""
    state, checkpoint = hub_weights.read_weights_file(path)
    if checkpoint is None:
        return {"model": state}
    config = checkpoint.get("model_config") or {}
    arch = config.get("arch", OWN_ARCH if "num_classes" in config else None)
    return {"model": state, "classes": checkpoint.get("classes"),
            "preprocessing": checkpoint.get("preprocessing"), "arch": arch}  # fmt: skip


# ---------------------------------------------------------------------------- Freezing
def parameter_groups(model: nn.Module, num_classes: int, backbone_lr_scale: float) -> list:
    """The head's parameters at the full learning rate, the backbone's at its scale."""
    head = head_parameter_names(model, num_classes)
    named = list(model.named_parameters())
    return [
        ([parameter for name, parameter in named if name in head], 1.0),
        ([parameter for name, parameter in named if name not in head], backbone_lr_scale),
    ]


def set_backbone_frozen(model: nn.Module, num_classes: int, frozen: bool) -> bool:
    """Freeze (or thaw) every parameter outside the head; frozen batch-norm layers also keep
    their running statistics (eval mode). Returns whether the trainable set changed."""
    head = head_parameter_names(model, num_classes)
    changed = False
    for name, parameter in model.named_parameters():
        trainable = name in head or not frozen
        changed |= parameter.requires_grad != trainable
        parameter.requires_grad_(trainable)
    if frozen:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    return changed
