import errno
import os
from typing import NamedTuple

import pytest
import torch

from {{ cookiecutter.package_name }}.engine import checkpoint as ckpt
from {{ cookiecutter.package_name }}.engine.checkpoint import (
    TrainState,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.engine.files import first_line
from {{ cookiecutter.package_name }}.engine.step import (
    build_optimizer,
    build_scheduler,
)
from {{ cookiecutter.package_name }}.task import task

from ..bad_input_cases import PickledObject
from ..helpers import model_of_this_task
from ..task import task_cases


class Parts(NamedTuple):
    model: torch.nn.Module
    model_config: dict
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def trained_parts(train_script, width: int = 4) -> Parts:
    """This task's model, its optimizer and schedule, after one step on a batch of its data."""
    model, config, (inputs, _), _ = model_of_this_task(
        train_script, *task_cases.model_size_flags(width)
    )
    optimizer = build_optimizer(model, "adamw", 1e-2, 0.01)
    scheduler = build_scheduler(optimizer, "cosine", 1, 10)
    model(inputs).sum().backward()
    optimizer.step()
    scheduler.step()
    return Parts(model, config, optimizer, scheduler)


def save(path, parts: Parts, state=None):
    save_checkpoint(
        path,
        model=parts.model,
        model_config=parts.model_config,
        optimizer=parts.optimizer,
        scheduler=parts.scheduler,
        state=state or TrainState(epoch=2, step_in_epoch=1, global_step=9, best_metric=0.5),
        args={"lr": 0.01, "out_dir": "runs"},
        task=task.NAME,
        extras={"labels": ["a", "b", "c"]},  # a task's own entry
    )


def test_round_trip_restores_model_optimizer_schedule_and_state(train_script, tmp_path):
    parts = trained_parts(train_script)
    model, _, optimizer, scheduler = parts
    save(tmp_path / "last.pt", parts)
    loaded = load_checkpoint(tmp_path / "last.pt")
    fresh, _, fresh_optimizer, fresh_scheduler = trained_parts(train_script)
    load_model_weights(fresh, loaded, "last.pt")
    fresh_optimizer.load_state_dict(loaded["optimizer"])
    fresh_scheduler.load_state_dict(loaded["scheduler"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh_optimizer.state_dict()["state"][0]["exp_avg"], exp_avg)
    assert fresh_scheduler.last_epoch == scheduler.last_epoch
    assert TrainState(**loaded["state"]) == TrainState(2, 1, 9, 0.5)
    assert loaded["args"]["lr"] == 0.01 and loaded["task"] == task.NAME
    assert ckpt.task_extras(loaded) == {"labels": ["a", "b", "c"]}


def test_checkpoint_keys_have_no_wrapper_prefixes(train_script, tmp_path):
    parts = trained_parts(train_script)
    save(tmp_path / "last.pt", parts._replace(model=torch.compile(parts.model)))
    keys = load_checkpoint(tmp_path / "last.pt")["model"].keys()
    assert not any(key.startswith(("module.", "_orig_mod.")) for key in keys)


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint(
    train_script, tmp_path, monkeypatch
):
    parts = trained_parts(train_script)
    path = tmp_path / "last.pt"
    save(path, parts)
    before = path.read_bytes()

    def crash_midway(payload, file):
        file.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.torch, "save", crash_midway)
    with pytest.raises(UserError) as refusal:
        save(path, parts)
    assert str(refusal.value).startswith(f"writing {path} failed: no space left on the device")
    assert str(refusal.value).endswith(
        f"the last good checkpoint is {path}: continue from it with --resume {path}"
    )
    assert path.read_bytes() == before
    assert load_checkpoint(path)["state"]["global_step"] == 9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_bad_files_are_refused_with_a_sentence(train_script, tmp_path):
    save(tmp_path / "good.pt", trained_parts(train_script))
    (tmp_path / "garbage.pt").write_bytes(b"this is not a checkpoint")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:2000])
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    cases = {
        "missing.pt": "does not exist",
        "garbage.pt": "not a readable checkpoint",
        "truncated.pt": "not a readable checkpoint",
        "foreign.pt": "not a checkpoint of this project",
    }
    for name, message in cases.items():
        with pytest.raises(UserError, match=message):
            load_checkpoint(tmp_path / name)


def test_newer_format_and_other_model_are_refused(train_script, tmp_path):
    save(tmp_path / "last.pt", trained_parts(train_script))
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    payload["format_version"] = ckpt.FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "newer.pt")
    with pytest.raises(UserError, match="newer"):
        load_checkpoint(tmp_path / "newer.pt")
    other = trained_parts(train_script, width=6).model  # other shapes, from the same config keys
    with pytest.raises(UserError, match="holds weights of another model or model size"):
        load_model_weights(other, load_checkpoint(tmp_path / "last.pt"), "last.pt")


def test_a_pickled_object_is_refused_in_one_whole_sentence(tmp_path):
    torch.save({"model": PickledObject()}, tmp_path / "malicious.pt")
    with pytest.raises(UserError) as error:
        load_checkpoint(tmp_path / "malicious.pt")
    message = str(error.value)
    assert "holds Python objects other than tensors" in message and "was not loaded" in message
    assert "weights_only" not in message and "\n" not in message
    assert message.endswith("e.g. the run's checkpoints/best.pt")


def test_a_long_load_error_is_cut_between_words():
    line = first_line(RuntimeError("word " * 40))
    assert len(line) <= 120 and line.endswith("word ...")


def test_test_py_refuses_a_checkpoint_of_another_task(tiny_run, test_script, tmp_path):
    payload = torch.load(tiny_run.run_dir / "checkpoints" / "last.pt", weights_only=True)
    payload["task"] = "another_task"
    torch.save(payload, tmp_path / "other.pt")
    message = f"was trained for the another_task task, not this project's {task.NAME}; use it"
    with pytest.raises(UserError, match=message):
        test_script.main(["--checkpoint", str(tmp_path / "other.pt"), "--num-workers", "0"])


def test_a_checkpoint_from_before_the_task_key_is_read_as_this_projects_task(tiny_run, tmp_path):
    # The one migration: checkpoints named their task from a later version on; an older one is
    # taken as this project's (loading its weights still checks that they fit the model).
    payload = torch.load(tiny_run.run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert payload["task"] == task.NAME
    del payload["task"]
    torch.save(payload, tmp_path / "older.pt")
    assert load_checkpoint(tmp_path / "older.pt", task.NAME)["task"] == task.NAME


def test_test_py_refuses_edited_stored_args(tiny_run, test_script, tmp_path):
    payload = torch.load(tiny_run.run_dir / "checkpoints" / "last.pt", weights_only=True)
    payload["args"]["synthetic_size"] = 0
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(UserError, match="stores --synthetic-size 0, which the command line"):
        test_script.main(["--checkpoint", str(tmp_path / "edited.pt"), "--num-workers", "0"])
