"""A run survives: signals stop it cleanly, a diverged loss keeps the last good checkpoint."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }}.engine.cli import DivergedError
from {{ cookiecutter.package_name }}.engine.loader import ignore_stop_signals
from {{ cookiecutter.package_name }}.engine.loop import StopRequest

from ..helpers import PROJECT_ROOT, TINY_RUN_FLAGS, same_weights, scalar_steps

# 15 steps an epoch, 8 epochs: long enough to be stopped part-way, short enough for a test.
# One worker process: the signal goes to the whole process group, as a scheduler's does.
SIGNAL_RUN_FLAGS = [
    *TINY_RUN_FLAGS,
    "--synthetic-size",
    "240",
    "--epochs",
    "8",
    "--num-workers",
    "1",
]


class TurnsNan(nn.Module):
    """The task's own criterion, until its `from_call`-th call (one call a batch): then nan."""

    def __init__(self, criterion: nn.Module, from_call: int):
        super().__init__()
        self.criterion, self.from_call, self.calls = criterion, from_call, 0

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = self.criterion(*inputs)
        return loss * float("nan") if self.calls >= self.from_call else loss


def make_the_loss_nan_from_call(train_script, monkeypatch, from_call: int) -> None:
    """train.py builds its loss with task.build_criterion: it gets the task's loss, wrapped."""
    build = train_script.task.build_criterion
    monkeypatch.setattr(
        train_script.task, "build_criterion", lambda args: TurnsNan(build(args), from_call)
    )


def test_sigterm_saves_last_pt_and_the_resumed_run_matches_a_straight_one(train_script, tmp_path):
    flags = [*SIGNAL_RUN_FLAGS, "--out-dir", str(tmp_path)]
    last = tmp_path / "stopped" / "checkpoints" / "last.pt"
    process = subprocess.Popen(
        [sys.executable, "train.py", *flags, "--run-name", "stopped"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first epoch's checkpoint says training is under way
    os.killpg(process.pid, signal.SIGTERM)  # the main process and its DataLoader worker
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "SIGTERM received" in stderr and f"--resume {last}" in stdout
    stopped_at = torch.load(last, weights_only=True)["state"]["global_step"]
    assert 15 <= stopped_at < 120

    assert train_script.main(["--resume", str(last)]) == 0
    train_script.main([*flags, "--run-name", "straight"])
    straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=True)
    resumed = torch.load(last, weights_only=True)
    assert resumed["state"] == straight["state"]
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    steps = scalar_steps(tmp_path / "stopped", "train/loss")
    assert steps == sorted(set(steps)) and steps[-1] == 120


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    train_script, tmp_path, monkeypatch
):
    make_the_loss_nan_from_call(train_script, monkeypatch, 7)  # from step 7
    flags = [*TINY_RUN_FLAGS, "--epochs", "3", "--out-dir", str(tmp_path), "--run-name", "nan"]
    with pytest.raises(DivergedError, match="training loss became nan by step 8"):
        train_script.train(train_script.parse_args(flags))
    checkpoint = torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["state"]["global_step"] == 6
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["model"].values())


def test_ckpt_every_steps_saves_within_the_epoch(train_script, tmp_path, monkeypatch):
    saved_at = []
    save = train_script.engine.checkpoint.save_checkpoint

    def recording_save(path, **parts):
        saved_at.append((path.name, parts["state"].global_step))
        save(path, **parts)

    monkeypatch.setattr(train_script.engine.checkpoint, "save_checkpoint", recording_save)
    monkeypatch.setattr(train_script.engine.checkpoint, "save_epoch_checkpoints",
                        lambda folder, is_best, epoch_file=None, **parts: recording_save(folder / "last.pt", **parts))  # fmt: skip
    flags = [
        *TINY_RUN_FLAGS,
        "--epochs",
        "1",
        "--ckpt-every-steps",
        "4",
        "--out-dir",
        str(tmp_path),
    ]
    train_script.train(train_script.parse_args(flags))
    assert saved_at == [("last.pt", 4), ("last.pt", 6)]


