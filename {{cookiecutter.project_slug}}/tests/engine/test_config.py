"""Config files: `train.py --config FILE` (YAML or TOML) under the command line, and the
config.yaml each run writes, which runs the same experiment again."""

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.engine.cli import run_cli
from {{ cookiecutter.package_name }}.engine.config import config_text, read_config
from {{ cookiecutter.package_name }}.errors import UserError

from ..helpers import TINY_RUN_FLAGS


def write_config(folder: Path, text: str, name: str = "flags.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# The same settings in both formats, with both key spellings, on/off flags and a null.
SETTINGS = {
    "yaml": "lr: 0.01\nbatch-size: 32\nweight_decay: 0.0\ncompile: true\n"
    "prefetch-thread: false\nout_dir: elsewhere\nrun_name: null\n",
    "toml": "lr = 0.01\nbatch-size = 32\nweight_decay = 0.0\ncompile = true\n"
    'prefetch-thread = false\nout_dir = "elsewhere"\n',
}


@pytest.mark.parametrize("kind", ["yaml", "toml"])
def test_a_config_file_sets_the_flags(train_script, tmp_path, kind):
    path = write_config(tmp_path, SETTINGS[kind], f"flags.{kind}")
    args = train_script.parse_args(["--config", str(path)])
    assert (args.lr, args.batch_size, args.weight_decay) == (0.01, 32, 0.0)
    assert args.compile is True and args.prefetch_thread is False
    assert args.out_dir == Path("elsewhere") and args.run_name is None
    assert "config" not in vars(args)  # args.json records the values, not the file's name


def test_the_command_line_overrides_the_file(train_script, tmp_path):
    path = write_config(tmp_path, SETTINGS["yaml"])
    flags = ["--lr", "0.5", "--config", str(path), "--prefetch-thread", "--batch-size", "auto"]
    args = train_script.parse_args(flags)
    assert (args.lr, args.prefetch_thread, args.batch_size) == (0.5, True, "auto")
    assert args.compile is True  # what the command line left alone comes from the file


def test_an_empty_yaml_file_sets_nothing(train_script, tmp_path):
    path = write_config(tmp_path, "# nothing yet\n")
    assert train_script.parse_args(["--config", str(path)]) == train_script.parse_args([])


def test_paths_and_tuples_round_trip_through_config_text(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--size", type=int, nargs=2)
    args = argparse.Namespace(out_dir=Path("runs/a"), size=(3, 4), run_name="x", resume=None)
    path = write_config(tmp_path, config_text(args))
    assert read_config(parser, path) == {"out_dir": Path("runs/a"), "size": [3, 4]}


@pytest.mark.parametrize(
    ("file_text", "message"),
    [
        ("bach_size: 8\n", "has an unknown key 'bach_size'; the closest flag is 'batch_size'"),
        ("lr: -1\n", "sets lr to -1, which --lr refuses (-1 is out of range; expected a number"),
        ("batch_size: big\n", "which --batch-size refuses ('big' is not a number"),
        ("optimizer: adam\n", "which --optimizer refuses ('adam' is not one of"),
        ("run_name: ../escape\n", "which --run-name refuses ('../escape' is a path"),
        ("compile: 'yes'\n", "which --compile refuses: it is on or off; write true or false"),
        ("lr: true\n", "which --lr refuses: it takes one value"),
        ("epochs: [1, 2]\n", "which --epochs refuses: it takes one value"),
        ("lr: null\n", "which --lr refuses: it needs a value"),
        ("epochs: 2.7\n", "which --epochs refuses ('2.7' is not a whole number; expected an"),
        ("batch_size: 8\nbatch-size: 16\n", "sets batch_size twice"),
        ("lr: 0.1\nepochs: 2\nlr: 0.2\n", "sets 'lr' twice (lines 1 and 3); keep one"),
        ("smoke_test: true\n", "sets smoke_test, which only the command line may give"),
        ("resume: last.pt\n", "sets resume, which only the command line may give"),
        ("config: other.yaml\n", "sets config, which only the command line may give"),
        ("debug: true\n", "sets debug, which only the command line may give"),
        ("help: true\n", "sets help, which only the command line may give"),
        ("lr: [0.1\n", "is not valid YAML (line 2: expected ',' or ']'"),
        ("- lr\n- 0.1\n", "holds a list, not a mapping of flags to values"),
        ("lr: " + "[" * 5000 + "]" * 5000, "nests lists or mappings too deeply to read"),
        ("lr: " + "1" * 5000, "has a value that cannot be read (Exceeds the limit (4300 digits)"),
    ],
)
def test_a_bad_config_file_is_one_sentence(config_refused, tmp_path, file_text, message):
    config_refused([f"--config={write_config(tmp_path, file_text)}"], message)


@pytest.mark.parametrize(
    ("name", "file_text", "message"),
    [
        ("flags.toml", "lr = \n", "is not valid TOML (Invalid value (at line 1, column 6))"),
        ("flags.toml", "[data]\nlr = 1\n", "has an unknown key 'data'"),
        ("flags.toml", "lr = 1\nlr = 2\n", "is not valid TOML (Cannot overwrite a value"),
        ("flags.json", "{}", "is neither YAML (.yaml, .yml) nor TOML (.toml)"),
        ("flags.yaml", b"lr: \xff\n", "cannot read the config file"),
    ],
)
def test_a_bad_config_file_of_any_kind_is_one_sentence(
    config_refused, tmp_path, name, file_text, message
):
    path = tmp_path / name
    path.write_bytes(file_text if isinstance(file_text, bytes) else file_text.encode())
    config_refused(["--config", str(path)], message)


def test_a_yaml_alias_bomb_is_refused_in_little_memory(config_refused, tmp_path):
    # The "billion laughs": 9 lines of aliases of aliases stand for 9**9 strings, gigabytes
    # once anything walks the value (its repr in an error message was enough).
    lines = ["lr:", "  - &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"  - &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 9)]
    path = write_config(tmp_path, "\n".join(lines) + "\n")
    with address_space_grows_at_most(256 * 2**20):  # a regression: a MemoryError, no swapping
        config_refused(["--config", str(path)], "uses the YAML alias '*a0' (line 3), which")


@contextlib.contextmanager
def address_space_grows_at_most(extra_bytes: int) -> Iterator[None]:
    """Fail an allocation (MemoryError) that takes the process past its size now + extra."""
    resource = pytest.importorskip("resource")
    if not Path("/proc/self/statm").exists():
        pytest.skip("the process size is read from /proc (Linux)")
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = in_use + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard < 0 else min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_a_config_file_over_the_size_cap_is_refused_unread(config_refused, tmp_path):
    # Valid flags after a megabyte of comment: the size alone refuses it.
    path = write_config(tmp_path, "#" * 2**20 + "\nlr: 0.1\n")
    config_refused(["--config", str(path)], f"config file {path} is larger than 1 MB")


def test_a_long_value_is_quoted_short_in_the_error(config_refused, tmp_path):
    path = write_config(tmp_path, f"lr: {'x' * 100_000}\n")
    error = config_refused(["--config", str(path)], "is not a number; expected a number above 0")
    assert len(error) < len(str(path)) + 300  # not 100,000 characters
    path.write_text(f"? {'y' * 100_000}\n: 1\n")  # `?`: a key over YAML's 1024 characters
    error = config_refused(["--config", str(path)], "has an unknown key 'yyyyy")
    assert len(error) < len(str(path)) + 300  # not 100,000 characters


@pytest.mark.parametrize("key", ["1", "zzqqxj"])
def test_an_unknown_key_far_from_every_flag_suggests_none(train_script, tmp_path, key):
    path = write_config(tmp_path, f"{key}: 1\n")
    with pytest.raises(UserError, match="no flag has that name") as refused:
        train_script.parse_args(["--config", str(path)])
    assert "closest" not in str(refused.value)


def test_a_missing_config_file_is_one_sentence(config_refused, tmp_path):
    missing = tmp_path / "nowhere.yaml"
    config_refused(["--config", str(missing)], f"config file {missing} does not exist")


def test_config_and_resume_are_refused_together(config_refused, tmp_path):
    path = write_config(tmp_path, "lr: 0.1\n")
    flags = ["--config", str(path), "--resume", str(tmp_path / "last.pt")]
    config_refused(flags, "--config and --resume do not go together")


def test_a_config_file_goes_with_resume_auto_and_must_agree_with_the_run(
    train_script, tmp_path, config_refused, capsys
):
    # One command for a run's first start and every restart (a requeued job), with a file.
    path = write_config(tmp_path, "lr: 0.002\nepochs: 1\n")
    flags = [*TINY_RUN_FLAGS, "--config", str(path), "--resume", "auto", "--run-name", "job",
             "--out-dir", str(tmp_path / "runs")]  # fmt: skip
    assert train_script.main(flags) == 0
    path.write_text("lr: 0.002\nepochs: 2\n")  # a flag a resumed run may change
    assert train_script.main(flags) == 0
    last = tmp_path / "runs" / "job" / "checkpoints" / "last.pt"
    checkpoint = train_script.engine.load_checkpoint(last)
    assert checkpoint["state"]["epoch"] == 2 and checkpoint["args"]["lr"] == 0.002
    path.write_text("lr: 0.01\nepochs: 3\n")  # one it may not: refused, nothing written
    message = f"{path} sets lr to 0.01, but the run being resumed has 0.002; remove lr from"
    capsys.readouterr()  # the two runs' output
    config_refused(["--config", str(path), "--resume", "auto", "--run-name", "job"], message)


@pytest.fixture
def config_refused(train_script, tmp_path, monkeypatch, capsys):
    """Check that train.py refuses `flags` with one sentence holding `message`, exit code 2,
    and writes nothing (no run folder); the sentence."""

    def check(flags: list[str], message: str) -> str:
        before = snapshot(tmp_path)
        argv = ["train.py", *TINY_RUN_FLAGS, *flags, "--out-dir", str(tmp_path / "runs")]
        monkeypatch.setattr(sys, "argv", argv)
        assert run_cli(train_script.main, prog="train.py") == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("train.py: error: ") and "\n" not in error
        assert message in error
        assert snapshot(tmp_path) == before
        return error

    return check


def snapshot(folder: Path) -> dict:
    """Every file's bytes and every folder (None) under `folder`."""
    return {path: path.read_bytes() if path.is_file() else None for path in folder.rglob("*")}


def test_config_yaml_runs_the_same_experiment_again(tiny_run, train_script):
    """A run's config.yaml, given to --config, gives the flags of its args.json again."""
    run_dir = tiny_run.run_dir
    recorded = json.loads((run_dir / "args.json").read_text())
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert "run_name" not in saved and "resume" not in saved  # a replay gets a new folder
    replay = train_script.parse_args(["--config", str(run_dir / "config.yaml")])
    replayed = {**train_script.engine.args_to_dict(replay), "run_name": "tiny"}
    resolved_at_start = {"world_size", "effective_batch"}
    assert replayed == {
        key: value for key, value in recorded.items() if key not in resolved_at_start
    }
    assert replay.out_dir == tiny_run.run_dir.parent  # a Path again, beside the first run
