"""Export: a trained network as a file that runs without this project's training code.

pt2 is torch.export's program (torch alone runs it), onnx the ONNX graph of torch.onnx's
exporter (onnxruntime runs it), safetensors the weights with the model card beside them as
JSON (this project's model class loads them, without pickle). Each file carries the model card
(engine/inference.py), so predict.py --model knows how to feed it. export.py writes a file into
a folder of its own beside --output, verifies it with its own runtime, and only then moves it
onto --output: a file that failed, or an export that crashed, replaces nothing.
"""

import contextlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.export.passes import move_to_device_pass

from ..errors import UserError
from .checkpoint import first_line
from .inference import Predictor, eager_predictor

EXPORT_FORMATS = ("pt2", "onnx", "safetensors")
PT2_CARD_FILE = "model_card.json"  # the card's extra file in a .pt2 archive
ONNX_CARD_KEY = "model_card"  # the card's entry in an ONNX model's metadata_props
EXTRA = 'pip install -e ".[export]"'
# The optional packages a format needs to be written and verified, and to be run.
WRITE_PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "safetensors": ("safetensors",)}
RUN_PACKAGES = {"onnx": ("onnxruntime",), "safetensors": ("safetensors",)}


class VerificationError(Exception):
    """An exported file whose outputs differ from the eager model's beyond the tolerance."""


def require_export_packages(fmt: str) -> None:
    """Refuse, in one sentence naming the extra, a format whose writer or verifier is missing."""
    require_packages(fmt, WRITE_PACKAGES)


def require_packages(fmt: str, packages: dict[str, tuple[str, ...]]) -> None:
    """Refuse, in one sentence naming the extra, a format whose optional packages (in
    `packages`) are missing; checked before importing them, so none shows a traceback."""
    for name in packages.get(fmt, ()):
        if importlib.util.find_spec(name) is None:
            raise UserError(
                f"the {fmt} format needs the package {name}, which is not installed; "
                f"install the export extra: {EXTRA}"
            )


def sidecar_path(path: Path) -> Path:
    """The JSON file with the model card beside a safetensors file."""
    return path.with_suffix(".json")


def exported_files(path: Path) -> list[Path]:
    """The files an export to `path` wrote: the file, and a safetensors file's sidecar."""
    return [path, *([sidecar_path(path)] if path.suffix == ".safetensors" else [])]


@contextlib.contextmanager
def staged_output(output: Path) -> Iterator[Path]:
    """A path to write `output` to, in a new folder beside it; when the block ends without
    an error, the files there (a sidecar, ONNX's external weights too) replace their
    namesakes beside `output`. After an error the folder is removed and nothing replaced."""
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as error:
        raise UserError(
            f"cannot write in {output.parent} ({error.strerror}); pick a writable folder"
        ) from None
    try:
        yield stage / output.name
        for written in stage.iterdir():
            os.replace(written, output.parent / written.name)  # the same disk: atomic
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def dynamic_shapes(dynamic_dims: Sequence[int]) -> tuple[dict, ...]:
    """torch.export's spec for the one input: the dimensions any size may take (the model's
    own code then fixes what it needs, e.g. a multiple of 4)."""
    return (dict.fromkeys(dynamic_dims, torch.export.Dim.DYNAMIC),)


def write_pt2(
    model: nn.Module, card: dict, example: torch.Tensor, dynamic_dims: Sequence[int], path: Path
) -> None:
    """torch.export's program of `model`, traced with `example`, the card as an extra file."""
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes(dynamic_dims))
    torch.export.save(program, path, extra_files={PT2_CARD_FILE: json.dumps(card)})


def write_onnx(
    model: nn.Module, card: dict, example: torch.Tensor, dynamic_dims: Sequence[int], path: Path
) -> None:
    """The ONNX graph of torch.onnx's exporter (torch.export based), the card in its metadata."""
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=dynamic_shapes(dynamic_dims),
        input_names=["images"],
        output_names=["outputs"],
        verbose=False,  # no progress lines
    )
    program.model.metadata_props[ONNX_CARD_KEY] = json.dumps(card)
    program.save(path)


def write_safetensors(
    model: nn.Module, card: dict, example: torch.Tensor, dynamic_dims: Sequence[int], path: Path
) -> None:
    """The weights (save_model handles tensors that share memory) and the card beside them;
    the card's model_config rebuilds the network, so any input size works."""
    import safetensors.torch

    safetensors.torch.save_model(model, str(path))
    sidecar_path(path).write_text(json.dumps(card, indent=2) + "\n")
    # safetensors writes its file readable by its owner alone; give it a new file's usual mode.
    shutil.copymode(sidecar_path(path), path)


WRITERS: dict[str, Callable] = {
    "pt2": write_pt2,
    "onnx": write_onnx,
    "safetensors": write_safetensors,
}


def write_export(
    fmt: str,
    model: nn.Module,
    card: dict,
    example: torch.Tensor,
    dynamic_dims: Sequence[int],
    path: Path,
) -> None:
    """Write `model` in format `fmt` to `path`; `dynamic_dims` are the input's dimensions
    (0: the batch) that may take any size."""
    WRITERS[fmt](model.eval(), card, example, dynamic_dims, path)


