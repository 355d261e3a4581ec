"""Faults around the run folder: a second process, a full disk, a read-only folder, a kill -9."""

import contextlib
import errno
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from {{ cookiecutter.package_name }}.engine import checkpoint as ckpt
from {{ cookiecutter.package_name }}.engine import files
from {{ cookiecutter.package_name }}.engine import runs as runs_module
from {{ cookiecutter.package_name }}.engine.checkpoint import TrainState
from {{ cookiecutter.package_name }}.engine.cli import run_cli
from {{ cookiecutter.package_name }}.engine.runs import (
    RunDirLock,
    open_run_dir,
    remove_stale_temporaries,
)

from ..helpers import TINY_RUN_FLAGS

# What a training process does to its run folder (RunDirLock), in a process without torch.
HOLD_LOCK = """
import fcntl, os, socket, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
os.ftruncate(descriptor, 0)
os.write(descriptor, f"process {os.getpid()} on {socket.gethostname()}\\n".encode())
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes stdin (or kills this process)
"""
# torch's own words when the disk fills up during torch.save.
TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"

needs_fcntl = pytest.mark.skipif(os.name != "posix", reason="run folders are locked on POSIX only")


@contextlib.contextmanager
def lock_held_elsewhere(run_dir: Path):
    """Another process holding the run folder's lock, as a training process does; yields its pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir / ".lock")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def snapshot(folder: Path) -> dict:
    return {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def run_train(train_script, monkeypatch, capsys, argv: list[str]) -> tuple[int, str]:
    """Run train.py's command line in this process; its exit code and its stderr."""
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    code = run_cli(train_script.main, prog="train.py")
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    error = stderr.strip().splitlines()[-1]  # after the progress bar, if training started
    assert error.startswith("train.py: error: ")
    return code, error


@needs_fcntl
def test_a_run_folder_in_use_is_refused_and_left_untouched(
    tiny_run, train_script, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run.run_dir, run_dir)
    with lock_held_elsewhere(run_dir) as holder:
        before = snapshot(run_dir)
        argv = ["--resume", "auto", "--out-dir", str(tmp_path), "--run-name", "tiny"]
        code, error = run_train(train_script, monkeypatch, capsys, [*argv, "--epochs", "3"])
        assert code == 2
        assert error == (
            f"train.py: error: the run folder {run_dir.resolve()} is in use by process "
            f"{holder.pid} on {socket.gethostname()}; wait for it to finish or pick another "
            "--run-name"
        )
        assert snapshot(run_dir) == before
    # Killed (as by kill -9), the holder leaves no stale lock behind.
    lock = RunDirLock()
    lock.acquire(run_dir)
    assert lock.held
    lock.release()


@needs_fcntl
def test_a_finished_run_releases_its_folder(tiny_run):
    # Another process takes the lock (it says "locked" only once it holds it) and keeps it.
    with lock_held_elsewhere(tiny_run.run_dir) as holder:
        assert holder.poll() is None


def test_without_fcntl_run_folders_go_unlocked(tmp_path, monkeypatch):
    monkeypatch.setattr(runs_module, "fcntl", None)  # as on Windows
    with RunDirLock() as lock:
        lock.acquire(tmp_path)
        assert not lock.held
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_at_start_leaves_no_run_folder(train_script, tmp_path, monkeypatch, capsys):
    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", disk_full)  # every atomic write fsyncs
    argv = [*TINY_RUN_FLAGS, "--out-dir", str(tmp_path / "runs"), "--run-name", "fresh"]
    code, error = run_train(train_script, monkeypatch, capsys, argv)
    assert code == 2
    assert f"writing {tmp_path / 'runs' / 'fresh' / 'args.json'} failed: no space left" in error
    assert f"the new run folder {tmp_path / 'runs' / 'fresh'} was removed" in error
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_full_disk_during_a_save_names_the_last_good_checkpoint(
    train_script, tmp_path, monkeypatch, capsys
):
    real_save, saves = torch.save, []

    def fill_the_disk_on_the_second_save(payload, file):
        saves.append(payload["state"]["global_step"])
        if len(saves) == 1:
            return real_save(payload, file)
        file.write(b"part of a checkpoint")
        raise RuntimeError(TORCH_DISK_FULL)

    monkeypatch.setattr(ckpt.torch, "save", fill_the_disk_on_the_second_save)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 0))
    flags = ["--out-dir", str(tmp_path), "--run-name", "full", "--ckpt-every-steps", "2"]
    code, error = run_train(train_script, monkeypatch, capsys, [*TINY_RUN_FLAGS, *flags])
    last = tmp_path / "full" / "checkpoints" / "last.pt"
    assert code == 2 and saves == [2, 4]
    assert f"writing {last} failed: no space left on the device (it needs about " in error
    assert f"the last good checkpoint is {last}: continue from it with --resume {last}" in error
    assert torch.load(last, weights_only=True)["state"]["global_step"] == 2
    assert [path.name for path in last.parent.iterdir()] == ["last.pt"]  # no temporary left


def test_resuming_into_a_read_only_run_folder_is_refused(
    tiny_run, train_script, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run.run_dir, run_dir)
    before = snapshot(run_dir)
    real_os_open, real_open = os.open, open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def in_run_dir(path) -> bool:
        return Path(path).resolve().is_relative_to(run_dir.resolve())

    # chmod cannot stop root (CI runs as root), so the file system's refusal is simulated.
    def read_only_os_open(path, flags, *rest, **options):
        if in_run_dir(path) and flags & writes:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_os_open(path, flags, *rest, **options)

    def read_only_open(path, mode="r", *rest, **options):
        if in_run_dir(path) and set(mode) & set("wax+"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, mode, *rest, **options)

    monkeypatch.setattr(os, "open", read_only_os_open)
    monkeypatch.setattr("builtins.open", read_only_open)
    last = run_dir / "checkpoints" / "last.pt"
    argv = ["--resume", str(last), "--epochs", "3"]
    code, error = run_train(train_script, monkeypatch, capsys, argv)
    assert code == 2
    assert f"the folder {run_dir.resolve()} is not writable; make it writable" in error
    assert error.endswith(f"the last good checkpoint {last} is untouched")
    assert snapshot(run_dir) == before


def test_stale_temporary_checkpoints_are_removed(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid now names no process
    names = [f".last.pt.{child.pid}.tmp", f".best.pt.{os.getpid()}.tmp", "notes.tmp"]
    for name in names:
        (tmp_path / name).write_bytes(b"part of a checkpoint")
    remove_stale_temporaries(tmp_path, all_stale=False)  # only those of ended processes
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[1:])
    remove_stale_temporaries(tmp_path, all_stale=True)  # all: the caller holds the lock
    assert [path.name for path in tmp_path.iterdir()] == ["notes.tmp"]


@needs_fcntl
def test_a_resume_clears_what_a_killed_run_left(tiny_run, train_script, tmp_path):
    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run.run_dir, run_dir)
    # Left by a kill -9 of this very process id (alive: only the lock says they are stale).
    leftovers = [run_dir / "checkpoints" / f".last.pt.{os.getpid()}.tmp"]
    leftovers.append(run_dir / f".args.json.{os.getpid()}.tmp")
    for path in leftovers:
        path.write_bytes(b"half")
    args = train_script.parse_args(["--resume", str(run_dir / "checkpoints" / "last.pt")])
    with RunDirLock() as lock:
        assert open_run_dir(args, TrainState(global_step=12), lock) == (run_dir.resolve(), False)
        assert lock.held
    assert not any(path.exists() for path in leftovers)
    assert (run_dir / "args-resume-step12.json").is_file()
