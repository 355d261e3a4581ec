"""A run survives: signals stop it cleanly, a diverged loss keeps the last good checkpoint."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from {{ cookiecutter.package_name }}.engine.errors import DivergedError

from .conftest import PROJECT_ROOT, TINY_RUN_FLAGS
from .test_training import scalar_steps

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
    class DivergingLoss(train_script.{{ cookiecutter.model_name }}.ClassificationLoss):
        calls = 0

        def forward(self, logits, targets):
            DivergingLoss.calls += 1
            loss = super().forward(logits, targets)
            return loss * float("nan") if DivergingLoss.calls > 6 else loss  # from step 7

    monkeypatch.setattr(train_script.{{ cookiecutter.model_name }}, "ClassificationLoss", DivergingLoss)
    flags = [*TINY_RUN_FLAGS, "--epochs", "3", "--out-dir", str(tmp_path), "--run-name", "nan"]
    with pytest.raises(DivergedError, match="training loss became nan by step 8"):
        train_script.train(train_script.parse_args(flags))
    checkpoint = torch.load(tmp_path / "nan" / "checkpoints" / "last.pt", weights_only=True)
    assert checkpoint["state"]["global_step"] == 6
    assert all(torch.isfinite(tensor).all() for tensor in checkpoint["model"].values())


def test_ckpt_every_steps_saves_within_the_epoch(train_script, tmp_path, monkeypatch):
    saved_at = []
    save = train_script.save_checkpoint

    def recording_save(path, **parts):
        saved_at.append((path.name, parts["state"].global_step))
        save(path, **parts)

    monkeypatch.setattr(train_script, "save_checkpoint", recording_save)
    monkeypatch.setattr(train_script, "save_epoch_checkpoints",
                        lambda folder, is_best, **parts: recording_save(folder / "last.pt", **parts))  # fmt: skip
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
    with pytest.raises(train_script.UserError, match="--resume auto found no checkpoints/last.pt"):
        train_script.parse_args(["--resume", "auto", "--out-dir", str(tmp_path / "empty")])
