"""--tracker: the CSV file, MLflow (a temporary SQLite store) and W&B (offline) get the flags
and every logged step once, also across a stop and a resume; a failing tracker is dropped."""

import csv
import importlib.util
import os
import re
import signal
import socket
import time

import pytest
import torch

from {{ cookiecutter.package_name }}.engine import tracking

from ..helpers import TINY_RUN_FLAGS

# 2 epochs of 6 steps, logged every 2 steps: train/loss at 2, 4, 6, 8, 10, 12.
LOGGED_STEPS = [2, 4, 6, 8, 10, 12]


def stopped_then_resumed(train_script, monkeypatch, out_dir, *flags: str) -> None:
    """A run (2 epochs unless `flags` say) stopped by SIGTERM after step 3, then resumed to
    its end, in-process."""
    stopped_at_step_3(train_script, monkeypatch, out_dir, *flags)
    assert train_script.main(["--resume", str(out_dir / "r" / "checkpoints" / "last.pt")]) == 0


def stopped_at_step_3(train_script, monkeypatch, out_dir, *flags: str) -> dict:
    """A run (folder r; 2 epochs unless `flags` say) stopped by SIGTERM after step 3; its
    last.pt."""
    step = train_script.engine.MixedPrecision.step

    def step_then_sigterm_at_3(self, model, optimizer, grad_clip):
        step(self, model, optimizer, grad_clip)
        if optimizer.state_dict()["state"][0]["step"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as patch:
        patch.setattr(train_script.engine.MixedPrecision, "step", step_then_sigterm_at_3)
        argv = [*TINY_RUN_FLAGS, "--epochs", "2", "--out-dir", str(out_dir), "--run-name", "r"]
        assert train_script.main([*argv, *flags]) == 128 + signal.SIGTERM
    return torch.load(out_dir / "r" / "checkpoints" / "last.pt", weights_only=True)


def csv_rows(run_dir) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_csv_has_one_row_per_logged_value_and_none_twice_across_a_resume(
    train_script, tmp_path, monkeypatch
):
    stopped_then_resumed(train_script, monkeypatch, tmp_path, "--tracker", "csv,tensorboard")
    rows = csv_rows(tmp_path / "r")
    assert list(rows[0]) == ["step", "tag", "value", "wall_time"]
    # The stop logged step 3; the resumed run went on from its checkpoint at step 3.
    losses = [int(row["step"]) for row in rows if row["tag"] == "train/loss"]
    assert losses == [2, 3, 4, 6, 8, 10, 12]
    metric = f"val/{train_script.task.BEST_METRIC}"
    assert [int(row["step"]) for row in rows if row["tag"] == metric] == [6, 12]
    assert all(float(row["value"]) == float(row["value"]) for row in rows)  # numbers, no nan


def test_csv_drops_rows_logged_after_the_checkpoint_a_resume_starts_from(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "step,tag,value,wall_time\n2,train/loss,1.5,1.0\n4,train/loss,1.2,2.0\n6,train/lo"
    )  # a crash after step 4 was logged (the checkpoint was at 2) cut the last row
    tracker = tracking.CsvTracker(tmp_path, resume_step=2)
    tracker.scalars({"train/loss": 1.25}, 4)
    tracker.close(failed=False)
    rows = [(row["step"], row["value"]) for row in csv_rows(tmp_path)]
    assert rows == [("2", "1.5"), ("4", "1.25")]


def test_csv_sets_lines_that_are_no_row_aside_and_logs_on(tmp_path, capsys):
    text = (
        "step,tag,value,wall_time\n2,train/loss,1.5,1.0\ntwo,train/loss,1.4,1.5\ngarbage\n"
        '4,train/loss,1.2,2.0\n"cut,train/loss\n\n6,train/loss,1.1\n'
    )
    (tmp_path / "metrics.csv").write_bytes(text.encode() + b"\xff,x\n")  # and not UTF-8
    tracker = tracking.CsvTracker(tmp_path, resume_step=4)
    tracker.scalars({"train/loss": 1.0}, 6)
    tracker.close(failed=False)
    rows = [(row["step"], row["value"]) for row in csv_rows(tmp_path)]
    assert rows == [("2", "1.5"), ("4", "1.2"), ("6", "1.0")]
    aside = (tmp_path / "metrics.bad-rows.csv").read_bytes().splitlines()
    assert aside == [b"two,train/loss,1.4,1.5", b"garbage", b'"cut,train/loss',
                     b"6,train/loss,1.1", b"\xff,x"]  # fmt: skip
    (notice,) = capsys.readouterr().err.splitlines()
    assert notice.startswith(f"warning: 5 line(s) of {tmp_path / 'metrics.csv'} are no ")
    assert "set aside in metrics.bad-rows.csv beside it and the run logs on" in notice


def test_csv_logs_on_after_an_empty_file(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text("")  # a crash before its header was written
    tracker = tracking.CsvTracker(tmp_path, resume_step=4)
    tracker.scalars({"train/loss": 1.0}, 6)
    tracker.close(failed=False)
    assert [(row["step"], row["tag"]) for row in csv_rows(tmp_path)] == [("6", "train/loss")]
    assert not (tmp_path / "metrics.bad-rows.csv").exists() and not capsys.readouterr().err


def test_a_failing_tracker_warns_once_and_the_run_finishes(
    train_script, tmp_path, monkeypatch, capsys
):
    calls = []

    def server_gone(self, values, step):
        calls.append(step)
        raise ConnectionError("the tracking server went away")

    monkeypatch.setattr(tracking.CsvTracker, "scalars", server_gone)
    flags = [*TINY_RUN_FLAGS, "--epochs", "1", "--out-dir", str(tmp_path), "--tracker", "csv"]
    capsys.readouterr()
    assert train_script.main(flags) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: the csv")]
    run_dir = next(tmp_path.glob("*/checkpoints")).parent
    assert warnings == [
        f"warning: the csv tracker at {run_dir / 'metrics.csv'} failed (the tracking server "
        "went away); the run goes on without it"
    ]
    assert calls == [2]  # dropped after its first failure: no retry at every step
    checkpoint = torch.load(next(tmp_path.glob("*/checkpoints/last.pt")), weights_only=True)
    assert checkpoint["state"]["epoch"] == 1


def exit_code(train_script, *argv: str) -> int:
    """train.py's exit code for a bad flag (argparse exits at once)."""
    with pytest.raises(SystemExit) as exit_info:
        train_script.main(list(argv))
    return exit_info.value.code


def test_an_unknown_tracker_is_one_sentence(train_script, tmp_path, capsys):
    argv = ["--tracker", "tensorboard,neptune", "--out-dir", str(tmp_path)]
    assert exit_code(train_script, *argv) == 2
    error = capsys.readouterr().err.strip()
    assert "unknown tracker neptune; give a comma-separated list of tensorboard, mlflow" in error
    assert "\n" not in error and not any(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_a_missing_extra_is_one_sentence_before_training(
    name, train_script, tmp_path, monkeypatch, capsys
):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda module, *rest: None if module == name else find_spec(module, *rest))  # fmt: skip
    argv = [*TINY_RUN_FLAGS, "--tracker", f"csv,{name}", "--out-dir", str(tmp_path)]
    assert exit_code(train_script, *argv) == 2
    error = capsys.readouterr().err.strip()
    hint = f'--tracker {name} needs the {name} package, which is not installed; pip install -e ".[{name}]"'
    assert hint in error
    assert "\n" not in error and not any(tmp_path.iterdir())


def test_old_checkpoints_without_tracker_ids_still_resume(tiny_run, train_script, tmp_path):
    run = tmp_path / "old"
    checkpoint = torch.load(tiny_run.run_dir / "checkpoints" / "last.pt", weights_only=True)
    del checkpoint["trackers"]
    del checkpoint["args"]["tracker"], checkpoint["args"]["log_checkpoints"]
    (run / "checkpoints").mkdir(parents=True)
    (run / "args.json").write_text("{}")
    torch.save(checkpoint, run / "checkpoints" / "last.pt")
    flags = ["--resume", str(run / "checkpoints" / "last.pt"), "--epochs", "3", "--max-steps", "14"]
    assert train_script.main(flags) == 0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["trackers"] == {}


def test_mlflow_gets_the_flags_files_and_every_step_once_across_a_resume(
    train_script, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
    client = MlflowClient(uri)  # its artifacts in tmp_path, not MLflow's default ./mlruns
    client.create_experiment("tests", artifact_location=(tmp_path / "artifacts").as_uri())
    runs = tmp_path / "runs"
    flags = ["--tracker", "mlflow", "--log-checkpoints", "--epochs", "1"]
    stopped_then_resumed(train_script, monkeypatch, runs, *flags)
    last = torch.load(runs / "r" / "checkpoints" / "last.pt", weights_only=True)
    experiment = client.get_experiment_by_name("tests")
    (run,) = client.search_runs([experiment.experiment_id])
    assert last["trackers"] == {"mlflow": run.info.run_id}  # the resume continued this run
    assert run.info.status == "FINISHED" and run.data.params["lr"] == "0.003"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted(metric.step for metric in history) == [2, 3, 4, 6]
    metric = f"val/{train_script.task.BEST_METRIC}"
    assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [6]
    files = {info.path for info in client.list_artifacts(run.info.run_id)}
    assert {"args.json", "model_summary.txt", "best.pt"} <= files
    assert not list((runs / "r").glob("events.out.tfevents.*"))  # no TensorBoard: not asked
    assert "the run goes on without it" not in capsys.readouterr().err


def read_only_mlflow_store(folder) -> str:
    """The URI of an MLflow SQLite store with the experiment "tests", opened read-only (as a
    file without write permission is, for any user but root)."""
    from mlflow.tracking import MlflowClient

    database = folder / "mlflow.db"
    artifacts = (folder / "artifacts").as_uri()
    MlflowClient(f"sqlite:///{database}").create_experiment("tests", artifacts)
    return f"sqlite:///file:{database}?mode=ro&uri=true"


@pytest.mark.parametrize("store", ["a closed port", "a read-only database"])
def test_an_unusable_mlflow_store_is_one_line_and_the_run_finishes(
    store, train_script, tmp_path, monkeypatch, capfd
):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    with socket.socket() as unlistened:  # bound, never listening: a connection is refused
        unlistened.bind(("127.0.0.1", 0))
        if store == "a closed port":
            uri = f"http://127.0.0.1:{unlistened.getsockname()[1]}"
            reason = "(cannot connect: Connection refused)"
        else:
            uri, reason = read_only_mlflow_store(tmp_path), "(attempt to write a readonly database)"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tests")
        flags = [*TINY_RUN_FLAGS, "--epochs", "1", "--out-dir", str(tmp_path / "runs"),
                 "--tracker", "mlflow"]  # fmt: skip
        capfd.readouterr()
        started = time.monotonic()
        assert train_script.main(flags) == 0
        assert time.monotonic() - started < 60  # a generous bound: MLflow alone retried 251 s
    out, err = capfd.readouterr()
    assert [line for line in err.splitlines() if "mlflow" in line] == [
        f"warning: the mlflow tracker at {uri} failed {reason}; the run goes on without it"
    ]
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://me:s3cret@mlflow.example.com:5000/x", "https://me:***@mlflow.example.com:5000/x"),
        ("http://mlflow.example.com", "http://mlflow.example.com"),
    ],
)
def test_a_tracking_uri_is_shown_without_its_password(uri, shown):
    assert tracking.without_password(uri) == shown


def test_mlflow_skips_steps_a_crashed_process_logged_after_its_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    crashed = tracking.MlflowTracker(tmp_path / "r", None)
    for step in (2, 4, 6):  # the checkpoint was at step 2, then the process died
        crashed.scalars({"train/loss": 1.0 / step}, step)
    resumed = tracking.MlflowTracker(tmp_path / "r", crashed.run_id)
    for step in (4, 6, 8):  # the resumed run logs 4 and 6 again, identically
        resumed.scalars({"train/loss": 1.0 / step}, step)
    history = resumed.client.get_metric_history(crashed.run_id, "train/loss")
    assert sorted(metric.step for metric in history) == [2, 4, 6, 8]


def test_wandb_offline_writes_its_run_folder_and_resumes_the_same_run(
    train_script, tmp_path, monkeypatch, capsys
):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                        "WANDB_DIR": str(tmp_path), "WANDB_CACHE_DIR": str(tmp_path / "cache"),
                        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
                        "WANDB_DATA_DIR": str(tmp_path / "data")}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    runs = tmp_path / "runs"
    flags = ["--tracker", "wandb", "--epochs", "1"]
    stopped = stopped_at_step_3(train_script, monkeypatch, runs, *flags)
    run_id = stopped["trackers"]["wandb"]
    folders = list((runs / "r" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 1 and any(folders[0].glob("*.wandb"))  # the logged history
    assert (folders[0] / "files" / "args.json").exists()
    assert train_script.main(["--resume", str(runs / "r" / "checkpoints" / "last.pt")]) == 0
    last = torch.load(runs / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert last["state"]["epoch"] == 1 and last["trackers"] == {"wandb": run_id}
    # Offline, each start has its own folder (`wandb sync` joins them); none of another run.
    # The folder is offline-run-<time>-<run id>, with "-1" added when two starts share a second.
    folders = (runs / "r" / "wandb").glob("offline-run-*")
    names = [re.fullmatch(r"offline-run-\d{8}_\d{6}-(\w+?)(-\d+)?", f.name) for f in folders]
    assert all(names) and {name[1] for name in names} == {run_id}
    assert "the run goes on without it" not in capsys.readouterr().err
