"""The Task interface (engine/task_base.py): this project's task provides every required member,
a task without one is refused by name, and the defaults are enough for every script."""

import json

import pytest

from {{ cookiecutter.package_name }}.engine import task_base
from {{ cookiecutter.package_name }}.engine.cli import run_cli
from {{ cookiecutter.package_name }}.task import task

from ..helpers import TINY_RUN_FLAGS, load_script, run_script
from ..task import task_cases

REQUIRED = [*task_base.REQUIRED_ATTRIBUTES, *task_base.REQUIRED_METHODS]


def test_the_task_provides_every_required_member():
    assert task_base.missing_members(type(task)) == []


@pytest.mark.parametrize("member", REQUIRED)
def test_a_task_without_a_required_member_is_refused_by_its_name(member):
    members = {name: getattr(type(task), name) for name in REQUIRED if name != member}
    partial = type("PartialTask", (task_base.Task,), members)
    assert task_base.missing_members(partial) == [member]
    refusal = f"Can't instantiate task class PartialTask without {member}$"
    with pytest.raises(TypeError, match=refusal):
        partial()


def required_members_only() -> task_base.Task:
    """This project's task with its required members and its model, every other member the
    interface's default (no pretrained weights, one parameter group, no pictures, ...)."""
    members = {name: getattr(type(task), name) for name in REQUIRED}
    members["DATASETS"] = task.DATASETS
    if type(task).build_model is task_base.Task.build_model:
        members["MODEL_CLASS"] = task.MODEL_CLASS
    else:
        members["build_model"] = type(task).build_model
    return type("RequiredOnly", (task_base.Task,), members)()


@pytest.fixture
def minimal_task(monkeypatch):
    """The scripts run with required_members_only() in place of the task."""
    scripts = {name: load_script(name) for name in ("train", "test", "export", "predict")}
    minimal = required_members_only()
    for script in scripts.values():
        monkeypatch.setattr(script, "task", minimal)
    return scripts


def test_a_task_of_required_members_only_trains_evaluates_exports_and_predicts(
    minimal_task, tmp_path, monkeypatch, capsys
):
    flags = [*TINY_RUN_FLAGS, "--epochs", "1", "--out-dir", str(tmp_path), "--run-name", "min"]
    train = minimal_task["train"]
    result = train.train(train.parse_args(flags))
    assert result.best_metric is not None
    best = str(result.run_dir / "checkpoints" / "best.pt")

    test = minimal_task["test"]
    code, out, err = run_script(test, "test.py", monkeypatch, capsys, "--checkpoint", best)
    assert code == 0, err
    metrics = json.loads(out.splitlines()[-1])
    assert metrics[task.BEST_METRIC] == pytest.approx(result.best_metric)

    output = tmp_path / "model.onnx"
    argv = ["export.py", "--checkpoint", best, "--format", "onnx", "--output", str(output)]
    monkeypatch.setattr("sys.argv", argv)
    assert run_cli(minimal_task["export"].main, prog="export.py") == 0
    assert output.is_file()

    task_cases.write_prediction_inputs(tmp_path / "inputs")
    flags = ["--checkpoint", best, str(tmp_path / "inputs"), *task_cases.predict_flags(tmp_path)]
    code, out, err = run_script(minimal_task["predict"], "predict.py", monkeypatch, capsys, *flags)
    assert code == 0, err
