"""export.py and engine/exports.py: each format round-trips the tiny run's best.pt within the
tolerance at several input sizes, a file that fails its verification replaces nothing, and a bad
model file gets one sentence. Through the task interface, so a swapped-in model passes too."""

import contextlib
import errno
import importlib.util
import io
import json
import os
import pathlib
import pickle
import shutil
import signal
import sys
import zipfile

import pytest
import torch
from torch import nn

import {{ cookiecutter.package_name }}.engine as engine
from {{ cookiecutter.package_name }}.engine import exports
from {{ cookiecutter.package_name }}.engine.cli import run_cli
from {{ cookiecutter.package_name }}.errors import UserError
from {{ cookiecutter.package_name }}.task import task

from ..helpers import PROJECT_ROOT, load_script
from ..task import task_cases

CPU = torch.device("cpu")
# export.py's default. Two runtimes' float32 outputs of one network differ by rounding, about
# 1e-6 on outputs of order 1 (the float32 step there is 1.2e-7): a hundredfold margin.
TOLERANCE = 1e-4


def skip_without_packages(fmt: str) -> None:
    """Skip, naming the package, when the export extra that `fmt` needs is not installed."""
    for name in exports.WRITE_PACKAGES.get(fmt, ()):
        pytest.importorskip(name, reason=f"--format {fmt} needs {name}: pip install -e .[export]")


def run_export(script, monkeypatch, *flags: str) -> int:
    """export.py's exit code for `flags`, as the command line would end."""
    monkeypatch.setattr(sys, "argv", ["export.py", *flags])
    return run_cli(script.main, prog="export.py")


@pytest.fixture(scope="module")
def export_script():
    return load_script("export")


@pytest.fixture(scope="module")
def best(tiny_run):
    return tiny_run.run_dir / "checkpoints" / "best.pt"


@pytest.fixture(scope="module")
def eager(best):
    """The checkpoint's network (eval, CPU) and model card, as export.py loads them."""
    return engine.load_checkpoint_model(best, task)


@pytest.fixture(scope="module")
def exported(export_script, best, tmp_path_factory):
    """export(fmt): best.pt exported once per format for this module: (file, exit code, stdout)."""
    made = {}

    def export(fmt: str):
        skip_without_packages(fmt)
        if fmt not in made:
            output = tmp_path_factory.mktemp(f"export-{fmt}") / f"model.{fmt}"
            flags = ["--checkpoint", str(best), "--format", fmt, "--output", str(output)]
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                code = export_script.main(flags)
            made[fmt] = (output, code, stdout.getvalue())
        return made[fmt]

    return export


def test_the_export_examples_vary_the_batch_down_to_one(eager, export_script):
    # The file keeps free the dimensions where the examples differ, and each example checks
    # it: the batch always varies, a lone image (a last batch of one) among them.
    _, card = eager
    examples = task.export_examples(card)
    assert all(images.dtype == torch.float32 for images in examples)
    assert 0 in export_script.varying_dims(examples)
    assert 1 in {images.shape[0] for images in examples}


def test_the_exported_file_keeps_free_exactly_the_dimensions_the_examples_vary(export_script):
    examples = [torch.zeros(2, 3, 8, 8), torch.zeros(1, 3, 8, 12), torch.zeros(3, 3, 8, 8)]
    assert export_script.varying_dims(examples) == [0, 3]


@pytest.mark.parametrize("fmt", engine.EXPORT_FORMATS)
def test_every_format_round_trips_within_tolerance_at_several_sizes(exported, eager, fmt):
    output, code, stdout = exported(fmt)
    model, card = eager
    examples = task.export_examples(card)
    summary = json.loads(stdout.splitlines()[-1])
    assert code == 0 and summary["format"] == fmt and summary["output"] == str(output)
    assert 0 <= summary["max_abs_diff"] <= summary["tolerance"] == TOLERANCE
    assert stdout.count("verified    batch ") == len(examples)
    # Checked here too, not only by export.py: reloaded as predict.py --model would, the file
    # carries the checkpoint's card and matches the network, also on a batch size (twice the
    # traced one) that export.py never tried.
    predictor = engine.exported_predictor(output, CPU, task)
    assert predictor.card == card
    with torch.inference_mode():
        for images in [*examples, torch.cat([examples[0], examples[0]])]:
            outputs = predictor.run(images)
            assert outputs.dtype == torch.float32
            torch.testing.assert_close(outputs, model(images), rtol=0, atol=TOLERANCE)