def test_resume_auto_picks_the_newest_run(tiny_run, train_script, tmp_path):
    import shutil

    for name in ("older", "newer"):
        shutil.copytree(tiny_run.run_dir, tmp_path / name)
        time.sleep(0.01)  # distinct modification times
        (tmp_path / name / "checkpoints" / "last.pt").touch()
    args = train_script.parse_args(
        ["--resume", "auto", "--out-dir", str(tmp_path), "--epochs", "3"]
    )
    assert args.resume == tmp_path / "newer" / "checkpoints" / "last.pt"
    assert args.width == 8  # the run's own flags come with it
    with pytest.raises(
        train_script.engine.UserError, match="--resume auto found no checkpoints/last.pt"
    ):
        train_script.parse_args(["--resume", "auto", "--out-dir", str(tmp_path / "empty")])


def test_a_crash_after_a_checkpoint_on_an_epochs_last_step_resumes_exactly(
    train_script, tmp_path, monkeypatch
):
    # 15 batches, accumulation 2: 8 steps an epoch, the last one short; a checkpoint every 8
    # steps lands on the epoch's last step, then the evaluation crashes.
    flags = [*TINY_RUN_FLAGS, "--synthetic-size", "240", "--accum-steps", "2", "--epochs", "2",
             "--ckpt-every-steps", "8", "--out-dir", str(tmp_path)]  # fmt: skip
    train_script.main([*flags, "--run-name", "straight"])
    evaluate = train_script.task.evaluate

    def crash(*args):
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(train_script.task, "evaluate", crash)
    with pytest.raises(RuntimeError, match="went away"):
        train_script.main([*flags, "--run-name", "crashed"])
    monkeypatch.setattr(train_script.task, "evaluate", evaluate)
    last = tmp_path / "crashed" / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)["state"]["step_in_epoch"] == 8
    assert train_script.main(["--resume", str(last)]) == 0
    assert same_weights(last, tmp_path / "straight" / "checkpoints" / "last.pt")


def test_a_stop_on_an_epochs_last_step_still_validates_that_epoch(
    train_script, tmp_path, monkeypatch
):
    step = train_script.engine.MixedPrecision.step

    def step_then_sigterm_at_6(self, model, optimizer, grad_clip):
        step(self, model, optimizer, grad_clip)
        if optimizer.state_dict()["state"][0]["step"] == 6:  # the epoch's last step
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_script.engine.MixedPrecision, "step", step_then_sigterm_at_6)
    flags = [*TINY_RUN_FLAGS, "--epochs", "2", "--out-dir", str(tmp_path), "--run-name", "r"]
    assert train_script.main(flags) == 128 + signal.SIGTERM
    monkeypatch.undo()
    assert train_script.main(["--resume", str(tmp_path / "r" / "checkpoints" / "last.pt")]) == 0
    assert scalar_steps(tmp_path / "r", f"val/{train_script.task.BEST_METRIC}") == [6, 12]


