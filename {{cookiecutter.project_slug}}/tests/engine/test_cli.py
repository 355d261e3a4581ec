"""What a user sees on the command line: one sentence and exit code 2 for each bad input."""

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from {{ cookiecutter.package_name }}.engine import cli
from {{ cookiecutter.package_name }}.engine.cli import (
    UserError,
    user_message,
)

from ..helpers import PROJECT_ROOT


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--batch-size", "0"], "argument --batch-size: 0 is out of range"),
        (
            ["--batch-size", "big"],
            "argument --batch-size: 'big' is not a number; expected an integer of 1 or more, or auto",
        ),
        (["--batch-size", "Auto"], "argument --batch-size: 'Auto' is not a number"),
        (["--accum-steps", "0"], "argument --accum-steps: 0 is out of range"),
        (["--lr", "-1"], "argument --lr: -1 is out of range"),
        (["--epochs", "two"], "argument --epochs: 'two' is not a number"),
        (["--dataset", "imagenet"], "argument --dataset: invalid choice"),
        (
            ["--seed", "99999999999"],
            "argument --seed: 99999999999 is out of range; expected an integer from 0 to 4294967295",
        ),
        (["--num-workers", "1000"], "argument --num-workers: 1000 is out of range"),
        (["--epoch", "3"], "unrecognized arguments: --epoch 3"),  # not taken as --epochs
        (["--run-name", "../escape"], "argument --run-name: '../escape' is a path"),
        (["--run-name", ""], "argument --run-name: the name is empty; give a folder name"),
        (["--run-name", "r" * 300], "is 300 bytes long, over the 255 a file system takes"),
        (["--out-dir", f"runs/{'o' * 300}/x"], "argument --out-dir: oooooooooooooooooooo..."),
        (
            ["--prefetch-thread=no"],
            "--prefetch-thread takes no value (got 'no'); write just --prefetch-thread or "
            "--no-prefetch-thread",
        ),
        (["--compile=yes"], "--compile takes no value (got 'yes'); write just --compile"),
        (["--ema", "1"], "argument --ema: 1 is out of range; expected a number in [0, 1)"),
        (["--ema", "1.5"], "argument --ema: 1.5 is out of range"),
        (["--ema", "-0.1"], "argument --ema: -0.1 is out of range"),
        (["--ema", "high"], "argument --ema: 'high' is not a number"),
        (["--keep-top-k", "-1"], "argument --keep-top-k: -1 is out of range"),
        (["--keep-top-k", "2.5"], "argument --keep-top-k: '2.5' is not a whole number"),
    ],
)
def test_impossible_flags_exit_2_with_the_reason(train_script, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train_script.parse_args(flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error
    # One line that points to --help, not argparse's usage block above it.
    assert ": error: " in error and error.count("\n") == 1
    assert error.rstrip().endswith(" --help)")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "99999999999"], "argument --seed: 99999999999 is out of range"),
        (["--num-workers", "1000"], "argument --num-workers: 1000 is out of range"),
        (["--batch", "8"], "unrecognized arguments: --batch 8"),  # not taken as --batch-size
    ],
)
def test_test_py_refuses_impossible_flags_too(test_script, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        test_script.parse_args(["--checkpoint", "last.pt", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_num_workers_are_capped_at_four_per_core(train_script, monkeypatch):
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 3)
    assert train_script.parse_args(["--num-workers", "12"]).num_workers == 12
    with pytest.raises(argparse.ArgumentTypeError, match=r"from 0 to 12 \(4 x this machine's 3"):
        cli.num_workers("13")


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )


def test_missing_data_folder_is_one_line_not_a_traceback(train_script, tmp_path):
    flags = ["--dataset", "folder", "--data-dir", str(tmp_path / "nope")]
    with pytest.raises(train_script.engine.UserError) as refusal:  # the task's own sentence
        train_script.task.build_data(train_script.parse_args(flags))
    sentence = str(refusal.value)
    assert sentence.startswith(f"--data-dir {tmp_path / 'nope'} does not exist; ")
    result = run_script("train.py", *flags, "--out-dir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"train.py: error: {sentence}"
    assert not (tmp_path / "runs").exists()


def test_test_py_refuses_a_data_dir_it_would_not_read(tiny_run, test_script, tmp_path):
    # The tiny run trained on the synthetic data: a --data-dir without --dataset would be
    # ignored, and the synthetic split evaluated in its place.
    best = tiny_run.run_dir / "checkpoints" / "best.pt"
    argv = ["--checkpoint", str(best), "--data-dir", str(tmp_path), "--device", "cpu"]
    with pytest.raises(UserError) as refused:
        test_script.main(argv)
    assert str(refused.value).startswith(
        f"--data-dir {tmp_path} would not be read: the data set is synthetic (the checkpoint's, "
        "unless --dataset says otherwise); "
    )


def test_sigterm_unwinds_a_script_that_asks_for_it_and_removes_its_partial_file(tmp_path, capsys):
    # predict.py, export.py and test.py write files whole under temporary names: SIGTERM must
    # run their cleanup as Ctrl-C does, not kill them with a half-written file left behind.
    partial = tmp_path / ".masks.png.partial"
    handler = signal.getsignal(signal.SIGTERM)

    def main(argv):
        try:
            partial.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises long before this ends
        finally:
            partial.unlink()
        return 0

    assert cli.run_cli(main, prog="predict.py", unwind_on_sigterm=True) == 143
    assert not partial.exists()
    assert capsys.readouterr().err.strip() == (
        "predict.py: stopped by SIGTERM; nothing more was saved"
    )
    assert signal.getsignal(signal.SIGTERM) == handler  # restored for whatever runs next


@pytest.mark.parametrize("script", ["predict.py", "export.py", "test.py"])
def test_the_scripts_that_write_files_unwind_on_sigterm(script):
    expected = f'sys.exit(engine.run_cli(main, prog="{script}", unwind_on_sigterm=True))'
    assert (PROJECT_ROOT / script).read_text().splitlines()[-1].strip() == expected


def test_a_bad_checkpoint_is_one_line_not_a_traceback(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_text("not a checkpoint")
    result = run_script("test.py", "--checkpoint", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"test.py: error: {bad} is not a readable checkpoint")
    assert bad.read_text() == "not a checkpoint"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_asking_for_cuda_without_it_says_so(train_script):
    with pytest.raises(train_script.engine.UserError, match="--device cuda was asked for"):
        train_script.engine.select_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_smoke_test_on_cuda(train_script, capsys):
    assert train_script.main(["--smoke-test", "--device", "cuda"]) == 0
    assert '"device": "cuda"' in capsys.readouterr().out


def test_an_out_dir_that_is_a_file_is_refused(train_script, tmp_path):
    (tmp_path / "runs").write_text("a file")
    flags = ["--out-dir", str(tmp_path / "runs"), "--synthetic-size", "32", "--batch-size", "8"]
    with pytest.raises(train_script.engine.UserError, match="cannot create the run folder"):
        train_script.train(train_script.parse_args(flags))
    assert (tmp_path / "runs").read_text() == "a file"


def test_a_worker_error_is_reported_as_its_sentence():
    wrapped = UserError(
        "Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        "last):\n  File ...\npkg.engine.cli.UserError: cannot read the image x.png (bad)"
    )
    assert user_message(wrapped) == "cannot read the image x.png (bad)"


@pytest.mark.parametrize("script", ["train_script", "test_script"])
def test_help_states_each_default_once(script, request, capsys):
    # A help text that names its default (e.g. "default: the checkpoint's") gets no second one.
    with pytest.raises(SystemExit) as exit_info:
        request.getfixturevalue(script).parse_args(["--help"])
    assert exit_info.value.code == 0
    flags = " ".join(capsys.readouterr().out.split()).split(" -")  # one chunk per flag
    assert [chunk for chunk in flags if chunk.count("default") > 1] == []
    assert any("(default: " in chunk for chunk in flags)  # the formatter still adds the rest