def test_the_onnx_graphs_input_and_output_names_are_the_readmes(exported):
    onnxruntime = pytest.importorskip("onnxruntime")
    output, code, _ = exported("onnx")
    session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    names = session.get_inputs()[0].name, session.get_outputs()[0].name
    assert code == 0 and names == ("inputs", "outputs")
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert f"its input is `{names[0]}`, its output `{names[1]}`" in readme


def test_the_default_output_is_the_checkpoint_path_with_the_format_suffix(
    export_script, best, tmp_path, monkeypatch
):
    skip_without_packages("safetensors")
    checkpoint = tmp_path / "best.pt"
    shutil.copy(best, checkpoint)
    assert run_export(export_script, monkeypatch, "--checkpoint", str(checkpoint),
                      "--format", "safetensors") == 0  # fmt: skip
    # The weights, and the card beside them; no staging folder left.
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["best.card.json", "best.pt", "best.safetensors"]


class ShiftedOutputs(nn.Module):
    """A network whose outputs are another's plus 1: far beyond any tolerance."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images) + 1


def test_a_file_that_fails_verification_exits_1_and_replaces_nothing(
    export_script, best, exported, tmp_path, monkeypatch, capsys
):
    output = tmp_path / "model.pt2"
    shutil.copy(exported("pt2")[0], output)
    earlier = output.read_bytes()
    write_pt2 = exports.WRITERS["pt2"]

    def write_shifted(model, *rest) -> None:
        write_pt2(ShiftedOutputs(model), *rest)

    monkeypatch.setitem(exports.WRITERS, "pt2", write_shifted)
    flags = ["--checkpoint", str(best), "--format", "pt2", "--output", str(output)]
    assert run_export(export_script, monkeypatch, *flags) == 1
    error = capsys.readouterr().err
    assert error.startswith("export.py: error: the pt2 file's outputs differ from the checkpoint's")
    assert "above --tolerance 0.0001" in error and error.count("\n") == 1
    # The failed file is gone, the earlier one untouched.
    assert list(tmp_path.iterdir()) == [output] and output.read_bytes() == earlier


class ScaledOutputs(nn.Module):
    """A network whose outputs are another's times `factor`."""

    def __init__(self, model: nn.Module, factor: float) -> None:
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images) * self.factor


@pytest.mark.parametrize(("relative_error", "exit_code"), [(3e-5, 0), (3e-4, 1)])
def test_the_tolerance_is_relative_where_outputs_exceed_1(
    export_script, eager, tmp_path, monkeypatch, capsys, relative_error, exit_code
):
    # A trained network's logits reach tens, and float32 rounding grows with them: a file
    # within 1e-4 of outputs in the hundreds (3e-5 of them) is kept, one 3e-4 off is not.
    model, card = eager
    large = ScaledOutputs(model, 1000.0).eval()
    monkeypatch.setattr(export_script.engine, "load_checkpoint_model", lambda *_: (large, card))
    write_pt2 = exports.WRITERS["pt2"]

    def write_off_by(model, *rest) -> None:
        write_pt2(ScaledOutputs(model, 1 + relative_error), *rest)

    monkeypatch.setitem(exports.WRITERS, "pt2", write_off_by)
    flags = ["--checkpoint", "best.pt", "--format", "pt2", "--output", str(tmp_path / "m.pt2")]
    assert run_export(export_script, monkeypatch, *flags) == exit_code
    if exit_code == 0:  # an absolute tolerance would have refused this file
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["max_abs_diff"] > TOLERANCE


def test_an_export_that_crashes_replaces_nothing(exported, tmp_path):
    output = tmp_path / "model.pt2"
    shutil.copy(exported("pt2")[0], output)
    earlier = output.read_bytes()
    with pytest.raises(RuntimeError), engine.staged_output(output, "pt2") as staged:
        staged.write_bytes(b"half a file")
        raise RuntimeError("the exporter crashed")
    assert list(tmp_path.iterdir()) == [output] and output.read_bytes() == earlier