def test_a_stop_during_validation_ends_it_at_the_next_batch_and_the_resumed_run_validates_it(
    train_script, tmp_path, monkeypatch
):
    # 19 validation images, 2 batches. SIGTERM comes as the first batch is evaluated: the
    # second is never evaluated, and last.pt keeps epoch 1's training.
    flags = [*TINY_RUN_FLAGS, "--epochs", "2", "--out-dir", str(tmp_path)]
    evaluate, validated = train_script.task.evaluate, []

    def evaluate_with_sigterm_at_the_first_batch(model, loader, device, on_batch=None):
        def count_then_pass_on(*batch_outputs):
            validated.append(len(loader))
            if len(validated) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            if on_batch is not None:
                on_batch(*batch_outputs)

        return evaluate(model, loader, device, count_then_pass_on)

    monkeypatch.setattr(train_script.task, "evaluate", evaluate_with_sigterm_at_the_first_batch)
    assert train_script.main([*flags, "--run-name", "stopped"]) == 128 + signal.SIGTERM
    assert validated == [2]
    checkpoints = tmp_path / "stopped" / "checkpoints"
    state = torch.load(checkpoints / "last.pt", weights_only=True)["state"]
    assert (state["epoch"], state["global_step"], state["step_in_epoch"]) == (0, 6, 6)
    assert not (checkpoints / "best.pt").exists()  # no epoch was validated yet
    monkeypatch.undo()

    assert train_script.main(["--resume", str(checkpoints / "last.pt")]) == 0
    train_script.main([*flags, "--run-name", "straight"])
    metric = f"val/{train_script.task.BEST_METRIC}"
    assert scalar_steps(tmp_path / "stopped", metric) == [6, 12]
    straight = tmp_path / "straight" / "checkpoints"
    for name in ("last.pt", "best.pt"):
        assert same_weights(checkpoints / name, straight / name), name


def test_sigusr1_stops_at_the_next_step_saves_and_says_how_long_the_save_took(
    train_script, tmp_path, monkeypatch, capsys
):
    step = train_script.engine.MixedPrecision.step

    def step_then_sigusr1_at_3(self, model, optimizer, grad_clip):
        step(self, model, optimizer, grad_clip)
        if optimizer.state_dict()["state"][0]["step"] == 3:
            os.kill(os.getpid(), signal.SIGUSR1)  # SLURM's --signal=USR1@SECONDS

    monkeypatch.setattr(train_script.engine.MixedPrecision, "step", step_then_sigusr1_at_3)
    flags = [*TINY_RUN_FLAGS, "--epochs", "2", "--out-dir", str(tmp_path), "--run-name", "r"]
    assert train_script.main(flags) == 128 + signal.SIGUSR1 == 138
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)["state"]["global_step"] == 3
    out = capsys.readouterr().out
    assert f"stopped at step 3; continue with: python train.py --resume {last}" in out
    saved = re.search(
        r"SIGUSR1: last\.pt \((.+) MB\) saved in (.+) s, (.+) s after the signal", out
    )
    assert saved, out[-1000:]
    size, save_seconds, since_signal = map(float, saved.groups())
    assert size == round(last.stat().st_size / 1e6, 1)
    assert 0 <= save_seconds <= since_signal  # a small model can save in under 5 ms: "0.00 s"


