"""A run's life, the same for every task: resume, run folders, the smoke test, the schedule."""

import json
import math
import shutil

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from {{ cookiecutter.package_name }}.engine import reporting
from {{ cookiecutter.package_name }}.engine.checkpoint import TrainState
from {{ cookiecutter.package_name }}.engine.step import build_optimizer

from ..helpers import TINY_RUN_FLAGS, model_of_this_task, scalar_steps
from ..task import task_cases


def test_run_folder_holds_args_summary_checkpoints_and_events(tiny_run):
    run_dir = tiny_run.run_dir
    args = json.loads((run_dir / "args.json").read_text())
    assert args["batch_size"] == 16 and args["epochs"] == 2
    assert args["effective_batch"] == 16 and args["world_size"] == 1
    assert (run_dir / "args.txt").read_text().startswith("Namespace(")
    assert (run_dir / "config.yaml").is_file()  # test_config.py replays it
    assert "Total params" in (run_dir / "model_summary.txt").read_text()
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert (run_dir / "checkpoints" / "best.pt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))


def copy_of_tiny_run(tiny_run, tmp_path):
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run.run_dir, run_dir)
    return run_dir


def snapshot(folder) -> dict:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_resume_continues_the_run_with_its_own_flags(tiny_run, train_script, tmp_path, monkeypatch):
    run_dir = copy_of_tiny_run(tiny_run, tmp_path)
    before = (run_dir / "args.json").read_text()
    config_before = (run_dir / "config.yaml").read_text()  # the first start's, kept
    last = run_dir / "checkpoints" / "last.pt"
    real_load, loaded = torch.load, []

    def recording_load(file, *args, **kwargs):
        loaded.append(file)
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    args = train_script.parse_args(["--resume", str(last), "--epochs", "3"])
    assert (args.width, args.batch_size, args.synthetic_size) == (8, 16, 96)  # the run's flags
    result = train_script.train(args)
    monkeypatch.undo()
    assert loaded == [last]  # read once: the flags, the training state and the trackers' ids
    assert result.run_dir == run_dir.resolve()
    assert (run_dir / "args.json").read_text() == before
    assert (run_dir / "config.yaml").read_text() == config_before
    assert json.loads((run_dir / "args-resume-step12.json").read_text())["epochs"] == 3
    steps = scalar_steps(run_dir, "train/loss")
    assert steps == [2, 4, 6, 8, 10, 12, 14, 16, 18]
    assert torch.load(last, weights_only=True)["state"]["epoch"] == 3


def test_resume_refuses_a_changed_batch_size_and_touches_nothing(tiny_run, train_script, tmp_path):
    run_dir = copy_of_tiny_run(tiny_run, tmp_path)
    before = snapshot(run_dir)
    last = str(run_dir / "checkpoints" / "last.pt")
    with pytest.raises(train_script.engine.UserError, match="--batch-size 32 differs from the 16"):
        train_script.parse_args(["--resume", last, "--batch-size", "32", "--epochs", "3"])
    with pytest.raises(
        train_script.engine.UserError, match="nothing left to train; raise --epochs"
    ):
        train_script.train(train_script.parse_args(["--resume", last]))
    assert snapshot(run_dir) == before


def test_logged_learning_rate_is_the_one_the_step_used(tiny_run, train_script):
    # 12 steps in all, warm-up 2: step 2 (the first logged) ran at 2/3 of the peak rate.
    events = EventAccumulator(str(tiny_run.run_dir))
    events.Reload()
    first = events.Scalars("train/lr")[0]
    assert first.step == 2
    assert first.value == pytest.approx(3e-3 * 2 / 3, rel=1e-6)


def test_an_existing_run_folder_is_never_overwritten(tiny_run, train_script):
    flags = [*TINY_RUN_FLAGS, "--out-dir", str(tiny_run.run_dir.parent), "--run-name", "tiny"]
    before = {path: path.stat().st_mtime_ns for path in tiny_run.run_dir.rglob("*")}
    with pytest.raises(train_script.engine.UserError, match="already exists"):
        train_script.train(train_script.parse_args(flags))
    assert {path: path.stat().st_mtime_ns for path in tiny_run.run_dir.rglob("*")} == before