def test_a_full_disk_is_one_sentence_and_leaves_nothing(
    export_script, best, tmp_path, monkeypatch, capsys
):
    def write_until_full(model, card, example, dynamic_dims, path) -> None:
        path.write_bytes(b"the first part of the file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setitem(exports.WRITERS, "pt2", write_until_full)
    flags = ["--checkpoint", str(best), "--format", "pt2", "--output", str(tmp_path / "m.pt2")]
    assert run_export(export_script, monkeypatch, *flags) == 2
    error = capsys.readouterr().err
    assert error == (
        f"export.py: error: the disk of {tmp_path} is full, so m.pt2 was not written (nothing "
        "was replaced); free some space or pick --output on another disk\n"
    )
    assert list(tmp_path.iterdir()) == []  # no staging folder, no half file


def test_sigterm_during_an_export_removes_the_staging_folder(
    export_script, best, tmp_path, monkeypatch, capsys
):
    def write_then_get_stopped(model, card, example, dynamic_dims, path) -> None:
        path.write_bytes(b"the first part of the file")
        os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler stops the job

    monkeypatch.setitem(exports.WRITERS, "pt2", write_then_get_stopped)
    flags = ["--checkpoint", str(best), "--format", "pt2", "--output", str(tmp_path / "m.pt2")]
    assert run_export(export_script, monkeypatch, *flags) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "export.py: stopped by SIGTERM; nothing was written\n"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is undone


def a_checkpoint_named_like_the_export(tmp_path, best):
    checkpoint = tmp_path / "model.pt2"
    shutil.copy(best, checkpoint)
    return ["--checkpoint", str(checkpoint), "--format", "pt2"], (
        f"--output {checkpoint} is the checkpoint itself, which export.py will not replace"
    )


def another_file_at_the_output(tmp_path, best):
    output = tmp_path / "notes.pt2"
    output.write_text("not an export")
    return ["--checkpoint", str(best), "--format", "pt2", "--output", str(output)], (
        f"{tmp_path}/notes.pt2 exists and is not an earlier pt2 export, so export.py will not "
        "replace it"
    )


def another_file_at_the_sidecar(tmp_path, best):
    (tmp_path / "args.card.json").write_text('{"lr": 0.1}')
    output = tmp_path / "args.safetensors"
    return ["--checkpoint", str(best), "--format", "safetensors", "--output", str(output)], (
        f"{tmp_path}/args.card.json exists and is not an earlier safetensors export"
    )


def another_format_at_the_output(tmp_path, best):
    shutil.copy(best, tmp_path / "best.safetensors")  # a checkpoint renamed
    output = tmp_path / "best.safetensors"
    return ["--checkpoint", str(best), "--format", "safetensors", "--output", str(output)], (
        f"{output} exists and is not an earlier safetensors export"
    )


OCCUPIED_OUTPUTS = {
    "the-checkpoint-itself": a_checkpoint_named_like_the_export,
    "another-file": another_file_at_the_output,
    "another-file-at-the-sidecar": another_file_at_the_sidecar,
    "a-checkpoint-renamed": another_format_at_the_output,
}


@pytest.mark.parametrize("case", OCCUPIED_OUTPUTS.values(), ids=OCCUPIED_OUTPUTS.keys())
def test_an_export_never_replaces_a_file_it_did_not_write(
    export_script, best, tmp_path, monkeypatch, capsys, case
):
    skip_without_packages("safetensors")
    flags, message = case(tmp_path, best)
    before = {path: path.read_bytes() for path in tmp_path.iterdir()}
    assert run_export(export_script, monkeypatch, *flags) == 2
    error = capsys.readouterr().err
    assert error.startswith("export.py: error: ") and error.count("\n") == 1
    assert message in error
    assert {path: path.read_bytes() for path in tmp_path.iterdir()} == before


def test_the_sidecar_name_never_stands_for_another_json_file(
    export_script, best, exported, tmp_path, monkeypatch
):
    # A run's args.json beside --output args.safetensors stays the run's, and an earlier
    # export (its card too) is replaced by the new one.
    skip_without_packages("safetensors")
    (tmp_path / "args.json").write_text('{"lr": 0.1}')
    output = tmp_path / "args.safetensors"
    flags = ["--checkpoint", str(best), "--format", "safetensors", "--output", str(output)]
    for _ in range(2):
        assert run_export(export_script, monkeypatch, *flags) == 0
    assert (tmp_path / "args.json").read_text() == '{"lr": 0.1}'
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["args.card.json", "args.json", "args.safetensors"]


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("model.onnx", "--output {tmp}/model.onnx does not end in .pt2; name the file *.pt2"),
        ("missing/model.pt2", "the folder {tmp}/missing does not exist; create it first"),
        ("folder.pt2", "--output {tmp}/folder.pt2 is a folder; give a file path"),
    ],
    ids=["wrong-suffix", "no-folder", "a-folder"],
)
def test_a_bad_output_gets_one_sentence(
    export_script, best, tmp_path, monkeypatch, capsys, output, message
):
    (tmp_path / "folder.pt2").mkdir()
    flags = ["--checkpoint", str(best), "--format", "pt2", "--output", str(tmp_path / output)]
    assert run_export(export_script, monkeypatch, *flags) == 2
    error = capsys.readouterr().err
    assert error.startswith("export.py: error: ") and error.count("\n") == 1
    assert message.format(tmp=tmp_path) in error
    assert [path.name for path in tmp_path.rglob("*")] == ["folder.pt2"]  # nothing written