def test_resume_auto_with_a_run_name_starts_the_run_then_continues_it(train_script, tmp_path):
    flags = [*TINY_RUN_FLAGS, "--out-dir", str(tmp_path), "--run-name", "job", "--resume", "auto"]
    # The command a requeued job or torchrun's restart repeats: the first time it starts the
    # run, then it continues it.
    assert train_script.main([*flags, "--epochs", "1"]) == 0
    assert train_script.main([*flags, "--epochs", "2"]) == 0
    state = torch.load(tmp_path / "job" / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert state["epoch"] == 2 and state["global_step"] == 12
    assert [path.name for path in tmp_path.iterdir()] == ["job"]
    assert scalar_steps(tmp_path / "job", "train/loss") == [2, 4, 6, 8, 10, 12]


def test_resume_auto_starts_again_in_a_folder_killed_before_its_first_checkpoint(
    train_script, tmp_path, capsys
):
    flags = [*TINY_RUN_FLAGS, "--out-dir", str(tmp_path), "--run-name", "job", "--epochs", "1"]
    assert train_script.main([*flags, "--max-steps", "4"]) == 0
    (tmp_path / "job" / "checkpoints" / "last.pt").unlink()  # as if killed before saving it
    assert train_script.main([*flags, "--resume", "auto"]) == 0
    assert "has no checkpoint yet, so the run starts again in it" in capsys.readouterr().out
    # The killed attempt's steps 2 and 4 are purged: each step once, in order.
    assert scalar_steps(tmp_path / "job", "train/loss") == [2, 4, 6]
    assert len(list((tmp_path / "job").glob("events.out.tfevents.*"))) == 2


class WorkerSignalHandlers(torch.utils.data.Dataset):
    """One sample: whether the DataLoader worker that loads it ignores each stop signal."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> torch.Tensor:
        ignored = [signal.getsignal(signum) == signal.SIG_IGN for signum in StopRequest.SIGNALS]
        return torch.tensor(ignored)


def test_dataloader_workers_leave_every_stop_signal_to_the_main_process():
    loader = torch.utils.data.DataLoader(
        WorkerSignalHandlers(), num_workers=1, worker_init_fn=ignore_stop_signals
    )
    (ignored,) = list(loader)
    assert len(StopRequest.SIGNALS) == 3 and ignored.all()  # SIGINT, SIGTERM, SIGUSR1


def test_a_nan_before_any_checkpoint_leaves_none_and_says_so(train_script, tmp_path, monkeypatch):
    make_the_loss_nan_from_call(train_script, monkeypatch, 3)
    flags = [*TINY_RUN_FLAGS, "--log-every", "100", "--ckpt-every-steps", "4",
             "--out-dir", str(tmp_path), "--run-name", "nan"]  # fmt: skip
    with pytest.raises(
        DivergedError, match="became nan by step 4, so the run stopped; no checkpoint"
    ):
        train_script.train(train_script.parse_args(flags))
    assert not (tmp_path / "nan" / "checkpoints" / "last.pt").exists()


def test_weights_that_are_no_longer_finite_are_never_saved(train_script, tmp_path, monkeypatch):
    step = train_script.engine.MixedPrecision.step

    def step_then_break_the_weights_at_4(self, model, optimizer, grad_clip):
        step(self, model, optimizer, grad_clip)
        if optimizer.state_dict()["state"][0]["step"] == 4:  # the loss of step 4 was finite
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))

    monkeypatch.setattr(
        train_script.engine.MixedPrecision, "step", step_then_break_the_weights_at_4
    )
    flags = [*TINY_RUN_FLAGS, "--log-every", "100", "--ckpt-every-steps", "2",
             "--out-dir", str(tmp_path), "--run-name", "inf"]  # fmt: skip
    with pytest.raises(DivergedError, match="weights stopped being finite by step 4"):
        train_script.train(train_script.parse_args(flags))
    last = torch.load(tmp_path / "inf" / "checkpoints" / "last.pt", weights_only=True)
    assert last["state"]["global_step"] == 2


def test_a_second_ctrl_c_stops_at_once():
    with StopRequest() as stop, pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.exit_code == 130
        os.kill(os.getpid(), signal.SIGINT)


def test_a_process_torchrun_started_stops_once_its_agent_is_gone(monkeypatch, capsys):
    agent = os.getppid()
    # The parent of an orphan (init, or a subreaper): any process but the agent (pytest itself
    # may run as an orphan, e.g. under nohup, its parent then init already).
    adopter = 1 if agent != 1 else 2
    orphaned = lambda: adopter  # noqa: E731
    with StopRequest() as plain:  # python train.py: its parent may go (nohup), it trains on
        monkeypatch.setattr(os, "getppid", orphaned)
        plain.poll()
        assert not plain.requested
    monkeypatch.undo()
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.setenv(name, "1" if name == "WORLD_SIZE" else "0")
    with StopRequest() as stop:
        stop.poll()
        assert not stop.requested  # the agent is still there
        monkeypatch.setattr(os, "getppid", orphaned)
        stop.poll()
        assert stop.requested and stop.name == "SIGHUP" and stop.exit_code == 129
    assert f"the torchrun agent (process {agent}) is gone: stopping" in capsys.readouterr().err