def verify_export(
    path: Path, model: nn.Module, examples: Sequence[torch.Tensor], build_model: Callable
) -> list[tuple[float, float]]:
    """For each example batch: the max absolute difference between the reloaded file's outputs
    and the eager model's, and the eager outputs' largest magnitude (all float32, on the CPU;
    a NaN counts as an infinite difference)."""
    exported = exported_predictor(path, torch.device("cpu"), None, build_model)
    reference = eager_predictor(model, exported.card, torch.device("cpu"))
    results = []
    for images in examples:
        expected = reference.run(images)
        difference = (exported.run(images) - expected).abs().nan_to_num(nan=math.inf)
        results.append((difference.max().item(), expected.abs().max().item()))
    return results


def exported_predictor(
    path: str | Path, device: torch.device, task_name: str | None, build_model: Callable
) -> Predictor:
    """A Predictor of a file export.py wrote, picked by its suffix; a file of another task
    than `task_name` (when given), a damaged one or one without its card is a UserError."""
    path = Path(path)
    fmt = path.suffix.removeprefix(".")
    if fmt not in EXPORT_FORMATS:
        raise UserError(
            f"{path} is not a model file export.py writes (.pt2, .onnx or .safetensors); "
            "export a checkpoint with export.py, or use the checkpoint itself"
        )
    require_packages(fmt, RUN_PACKAGES)
    if not path.is_file():
        raise UserError(f"{path} does not exist; give the path of a file export.py wrote")
    loaders = {"pt2": load_pt2, "onnx": load_onnx, "safetensors": load_safetensors}
    return loaders[fmt](path, device, task_name, build_model)


def checked_card(text: str | None, path: Path, task_name: str | None) -> dict:
    """The model card stored with `path`, refused when absent or of another task."""
    try:
        card = json.loads(text) if text else None
    except ValueError:
        card = None
    if not isinstance(card, dict) or "model_config" not in card:
        raise UserError(
            f"{path} carries no model card (how to feed the model), so it was not written by "
            "this project's export.py; export the checkpoint again with export.py"
        )
    if task_name is not None and card.get("task") != task_name:
        raise UserError(
            f"{path} holds a {card.get('task')} model, but this project's task is {task_name}; "
            "use it in a project of its task, or export one of this project's checkpoints"
        )
    return card


def unreadable(path: Path, fmt: str, error: Exception) -> UserError:
    """The sentence for a file its runtime cannot read."""
    return UserError(
        f"{path} is not a readable {fmt} file ({first_line(error)}); "
        "export the checkpoint again with export.py"
    )


def load_pt2(
    path: Path, device: torch.device, task_name: str | None, build_model: Callable
) -> Predictor:
    """torch.export's program, moved to `device`."""
    extra_files = {PT2_CARD_FILE: ""}
    # torch.export.load logs a traceback for a damaged archive before raising: ask zipfile first.
    if not zipfile.is_zipfile(path):
        raise unreadable(path, "pt2", ValueError("not a complete zip archive"))
    try:
        program = torch.export.load(path, extra_files=extra_files)
    except Exception as error:  # a damaged archive fails in many ways
        raise unreadable(path, "pt2", error) from error
    card = checked_card(extra_files[PT2_CARD_FILE], path, task_name)
    if device.type != "cpu":
        program = move_to_device_pass(program, device)
    module = program.module()

    @torch.inference_mode()
    def run(images: torch.Tensor) -> torch.Tensor:
        return module(images).float()

    return Predictor(run, card, device)


def load_onnx(
    path: Path, device: torch.device, task_name: str | None, build_model: Callable
) -> Predictor:
    """An onnxruntime session: on the GPU when `device` is CUDA and the runtime has it."""
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime's own error classes, one per kind of damage
        raise unreadable(path, "onnx", error) from error
    card = checked_card(
        session.get_modelmeta().custom_metadata_map.get(ONNX_CARD_KEY), path, task_name
    )
    input_name = session.get_inputs()[0].name

    def run(images: torch.Tensor) -> torch.Tensor:
        inputs = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (outputs,) = session.run(None, {input_name: inputs})
        return torch.from_numpy(outputs).to(device, torch.float32)

    return Predictor(run, card, device)


def load_safetensors(
    path: Path, device: torch.device, task_name: str | None, build_model: Callable
) -> Predictor:
    """The network the sidecar's card describes, with the file's weights (no pickle)."""
    import safetensors.torch

    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise UserError(
            f"{path} has no model card beside it ({sidecar.name} is missing); keep the two "
            "files export.py writes together, or export the checkpoint again"
        )
    card = checked_card(sidecar.read_text(), sidecar, task_name)
    model = build_model(card["model_config"])
    try:
        safetensors.torch.load_model(model, path)
    except Exception as error:  # a damaged header, or weights of another network
        raise unreadable(path, "safetensors", error) from error
    return eager_predictor(model, card, device)
