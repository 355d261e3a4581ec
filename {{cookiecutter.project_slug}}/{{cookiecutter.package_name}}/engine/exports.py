"""Export: a trained network as a file that runs without this project's training code.

pt2 is torch.export's program (torch alone runs it), onnx the ONNX graph of torch.onnx's
exporter (onnxruntime runs it), safetensors the weights with the model card beside them as
JSON (this project's model class loads them, without pickle). Each file carries the model card
(engine/inference.py), so predict.py --model knows how to feed it. export.py writes a file into
a folder of its own beside --output, verifies it with its own runtime, and only then moves it
onto --output: a file that failed, or an export that crashed or was stopped, replaces nothing,
and no file is replaced that is not an earlier export of the same format.

torch.export.load unpickles (runs the code in) weights and constants an archive marks as
pickled, and sample inputs that are not plain tensors; export.py never writes such entries, so
load_pt2 refuses an archive that has any before torch reads it.
"""

import contextlib
import errno
import importlib.util
import io
import json
import logging
import math
import os
import reprlib
import shutil
import signal
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn
from torch.export.passes import move_to_device_pass
from torch.export.pt2_archive import constants as pt2_layout

from ..errors import UserError
from .files import first_line
from .inference import Predictor, check_card, eager_predictor
from .task_base import Task

EXPORT_FORMATS = ("pt2", "onnx", "safetensors")
PT2_CARD_FILE = "model_card.json"  # the card's extra file in a .pt2 archive
ONNX_CARD_KEY = "model_card"  # the card's entry in an ONNX model's metadata_props
SIDECAR_SUFFIX = ".card.json"  # model.safetensors's card is model.card.json
EXTRA = 'pip install -e ".[export]"'
# The optional packages a format needs to be written and verified, and to be run.
WRITE_PACKAGES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "safetensors": ("safetensors",)}
RUN_PACKAGES = {"onnx": ("onnxruntime",), "safetensors": ("safetensors",)}


class VerificationError(Exception):
    """An exported file whose outputs differ from the eager model's beyond the tolerance."""