def test_a_missing_export_package_names_the_extra(
    export_script, best, tmp_path, monkeypatch, capsys
):
    find_spec = importlib.util.find_spec

    def without_onnx(name, *rest):
        return None if name.startswith("onnx") else find_spec(name, *rest)

    monkeypatch.setattr(importlib.util, "find_spec", without_onnx)
    flags = ["--checkpoint", str(best), "--format", "onnx", "--output", str(tmp_path / "m.onnx")]
    assert run_export(export_script, monkeypatch, *flags) == 2
    assert capsys.readouterr().err == (
        "export.py: error: the onnx format needs the package onnx, which is not installed; "
        'install the export extra: pip install -e ".[export]"\n'
    )
    # Running a file needs only the runtime.
    with pytest.raises(UserError, match=r"needs the package onnxruntime, .*\.\[export\]"):
        engine.exported_predictor(tmp_path / "m.onnx", CPU, task)
    assert list(tmp_path.iterdir()) == []


def damaged(fmt: str):
    """A case: the first half of the exported file (its sidecar intact)."""

    def case(tmp_path, exported):
        output = exported(fmt)[0]
        path = tmp_path / output.name
        path.write_bytes(output.read_bytes()[: output.stat().st_size // 2])
        if fmt == "safetensors":
            shutil.copy(exports.sidecar_path(output), exports.sidecar_path(path))
        return path, task, f"{path} is not a readable {fmt} file ("

    return case


def without_card(fmt: str):
    """A case: the exported model without its model card."""

    def case(tmp_path, exported):
        output = exported(fmt)[0]
        path = tmp_path / output.name
        if fmt == "pt2":
            torch.export.save(torch.export.load(output), path)
        elif fmt == "onnx":
            import onnx

            proto = onnx.load(output)
            del proto.metadata_props[:]
            onnx.save(proto, path)
        else:  # the safetensors file alone, its sidecar left behind
            shutil.copy(output, path)
            message = f"{path} has no model card beside it (model.card.json is missing)"
            return path, task, message
        return path, task, f"{path} carries no model card"

    return case


def of_another_task(tmp_path, exported):
    another = type("AnotherTask", (type(task),), {"NAME": "another_task"})()
    message = f"holds a {task.NAME} model, but this project's task is another_task"
    return exported("pt2")[0], another, message


def a_checkpoint(tmp_path, exported):
    path = tmp_path / "best.pt"
    path.write_bytes(b"")
    return path, task, f"{path} is not a model file export.py writes (.pt2, .onnx or"


def missing(tmp_path, exported):
    path = tmp_path / "model.pt2"
    return path, task, f"{path} does not exist; give the path of a file export.py wrote"


BAD_FILES = {
    "a-checkpoint": a_checkpoint,
    "missing": missing,
    **{f"damaged-{fmt}": damaged(fmt) for fmt in engine.EXPORT_FORMATS},
    **{f"no-card-{fmt}": without_card(fmt) for fmt in engine.EXPORT_FORMATS},
    "another-task": of_another_task,
}


@pytest.mark.parametrize("case", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_model_file_gets_one_sentence(tmp_path, exported, case):
    path, this_task, message = case(tmp_path, exported)
    with pytest.raises(UserError) as error:
        engine.exported_predictor(path, CPU, this_task)
    assert message in str(error.value) and "\n" not in str(error.value)


class TouchesMarker:
    """A pickle payload: unpickling it creates the file `marker` (code ran)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def payload(marker: pathlib.Path) -> bytes:
    """torch.save's bytes of a TouchesMarker, as torch.export.save stores a pickled tensor."""
    buffer = io.BytesIO()
    torch.save(TouchesMarker(marker), buffer)
    return buffer.getvalue()


def rewrite_archive(source: pathlib.Path, target: pathlib.Path, edit, added=()) -> None:
    """Copy a zip archive entry by entry; edit(name, data) gives each entry's new bytes, and
    `added` are (name under the archive's root, data) entries to append."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            new.writestr(name, edit(name, old.read(name)))
        root = old.namelist()[0].partition("/")[0]
        for name, data in added:
            new.writestr(f"{root}/{name}", data)


def pickled_weight(source, target, marker) -> None:
    """The first weight marked "use_pickle", its file a payload (the issue: predict ran it)."""
    with zipfile.ZipFile(source) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("weights_config.json"))
        config = json.loads(archive.read(config_name))
    entry = next(iter(config["config"].values()))
    entry["use_pickle"] = True

    def edit(name, data):
        if name == config_name:
            return json.dumps(config).encode()
        return payload(marker) if name.endswith(f"/data/weights/{entry['path_name']}") else data

    rewrite_archive(source, target, edit)


def opaque_constant(source, target, marker) -> None:
    """An "opaque object" constant, which torch.export.load pickle.loads."""
    entry = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True}
    config = {"config": {"evil": {**entry, "tensor_meta": None}}}

    def edit(name, data):
        return json.dumps(config).encode() if name.endswith("constants_config.json") else data

    opaque = pickle.dumps(TouchesMarker(marker))  # a plain pickle, as torch stores one
    rewrite_archive(source, target, edit, [("data/constants/opaque_obj_0", opaque)])


def pickled_sample_inputs(source, target, marker) -> None:
    """Sample inputs that fail weights_only=True: torch retries them with weights_only=False."""

    def edit(name, data):
        return payload(marker) if name.endswith("/data/sample_inputs/model.pt") else data

    rewrite_archive(source, target, edit)


PICKLED_ENTRIES = {
    "pickled-weight": (pickled_weight, "its weights entry "),
    "opaque-constant": (opaque_constant, "its constants entry 'evil' is a pickled object"),
    "pickled-sample-inputs": (pickled_sample_inputs, "its sample inputs are not plain tensors"),
}


@pytest.mark.parametrize(("make", "problem"), PICKLED_ENTRIES.values(), ids=PICKLED_ENTRIES.keys())
def test_a_pt2_with_a_pickled_entry_is_refused_before_it_runs(exported, tmp_path, make, problem):
    marker, evil = tmp_path / "code-ran", tmp_path / "evil.pt2"
    make(exported("pt2")[0], evil, marker)
    with pytest.raises(UserError) as error:
        engine.exported_predictor(evil, CPU, task)
    message = str(error.value)
    assert message.startswith(f"{evil} was not loaded: {problem}") and "\n" not in message
    assert "torch.export.load would run as code" in message
    assert not marker.exists()  # the payload never ran


def test_a_checkpoint_renamed_pt2_is_one_sentence_without_torch_logs(
    best, tmp_path, capsys, caplog
):
    renamed = tmp_path / "best.pt2"
    shutil.copy(best, renamed)
    with pytest.raises(UserError, match="is a zip archive but not one torch.export.save writes"):
        engine.exported_predictor(renamed, CPU, task)
    assert caplog.records == [] and capsys.readouterr().err == ""


def edited(change):
    """A card case: the exported card changed by change(card)."""

    def case(card):
        card = json.loads(json.dumps(card))
        change(card)
        return card

    return case


def set_in(path: str, value):
    """change(card): card[a][b] = value for path "a.b"; a value of DELETE removes the key."""

    def change(card):
        *parents, key = path.split(".")
        for parent in parents:
            card = card[parent]
        if value is DELETE:
            del card[key]
        else:
            card[key] = value

    return change


DELETE = object()
DAMAGED_CARDS = {
    "no-card-version": (set_in("card_version", DELETE), "card_version is None, not 1"),
    "a-newer-version": (set_in("card_version", 2), "card_version is 2, not 1"),
    "an-unknown-model-argument": (set_in("model_config.colour", "red"),
                                  "does not build the network ("),
    "a-model-size-of-text": (set_in("model_config.in_channels", "3"),
                             "does not build the network ("),
    # the task's own entries, as its card_problem() words them
    **{name: (set_in(path, value), problem)
       for name, (path, value, problem) in task_cases.DAMAGED_CARD_ENTRIES.items()},
}  # fmt: skip


@pytest.mark.parametrize(("change", "problem"), DAMAGED_CARDS.values(), ids=DAMAGED_CARDS.keys())
def test_a_damaged_model_card_is_one_sentence(exported, eager, tmp_path, change, problem):
    # Through the safetensors sidecar, the card a user is likeliest to edit by hand.
    skip_without_packages("safetensors")
    output = tmp_path / "model.safetensors"
    shutil.copy(exported("safetensors")[0], output)
    card = edited(change)(eager[1])
    exports.sidecar_path(output).write_text(json.dumps(card))
    with pytest.raises(UserError) as error:
        engine.exported_predictor(output, CPU, task)
    message = str(error.value)
    assert message.startswith(f"the model card of {exports.sidecar_path(output)} is not usable: ")
    assert problem in message and "\n" not in message


def test_a_card_naming_a_larger_network_than_its_weights_is_refused(exported, eager, tmp_path):
    # Built as the card says before the weights are read, a huge width would take all memory.
    skip_without_packages("safetensors")
    output = tmp_path / "model.safetensors"
    shutil.copy(exported("safetensors")[0], output)
    card = json.loads(json.dumps(eager[1]))
    card["model_config"]["width"] = card["model_config"].get("width", 16) * 2
    exports.sidecar_path(output).write_text(json.dumps(card))
    with pytest.raises(UserError, match="not those of the network its card describes"):
        engine.exported_predictor(output, CPU, task)


def numbers_close(first, second) -> bool:
    """Two decoded JSON records equal but for float rounding (abs 1e-5: the records round
    probabilities to 6 decimals, and the runtimes differ by ~1e-7 before that)."""
    if isinstance(first, float) or isinstance(second, float):
        return first == pytest.approx(second, abs=1e-5)
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(
            numbers_close(first[k], second[k]) for k in first
        )
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(map(numbers_close, first, second))
    return first == second


@pytest.mark.parametrize("fmt", engine.EXPORT_FORMATS)
def test_predict_runs_an_exported_file_as_it_runs_the_checkpoint(
    exported, best, fmt, tmp_path, monkeypatch, capsys
):
    path, code, _ = exported(fmt)
    assert code == 0
    count = task_cases.write_prediction_inputs(tmp_path / "inputs")
    predict = load_script("predict")
    records = {}
    for source in (["--checkpoint", str(best)], ["--model", str(path)]):
        flags = [*source, str(tmp_path / "inputs"), "--device", "cpu", "--num-workers", "0"]
        monkeypatch.setattr(
            sys, "argv", ["predict.py", *flags, *task_cases.predict_flags(tmp_path)]
        )
        capsys.readouterr()
        assert run_cli(predict.main, prog="predict.py") == 0
        records[source[0]] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records["--model"]) == count
    assert numbers_close(records["--model"], records["--checkpoint"])