def test_smoke_test_trains_two_steps_and_leaves_nothing(
    train_script, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    assert train_script.main(["--smoke-test", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["device"] == "cpu" and result["steps"] == 2
    assert math.isfinite(result["loss_first"]) and math.isfinite(result["loss_last"])
    assert list(tmp_path.iterdir()) == []


def test_build_optimizer_skips_weight_decay_on_biases_and_norms(train_script):
    model = model_of_this_task(train_script, *task_cases.model_size_flags(4)).model
    decay, no_decay = build_optimizer(model, "adamw", 1e-3, 0.1).param_groups
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize(
    ("stop_at", "step_in_epoch"), [(4, 4), (6, 0)], ids=["mid-epoch", "epoch-end"]
)
def test_a_stopped_run_resumes_to_the_same_weights(train_script, tmp_path, stop_at, step_in_epoch):
    # 6 steps an epoch; one run stops after `stop_at` steps and is resumed to the end.
    flags = [*TINY_RUN_FLAGS, "--epochs", "2", "--out-dir", str(tmp_path)]
    train_script.main([*flags, "--run-name", "straight"])
    train_script.main([*flags, "--run-name", "stopped", "--max-steps", str(stop_at)])
    last = tmp_path / "stopped" / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)["state"]["step_in_epoch"] == step_in_epoch
    train_script.main(["--resume", str(last), "--max-steps", "0"])
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    resumed = torch.load(last, weights_only=True)
    assert resumed["state"] == straight["state"]
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    assert scalar_steps(tmp_path / "stopped", "train/loss") == [2, 4, 6, 8, 10, 12]


def test_a_finished_run_counts_every_batch_and_ends_with_its_summary(
    train_script, tmp_path, capsys
):
    flags = [*TINY_RUN_FLAGS, "--epochs", "1", "--out-dir", str(tmp_path), "--run-name", "done"]
    assert train_script.main(flags) == 0
    out, err = capsys.readouterr()
    assert "6/6 [" in err.split("\r")[-1]  # 96 samples / 16: six batches
    checkpoints = tmp_path / "done" / "checkpoints"
    assert "finished all 1 epoch(s), 6 steps in " in out
    assert f"saved in {checkpoints / 'best.pt'}" in out
    assert f"last checkpoint: {checkpoints / 'last.pt'}" in out
    evaluate = f"evaluate:  python test.py --checkpoint {checkpoints / 'best.pt'}"
    assert out.rstrip().endswith(evaluate)


def test_a_max_steps_stop_says_so_and_how_to_continue(train_script, tmp_path, capsys):
    flags = [*TINY_RUN_FLAGS, "--epochs", "2", "--max-steps", "3", "--out-dir", str(tmp_path),
             "--run-name", "short"]  # fmt: skip
    assert train_script.main(flags) == 0
    out, err = capsys.readouterr()
    assert "3/6" in err.split("\r")[-1]  # the bar ends at the batch the stop came after
    last = tmp_path / "short" / "checkpoints" / "last.pt"
    assert "stopped by --max-steps 3 at step 3, in epoch 1 of 2" in out
    assert f"continue:  python train.py --resume {last} --max-steps 0" in out


def test_a_resumed_run_says_where_it_resumed_instead_of_the_model_summary(
    tiny_run, train_script, tmp_path, capsys
):
    run_dir = copy_of_tiny_run(tiny_run, tmp_path)
    capsys.readouterr()
    train_script.main(["--resume", str(run_dir / "checkpoints" / "last.pt"), "--epochs", "3"])
    out = capsys.readouterr().out
    assert "Total params" not in out
    assert f"resumed {run_dir.resolve()} from step 12 (epoch 3, 0 steps into it)" in out
    assert "makes only" not in out  # the few-steps note was for the start, not each resume


def test_a_finished_run_resumed_with_more_epochs_trains_on_the_new_schedule(
    tiny_run, train_script, tmp_path
):
    # The saved cosine ended at rate 0; the longer one is part-way down at step 12 of 18.
    run_dir = copy_of_tiny_run(tiny_run, tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    before = torch.load(last, weights_only=True)["model"]
    flags = ["--resume", str(last), "--epochs", "3", "--max-steps", "13", "--log-every", "1"]
    train_script.main(flags)
    after = torch.load(last, weights_only=True)["model"]
    assert any(not torch.equal(after[name], tensor) for name, tensor in before.items())
    events = EventAccumulator(str(run_dir))
    events.Reload()
    first = events.Scalars("train/lr")[-1]
    expected = 3e-3 * 0.5 * (1 + math.cos(math.pi * (12 - 2) / (18 - 2)))  # warm-up 2
    assert first.step == 13 and first.value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "flags", [["--run-name", "other"], ["--out-dir", "elsewhere"]], ids=["run-name", "out-dir"]
)
def test_resume_refuses_a_run_folder_other_than_its_own_and_touches_nothing(
    tiny_run, train_script, tmp_path, flags
):
    run_dir = copy_of_tiny_run(tiny_run, tmp_path)
    before = snapshot(run_dir)
    last = str(run_dir / "checkpoints" / "last.pt")
    with pytest.raises(train_script.engine.UserError, match="names another folder than the run"):
        train_script.parse_args(["--resume", last, "--epochs", "3", *flags])
    assert snapshot(run_dir) == before


def test_resume_accepts_the_run_folder_it_continues_in(tiny_run, train_script, tmp_path):
    run_dir = copy_of_tiny_run(tiny_run, tmp_path)
    last = str(run_dir / "checkpoints" / "last.pt")
    flags = ["--out-dir", str(tmp_path), "--run-name", "tiny", "--epochs", "3"]
    assert train_script.parse_args(["--resume", last, *flags]).run_name == "tiny"


def test_a_checkpoint_of_other_optimizer_groups_is_refused_and_nothing_touched(
    tiny_run, train_script, tmp_path
):
    # A run of an older layout: one optimizer group where this version keeps several apart.
    run_dir = copy_of_tiny_run(tiny_run, tmp_path)
    last = run_dir / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    groups = checkpoint["optimizer"]["param_groups"]
    assert len(groups) > 1
    every_index = [index for group in groups for index in group["params"]]
    checkpoint["optimizer"]["param_groups"] = [{**groups[0], "params": every_index}]
    torch.save(checkpoint, last)
    before = snapshot(run_dir)
    args = train_script.parse_args(["--resume", str(last), "--epochs", "3"])
    with pytest.raises(train_script.engine.UserError, match="older version of this project"):
        train_script.train(args)
    assert snapshot(run_dir) == before


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_its_run_name(
    train_script, tmp_path, capsys
):
    flags = [*TINY_RUN_FLAGS, "--out-dir", str(tmp_path), "--run-name", "job", "--epochs", "1"]
    assert train_script.main([*flags, "--max-steps", "4"]) == 0
    (tmp_path / "job" / "checkpoints" / "last.pt").unlink()  # as if a bad image ended it
    assert train_script.main(flags) == 0
    assert "has no checkpoint yet, so the run starts again in it" in capsys.readouterr().out
    assert scalar_steps(tmp_path / "job", "train/loss") == [2, 4, 6]  # the attempt's dropped


def test_a_folder_that_is_not_a_run_still_blocks_the_run_name(train_script, tmp_path):
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "notes.txt").write_text("mine")
    flags = [*TINY_RUN_FLAGS, "--out-dir", str(tmp_path), "--run-name", "job"]
    with pytest.raises(train_script.engine.UserError, match="already exists"):
        train_script.train(train_script.parse_args(flags))
    assert [path.name for path in (tmp_path / "job").iterdir()] == ["notes.txt"]


def test_under_torchrun_the_continue_line_is_a_torchrun_command(monkeypatch, tmp_path):
    monkeypatch.setattr(reporting, "is_distributed", lambda: True)
    monkeypatch.setattr(reporting, "world_size", lambda: 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    state = TrainState(epoch=0, global_step=3)
    lines = reporting.run_summary(tmp_path, state, 2, 3, 1.0, str)
    resume = f"--resume {tmp_path / 'last.pt'} --max-steps 0"
    assert f"continue:  torchrun --nproc_per_node=4 train.py {resume}" in lines
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two machines
    assert "torchrun --nnodes=2 --nproc_per_node=2 <the same rendezvous flags> train.py" in (
        reporting.run_summary(tmp_path, state, 2, 3, 1.0, str)
    )
