"""sweep.py: a study that a rerun continues, a killed sweep's trial replaced, a pruned trial,
and bad input refused before anything is written. Trials run in-process on the tiny data."""

import argparse
import os
import signal
import socket
import sys

import pytest
import torch

from {{ cookiecutter.package_name }}.engine.cli import run_cli

from ..helpers import TINY_RUN_FLAGS, load_script

optuna = pytest.importorskip(
    "optuna", reason='the sweep extra is not installed: pip install -e ".[sweep]"'
)
STATES = optuna.trial.TrialState
# Trials of 18 optimizer steps: 6 steps an epoch on the tiny data, so 3 validated epochs.
TRIAL_FLAGS = [*TINY_RUN_FLAGS, "--epochs", "4", "--max-steps", "18"]
SEARCH = ["--param", "lr=loguniform:1e-4:1e-1"]


@pytest.fixture(scope="module")
def sweep_script():
    return load_script("sweep")


def run_sweep(sweep_script, monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of sweep.py run in-process (argparse's errors exit)."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["sweep.py", *argv])
    try:
        code = run_cli(sweep_script.main, prog="sweep.py")
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def load_study(folder, name: str = "s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name / 'study.db'}")


def test_a_killed_sweep_rerun_fails_its_running_trial_and_runs_only_the_rest(
    sweep_script, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    argv = ["--study", "s", *SEARCH, *TRIAL_FLAGS]
    code, out, _ = run_sweep(sweep_script, monkeypatch, capsys, "--trials", "2", *argv)
    assert code == 0, out
    study = load_study(tmp_path / "sweeps")
    first_two = {trial.number: trial.params for trial in study.get_trials()}
    runs = tmp_path / "sweeps" / "s" / "runs"
    first_checkpoint = (runs / "trial-0000" / "checkpoints" / "last.pt").read_bytes()
    study.ask()  # a trial that a killed sweep left RUNNING (never told)
    code, out, _ = run_sweep(sweep_script, monkeypatch, capsys, "--trials", "4", *argv)
    assert code == 0, out
    trials = load_study(tmp_path / "sweeps").get_trials()
    assert [trial.state for trial in trials] == [STATES.COMPLETE] * 2 + [STATES.FAIL] + [
        STATES.COMPLETE
    ] * 2
    assert {trial.number: trial.params for trial in trials[:2]} == first_two  # not rerun
    assert (runs / "trial-0000" / "checkpoints" / "last.pt").read_bytes() == first_checkpoint
    assert len({trial.params["lr"] for trial in trials if trial.params}) == 4
    names = sorted(path.name for path in runs.iterdir() if path.is_dir())
    assert names == ["trial-0000", "trial-0001", "trial-0003", "trial-0004"]
    for trial in trials:
        if trial.state == STATES.COMPLETE:  # 3 epochs validated, the best one its value
            assert len(trial.intermediate_values) == 3
            assert trial.value == max(trial.intermediate_values.values())
    assert "left running by a stopped sweep, marked failed" in out
    assert "trial-0004" in out and "python train.py" in out  # the table and the best's command


def test_only_trials_of_dead_processes_here_or_of_no_sweep_count_as_abandoned(sweep_script):
    def trial(owner=None, started=None):
        attrs = {} if owner is None else {"owner": owner, "owner_started": started}
        return optuna.trial.create_trial(state=STATES.RUNNING, user_attrs=attrs)

    here, me = socket.gethostname(), os.getpid()
    assert sweep_script.is_abandoned(trial())
    assert not sweep_script.is_abandoned(trial(f"{here}:{me}"))  # alive: this one
    assert not sweep_script.is_abandoned(trial(f"another-{here}:1"))  # its machine decides
    started = sweep_script.process_start(me)
    assert not sweep_script.is_abandoned(trial(f"{here}:{me}", started))


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times: Linux")
def test_a_live_pid_of_a_process_started_at_another_time_is_abandoned(sweep_script):
    # After a reboot the recorded pid may be a new process's: its start differs.
    owner = f"{socket.gethostname()}:{os.getpid()}"
    attrs = {"owner": owner, "owner_started": "an-earlier-boot/12345"}
    trial = optuna.trial.create_trial(state=STATES.RUNNING, user_attrs=attrs)
    assert sweep_script.is_abandoned(trial)


def test_a_pruned_trial_stops_after_its_epoch_with_its_run_saved(
    sweep_script, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: True)
    space = tmp_path / "space.yaml"
    space.write_text("lr: loguniform:1e-4:1e-1\n")
    argv = ["--study", "s", "--trials", "1", "--space", str(space), *TRIAL_FLAGS]
    code, out, _ = run_sweep(sweep_script, monkeypatch, capsys, *argv)
    assert code == 0, out
    (trial,) = load_study(tmp_path / "sweeps").get_trials()
    assert trial.state == STATES.PRUNED and list(trial.intermediate_values) == [1]
    last = tmp_path / "sweeps" / "s" / "runs" / "trial-0000" / "checkpoints" / "last.pt"
    assert torch.load(last, weights_only=True)["state"]["epoch"] == 1  # stopped after epoch 1


def test_ctrl_c_stops_the_trial_saved_and_the_rerun_gives_its_budget_to_a_new_one(
    sweep_script, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)

    def ctrl_c_after_the_first_epoch(self) -> bool:
        signal.raise_signal(signal.SIGINT)  # as a Ctrl-C while the epoch is validated
        return False

    monkeypatch.setattr(optuna.trial.Trial, "should_prune", ctrl_c_after_the_first_epoch)
    argv = ["--study", "s", "--trials", "1", *SEARCH, *TRIAL_FLAGS]
    code, out, _ = run_sweep(sweep_script, monkeypatch, capsys, *argv)
    assert code == 128 + signal.SIGINT, out
    last = tmp_path / "sweeps" / "s" / "runs" / "trial-0000" / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)["state"]
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)  # stopped after the next step
    monkeypatch.setattr(optuna.trial.Trial, "should_prune", lambda self: False)
    code, out, _ = run_sweep(sweep_script, monkeypatch, capsys, *argv)
    assert code == 0, out
    states = [trial.state for trial in load_study(tmp_path / "sweeps").get_trials()]
    assert states == [STATES.FAIL, STATES.COMPLETE]


def test_jobs_are_capped_by_cores_and_memory(sweep_script, monkeypatch):
    monkeypatch.setattr(sweep_script.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(sweep_script, "total_memory", lambda: 4 * 2**30)  # 4 GiB: 4 jobs
    assert sweep_script.jobs("4") == 4
    with pytest.raises(argparse.ArgumentTypeError, match="expected 1 to 4: each job"):
        sweep_script.jobs("5")


def test_jobs_start_workers_on_the_study_each_with_a_gpu_or_a_share_of_threads(
    sweep_script, monkeypatch
):
    started = []
    monkeypatch.setattr(sweep_script.subprocess, "Popen", lambda *a, **k: started.append((a, k)))
    monkeypatch.setattr(sweep_script.torch, "set_num_threads", lambda threads: None)
    monkeypatch.setattr(sweep_script.os, "cpu_count", lambda: 12)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5")
    assert sweep_script.start_workers(["--study", "s"], 1) == []  # --jobs 1: this process alone
    workers = sweep_script.start_workers(["--study", "s"], 3)
    assert len(workers) == 2
    for index, ((command,), options) in enumerate(started, start=1):
        assert command[-3:] == ["--study", "s", "--worker"]
        assert options["env"]["OMP_NUM_THREADS"] == "4"  # 12 cores, 3 processes
        assert options["env"]["CUDA_VISIBLE_DEVICES"] == ["4", "5"][index % 2]


BAD_INPUT = [
    (["--param", "lr=normal:1:2"], "is not a search spec"),
    (["--param", "lr=uniform:0.1"], "is not a search spec"),
    (["--param", "lr"], "has no '='"),
    (["--param", "nope=uniform:0:1"], "train.py has no flag --nope"),
    (["--param", "compile=choice:1"], "train.py has no flag --compile that takes a value"),
    (["--param", "lr=uniform:0.1:0.01"], "LOW must be below HIGH"),
    (["--param", "lr=loguniform:0:0.1"], "--lr refuses it"),
    (["--param", "lr=int:0.1:1"], "int:LOW:HIGH takes two whole numbers"),
    (["--param", "data-dir=uniform:a:b"], "uniform:LOW:HIGH takes two numbers"),
    (["--param", "epochs=uniform:1:3"], "--epochs refuses it"),
    (["--param", "optimizer=choice:adamw,nope"], "--optimizer refuses it"),
    ([*SEARCH, "--bogus"], "unrecognized arguments: --bogus"),
    ([*SEARCH, "--out-dir", "elsewhere"], "sweep.py sets --out-dir itself"),
    (["--param", "resume=choice:runs/a/checkpoints/last.pt"], "cannot search --resume"),
    (["--param", "run-name=choice:a,b"], "cannot search --run-name"),
    (["--param", "config=choice:a.yaml"], "cannot search --config"),
    ([], "nothing to search"),
    ([*SEARCH, "--jobs", "100000"], "argument --jobs: 100000 is out of range; expected 1 to"),
    (["--study", "", *SEARCH], "argument --study: the name is empty"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_is_one_sentence_before_anything_is_written(
    sweep_script, tmp_path, monkeypatch, capsys, flags, message
):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_sweep(
        sweep_script, monkeypatch, capsys, "--study", "s", "--trials", "1", *flags
    )
    assert code == 2
    assert err.strip().count("\n") == 0 and "error: " in err and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_without_optuna_the_sweep_names_its_extra(sweep_script, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    code, _, err = run_sweep(
        sweep_script, monkeypatch, capsys, "--study", "s", "--trials", "1", *SEARCH
    )
    assert code == 2 and 'pip install -e ".[sweep]"' in err and err.strip().count("\n") == 0
    assert list(tmp_path.iterdir()) == []


def test_a_trial_that_max_steps_ends_before_its_first_epoch_end_has_a_metric(
    sweep_script, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    flags = [*TINY_RUN_FLAGS, "--epochs", "2", "--max-steps", "3"]  # half of the first epoch
    code, out, _ = run_sweep(sweep_script, monkeypatch, capsys, "--study", "s", "--trials",
                             "1", *SEARCH, *flags)  # fmt: skip
    assert code == 0, out
    (trial,) = load_study(tmp_path / "sweeps").get_trials()
    assert trial.state == STATES.COMPLETE and trial.value is not None
    assert "part-way through epoch 1, --max-steps" in out


def test_a_failed_trial_says_why_in_the_table_and_at_the_end(
    sweep_script, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    study = optuna.create_study(storage=f"sqlite:///{make_sweep_dir(tmp_path)}/study.db",
                                study_name="s")  # fmt: skip
    failed = study.ask()
    failed.set_user_attr("failed", "lr 10 diverged")
    study.tell(failed, state=STATES.FAIL)
    study.tell(study.ask(), state=STATES.FAIL)  # a stopped sweep's, failed by the next
    code, out, _ = run_sweep(sweep_script, monkeypatch, capsys, "--study", "s", "--trials",
                             "1", *SEARCH, *TRIAL_FLAGS[:-2], "--max-steps", "6")  # fmt: skip
    assert code == 0, out
    assert "FAIL" in out and "(failed: lr 10 diverged)" in out
    assert "(failed: left running by a stopped sweep)" in out
    assert "2 trial(s) failed: 1 lr 10 diverged; 1 left running by a stopped sweep" in out


def make_sweep_dir(tmp_path, name: str = "s"):
    folder = tmp_path / "sweeps" / name
    folder.mkdir(parents=True)
    return folder


def garbage_study_file(tmp_path):
    (make_sweep_dir(tmp_path) / "study.db").write_bytes(b"not a database\n" * 100)
    return [], "is not a readable study database (file is not a database)"


def unknown_scheme(tmp_path):
    return ["--storage", "bogus://x"], "storage bogus://x names a database that no installed"


def plain_path(tmp_path):
    return ["--storage", "study.db"], "storage study.db is not a database URL"


def read_only_storage(tmp_path):
    path = make_sweep_dir(tmp_path) / "study.db"
    optuna.create_study(storage=f"sqlite:///{path}", study_name="s")
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    return ["--storage", read_only], "cannot be opened or written (attempt to write a readonly"


def another_kind_of_parameter(tmp_path):
    study = optuna.create_study(
        storage=f"sqlite:///{make_sweep_dir(tmp_path)}/study.db", study_name="s"
    )
    lr = optuna.distributions.CategoricalDistribution([0.1, 0.01])
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.1}, distributions={"lr": lr},
                                              value=0.5))  # fmt: skip
    return [], "--param lr searches another kind of values than the earlier trials of study s"


def emptied_study_file(tmp_path):
    sweep_dir = make_sweep_dir(tmp_path)
    (sweep_dir / "study.db").touch()  # 0 bytes: SQLite would start the study anew
    (sweep_dir / "runs" / "trial-0000" / "checkpoints").mkdir(parents=True)
    return [], "holds trial-0000, a trial that the study's storage"


STORAGE_CASES = [garbage_study_file, unknown_scheme, plain_path, read_only_storage,
                 another_kind_of_parameter, emptied_study_file]  # fmt: skip


@pytest.mark.parametrize("case", STORAGE_CASES, ids=[case.__name__ for case in STORAGE_CASES])
def test_a_storage_that_cannot_hold_the_study_is_one_sentence_and_keeps_its_files(
    sweep_script, tmp_path, monkeypatch, capsys, case
):
    monkeypatch.chdir(tmp_path)
    flags, message = case(tmp_path)
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    before = {path: data for path, data in before.items() if data}  # SQLite fills a 0-byte one
    code, out, err = run_sweep(sweep_script, monkeypatch, capsys, "--study", "s", "--trials",
                               "1", *SEARCH, *TRIAL_FLAGS, *flags)  # fmt: skip
    assert code == 2, out + err
    assert err.strip().count("\n") == 0 and message in err, err
    assert not (tmp_path / "sweeps" / "s" / "runs" / "trial-0001").exists()
    for path, data in before.items():
        assert path.read_bytes() == data, path