class ExportInterruptedError(Exception):
    """A stop signal (SIGTERM, SIGHUP) came while a file was being exported; nothing was kept."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


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
    """The JSON file with the model card beside a safetensors file: model.card.json (a name of
    its own, so it never stands for another JSON file, a run's args.json say)."""
    return path.with_suffix(SIDECAR_SUFFIX)


def exported_files(path: Path) -> list[Path]:
    """The files an export to `path` wrote: the file, and a safetensors file's sidecar."""
    return [path, *([sidecar_path(path)] if path.suffix == ".safetensors" else [])]


@contextlib.contextmanager
def staged_output(output: Path, fmt: str) -> Iterator[Path]:
    """A path to write `output` to, in a new folder beside it; when the block ends without
    an error, the files there (a sidecar, ONNX's external weights too) replace their
    namesakes beside `output`, which must be absent or an earlier export in format `fmt`.
    On an error, a full disk or a stop signal the folder is removed and nothing replaced."""
    check_replaceable(output, fmt)
    try:
        stage = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    except OSError as error:
        raise cannot_write(output, error) from None
    try:
        with signals_raise_export_stopped():
            yield stage / output.name
            for written in sorted(stage.iterdir()):
                if written.name != output.name:
                    check_replaceable(output.parent / written.name, fmt)
            for written in stage.iterdir():
                os.replace(written, output.parent / written.name)  # the same disk: atomic
    except OSError as error:  # a full disk, mostly: one sentence, not the writer's traceback
        raise cannot_write(output, error) from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def cannot_write(output: Path, error: OSError) -> UserError:
    """The sentence for an export that the file system refused."""
    if error.errno == errno.ENOSPC:
        return UserError(
            f"the disk of {output.parent} is full, so {output.name} was not written (nothing "
            "was replaced); free some space or pick --output on another disk"
        )
    return UserError(
        f"cannot write {output} ({error.strerror or first_line(error)}); pick a writable folder"
    )


@contextlib.contextmanager
def signals_raise_export_stopped() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ExportInterruptedError in the block (their default ends the process on
    the spot, leaving the staging folder behind); the earlier handlers come back after it."""
    names = [name for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]

    def stop(signal_number: int, frame) -> None:
        raise ExportInterruptedError(signal_number)

    try:
        earlier = {name: signal.signal(getattr(signal, name), stop) for name in names}
    except ValueError:  # not the main thread: signals cannot be handled here, leave them be
        earlier = {}
    try:
        yield
    finally:
        for name, handler in earlier.items():
            signal.signal(getattr(signal, name), handler)


def check_replaceable(path: Path, fmt: str) -> None:
    """Refuse a file an export would replace unless it is an earlier export in format `fmt`
    (a checkpoint, a run's args.json or any other file stays as it is)."""
    if not path.exists() and not path.is_symlink():
        return
    if path.name.endswith(SIDECAR_SUFFIX):  # a sidecar: a card may replace a card
        if is_card_file(path):
            return
    elif path.suffix == f".{fmt}" and is_earlier_export(path, fmt):
        return
    raise UserError(
        f"{path} exists and is not an earlier {fmt} export, so export.py will not replace it; "
        "move it away, or give --output another name"
    )


def is_earlier_export(path: Path, fmt: str) -> bool:
    """Whether `path` holds a model card where export.py puts it in format `fmt`."""
    try:
        if fmt == "pt2":
            with zipfile.ZipFile(path) as archive:
                return any(name.endswith(f"/extra/{PT2_CARD_FILE}") for name in archive.namelist())
        if fmt == "onnx":
            import onnx

            proto = onnx.load(str(path), load_external_data=False)
            return any(entry.key == ONNX_CARD_KEY for entry in proto.metadata_props)
        from safetensors import safe_open

        with safe_open(str(path), "pt"):  # a readable header: a safetensors file
            return True
    except Exception:  # unreadable in that format: not an export of it
        return False


def is_card_file(path: Path) -> bool:
    """Whether `path` is a JSON model card (a safetensors file's sidecar)."""
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(card, dict) and "model_config" in card and "card_version" in card


def dynamic_shapes(dynamic_dims: Sequence[int]) -> tuple[dict, ...]:
    """torch.export's spec for the one input: the dimensions any size may take (the model's
    own code then fixes what it needs, e.g. a multiple of 4)."""
    return (dict.fromkeys(dynamic_dims, torch.export.Dim.DYNAMIC),)


def write_pt2(
    model: nn.Module, card: dict, example: torch.Tensor, dynamic_dims: Sequence[int], path: Path
) -> None:
    """torch.export's program of `model`, traced with `example`, the card as an extra file."""
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes(dynamic_dims))
    # Archived in memory, then written by Python: torch's own zip writer aborts the process
    # (a c10::Error) when the disk fills; Python's write raises an OSError staged_output reports.
    archive = io.BytesIO()
    torch.export.save(program, archive, extra_files={PT2_CARD_FILE: json.dumps(card)})
    path.write_bytes(archive.getvalue())


def write_onnx(
    model: nn.Module, card: dict, example: torch.Tensor, dynamic_dims: Sequence[int], path: Path
) -> None:
    """The ONNX graph of torch.onnx's exporter (torch.export based), the card in its metadata."""
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        dynamic_shapes=dynamic_shapes(dynamic_dims),
        input_names=["inputs"],
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
    path: Path, model: nn.Module, examples: Sequence[torch.Tensor], task: Task
) -> list[tuple[float, float]]:
    """For each example batch: the max absolute difference between the reloaded file's outputs
    and the eager model's, and the eager outputs' largest magnitude (all float32, on the CPU;
    a NaN counts as an infinite difference)."""
    exported = exported_predictor(path, torch.device("cpu"), task)
    reference = eager_predictor(model, exported.card, torch.device("cpu"))
    results = []
    for inputs in examples:
        expected = reference.run(inputs)
        difference = (exported.run(inputs) - expected).abs().nan_to_num(nan=math.inf)
        results.append((difference.max().item(), expected.abs().max().item()))
    return results


def exported_predictor(path: str | Path, device: torch.device, task: Task) -> Predictor:
    """A Predictor of a file export.py wrote, picked by its suffix; a file of another task,
    a damaged one or one without its card is a UserError."""
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
    return loaders[fmt](path, device, task)


