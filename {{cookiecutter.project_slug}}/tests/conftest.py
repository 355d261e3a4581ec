"""Shared fixtures: the scripts loaded as modules, and one tiny training run reused by many
tests (what else the tests share is in helpers.py)."""

import shutil
import sys

import pytest

from {{ cookiecutter.package_name }}.engine.cli import run_cli

from .helpers import TINY_RUN_FLAGS, load_script


@pytest.fixture(scope="session")
def train_script():
    return load_script("train")


@pytest.fixture(scope="session")
def test_script():
    return load_script("test")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, train_script):
    """A finished two-epoch run; tests read its folder, checkpoints and events."""
    out_dir = tmp_path_factory.mktemp("runs")
    flags = [*TINY_RUN_FLAGS, "--epochs", "2", "--out-dir", str(out_dir), "--run-name", "tiny"]
    return train_script.train(train_script.parse_args(flags))


@pytest.fixture
def bad_input_run(tiny_run, train_script, tmp_path, monkeypatch, capsys):
    """Check one bad-input case: one sentence on stderr, exit code 2, nothing on disk changed.

    A case is a function (tmp_path, copy of the tiny run's folder) -> (flags, expected text).
    """

    def check(case) -> None:
        run = tmp_path / "runs" / "tiny"
        shutil.copytree(tiny_run.run_dir, run)
        flags, message = case(tmp_path, run)
        before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
        argv = flags if "--resume" in flags else [*TINY_RUN_FLAGS, *flags]
        monkeypatch.setattr(sys, "argv", ["train.py", *argv, "--out-dir", str(tmp_path / "runs")])
        assert run_cli(train_script.main, prog="train.py") == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("train.py: error: ") and "\n" not in error
        assert message in error
        # What was there is unchanged (an error found while training, like a broken image,
        # may leave the new run's own folder beside it, never touch another).
        assert {path: path.read_bytes() for path in before} == before

    return check