def checked_card(text: str | None, path: Path, task: Task) -> dict:
    """The model card stored with `path`, refused when absent, damaged or of another task."""
    try:
        card = json.loads(text) if text else None
    except ValueError:
        card = None
    if not isinstance(card, dict) or "model_config" not in card:
        raise UserError(
            f"{path} carries no model card (how to feed the model), so it was not written by "
            "this project's export.py; export the checkpoint again with export.py"
        )
    if card.get("task") != task.NAME:
        raise UserError(
            f"{path} holds a {card.get('task')} model, but this project's task is {task.NAME}; "
            "use it in a project of its task, or export one of this project's checkpoints"
        )
    return check_card(card, path, task)


def unreadable(path: Path, fmt: str, error: Exception) -> UserError:
    """The sentence for a file its runtime cannot read."""
    return UserError(
        f"{path} is not a readable {fmt} file ({first_line(error)}); "
        "export the checkpoint again with export.py"
    )


def load_pt2(path: Path, device: torch.device, task: Task) -> Predictor:
    """torch.export's program, moved to `device`."""
    extra_files = {PT2_CARD_FILE: ""}
    check_pt2_archive(path)
    try:
        with torch_export_logs_silenced():  # it logs a traceback before raising its error
            program = torch.export.load(path, extra_files=extra_files)
    except Exception as error:  # a damaged archive fails in many ways
        raise unreadable(path, "pt2", error) from error
    card = checked_card(extra_files[PT2_CARD_FILE], path, task)
    if device.type != "cpu":
        program = move_to_device_pass(program, device)
    module = program.module()

    @torch.inference_mode()
    def run(inputs: torch.Tensor) -> torch.Tensor:
        return module(inputs).float()

    return Predictor(run, card, device)


def check_weight_shapes(path: Path, config: dict, build_model: Callable) -> None:
    """Refuse a safetensors file whose tensors are not the shapes of the network its card
    builds, before building it for real (a card edited to a huge width would take all memory)."""
    from safetensors import safe_open

    with torch.device("meta"):
        network = build_model(config)
    expected = {name: tuple(value.shape) for name, value in network.state_dict().items()}
    try:
        with safe_open(str(path), "pt") as weights:
            names = weights.keys()  # noqa: SIM118 (safe_open is not iterable)
            found = {name: tuple(weights.get_slice(name).get_shape()) for name in names}
    except Exception as error:  # a damaged header
        raise unreadable(path, "safetensors", error) from error
    # save_model leaves out the second name of a shared tensor: compare the names it kept.
    if any(expected.get(name) != shape for name, shape in found.items()):
        mismatch = ValueError("its weights are not those of the network its card describes")
        raise unreadable(path, "safetensors", mismatch)


def check_pt2_archive(path: Path) -> None:
    """Refuse, before torch reads it, a .pt2 file that is not torch.export.save's archive or
    has an entry torch.export.load would unpickle (and so run code from)."""
    try:
        with zipfile.ZipFile(path) as archive:
            problem = pt2_archive_problem(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise unreadable(path, "pt2", ValueError(f"not a complete zip archive: {error}")) from None
    if problem is not None:
        raise UserError(
            f"{path} was not loaded: {problem}, which export.py never writes and torch.export.load "
            "would run as code; export the checkpoint again with export.py, and run .pt2 files "
            "only from sources you trust"
        )


def pt2_archive_problem(archive: zipfile.ZipFile) -> str | None:
    """What in a zip archive is not torch.export.save's plain layout, or None: the archive
    marker, and for each model, weights and constants stored as raw tensors (no pickled,
    legacy or opaque-object entries) and sample inputs that load with weights_only=True."""
    roots = {name.partition("/")[0] for name in archive.namelist()}
    if len(roots) != 1 or "version" in archive.namelist():  # "version": torch's older layout
        return "it is a zip archive but not one torch.export.save writes"
    root = f"{roots.pop()}/"
    names = {name.removeprefix(root) for name in archive.namelist()}
    if pt2_layout.ARCHIVE_FORMAT_PATH not in names or (
        archive.read(root + pt2_layout.ARCHIVE_FORMAT_PATH).decode(errors="replace")
        != pt2_layout.ARCHIVE_FORMAT_VALUE
    ):
        return "it is a zip archive but not one torch.export.save writes (a checkpoint?)"
    for model in models_in(names):
        for kind, directory in (("weights", pt2_layout.WEIGHTS_DIR),
                                ("constants", pt2_layout.CONSTANTS_DIR)):  # fmt: skip
            if f"{directory}{model}.pt" in names:
                return f"its {kind} are one pickle (torch's legacy layout)"
            config_name = f"{directory}{model}_{kind}_config.json"
            if config_name not in names:
                return f"it has no {config_name}"
            problem = payload_problem(json.loads(archive.read(root + config_name)), kind)
            if problem is not None:
                return problem
        sample_inputs = pt2_layout.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)
        if sample_inputs in names and not loads_as_tensors(archive.read(root + sample_inputs)):
            return "its sample inputs are not plain tensors"
    return None


def models_in(names: set[str]) -> list[str]:
    """The model names of an archive's models/<name>.json files."""
    prefix, suffix = pt2_layout.MODELS_FILENAME_FORMAT.split("{}")
    return [name[len(prefix) : -len(suffix)] for name in sorted(names)
            if name.startswith(prefix) and name.endswith(suffix)]  # fmt: skip


def payload_problem(config: object, kind: str) -> str | None:
    """The first weight or constant of a payload config that is not a raw tensor, or None."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        return f"its {kind} config is not torch.export's"
    raw_prefix = (pt2_layout.WEIGHT_FILENAME_PREFIX if kind == "weights"
                  else pt2_layout.TENSOR_CONSTANT_FILENAME_PREFIX)  # fmt: skip
    for name, entry in entries.items():
        raw = (isinstance(entry, dict) and entry.get("use_pickle") is False
               and str(entry.get("path_name")).startswith(raw_prefix))  # fmt: skip
        if not raw:
            return f"its {kind} entry {reprlib.repr(name)} is a pickled object"
    return None


def loads_as_tensors(data: bytes) -> bool:
    """Whether torch.save'd bytes load with weights_only=True (torch.export.load would retry
    with weights_only=False, which runs code, when they do not)."""
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception:  # any failure is a refusal
        return False
    return True


@contextlib.contextmanager
def torch_export_logs_silenced() -> Iterator[None]:
    """torch.export's loggers (and their children) quiet in the block: the error raised after
    their tracebacks says it in one line."""
    loggers = [logging.getLogger(name) for name in ("torch.export", "torch._export")]
    earlier = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, earlier, strict=True):
            logger.setLevel(level)


def load_onnx(path: Path, device: torch.device, task: Task) -> Predictor:
    """An onnxruntime session: on the GPU when `device` is CUDA and the runtime has it."""
    import onnxruntime

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        session = onnxruntime.InferenceSession(str(path), providers=providers)
    except Exception as error:  # onnxruntime's own error classes, one per kind of damage
        raise unreadable(path, "onnx", error) from error
    metadata = session.get_modelmeta().custom_metadata_map
    card = checked_card(metadata.get(ONNX_CARD_KEY), path, task)
    input_name = session.get_inputs()[0].name

    def run(inputs: torch.Tensor) -> torch.Tensor:
        batch = inputs.detach().to("cpu", torch.float32).contiguous().numpy()
        (outputs,) = session.run(None, {input_name: batch})
        return torch.from_numpy(outputs).to(device, torch.float32)

    return Predictor(run, card, device)


def load_safetensors(path: Path, device: torch.device, task: Task) -> Predictor:
    """The network the sidecar's card describes, with the file's weights (no pickle)."""
    import safetensors.torch

    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise UserError(
            f"{path} has no model card beside it ({sidecar.name} is missing); keep the two "
            "files export.py writes together, or export the checkpoint again"
        )
    card = checked_card(sidecar.read_text(), sidecar, task)
    check_weight_shapes(path, card["model_config"], task.build_model)
    model = task.build_model(card["model_config"])
    try:
        safetensors.torch.load_model(model, path)
    except Exception as error:  # a damaged header, or weights of another network
        raise unreadable(path, "safetensors", error) from error
    return eager_predictor(model, card, device)
