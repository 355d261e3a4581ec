"""--ema (an average of the weights, evaluated and saved beside them) and --keep-top-k (the K
best epoch checkpoints): what they compute, what they keep, and that both resume exactly."""

import json
import os
import signal

import pytest
import torch

from {{ cookiecutter.package_name }}.engine import checkpoint as ckpt

from ..helpers import TINY_RUN_FLAGS

DECAY = 0.9  # far from 1, so a few steps move the average well away from its start
# 3 steps an epoch, 4 epochs; the two best epoch checkpoints are kept.
EMA_TOP_K_FLAGS = [*TINY_RUN_FLAGS, "--synthetic-size", "48", "--ema", str(DECAY),
                   "--keep-top-k", "2", "--epochs", "4"]  # fmt: skip


def load(path) -> dict:
    return torch.load(path, weights_only=True)


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def assert_same_checkpoint(path_a, path_b) -> None:
    """Bitwise the same training state, raw weights, EMA weights and EMA step count."""
    a, b = load(path_a), load(path_b)
    assert a["state"] == b["state"]  # the kept top-k list is part of the state
    assert same_tensors(a["model"], b["model"])
    assert same_tensors(a["ema"], b["ema"])
    assert a["ema_updates"] == b["ema_updates"]


def epoch_files(run_dir) -> list[str]:
    return sorted(path.name for path in (run_dir / "checkpoints").glob("epoch-*.pt"))


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, train_script):
    """An unbroken run with --ema and --keep-top-k: what interrupted ones must end up as."""
    out_dir = tmp_path_factory.mktemp("runs")
    assert train_script.main([*EMA_TOP_K_FLAGS, "--out-dir", str(out_dir), "--run-name", "s"]) == 0
    return out_dir / "s"


def test_the_ema_is_the_average_of_the_weights_after_each_step(train_script, tmp_path, monkeypatch):
    after_each_step = []  # the model's weights and buffers right after each optimizer step
    step = train_script.engine.MixedPrecision.step

    def recording_step(self, model, optimizer, grad_clip):
        step(self, model, optimizer, grad_clip)
        after_each_step.append({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(train_script.engine.MixedPrecision, "step", recording_step)
    flags = [*TINY_RUN_FLAGS, "--ema", str(DECAY), "--out-dir", str(tmp_path), "--run-name", "r"]
    train_script.main([*flags, "--epochs", "1"])
    saved = load(tmp_path / "r" / "checkpoints" / "last.pt")

    # By hand: the first step's weights, then ema = decay * ema + (1 - decay) * weights at
    # each later step. torch.lerp(ema, weights, 1 - decay) is that formula, and the very
    # float32 operation AveragedModel's EMA applies (integer buffers: the formula, truncated),
    # so the result is exact on any CPU, not merely close.
    assert len(after_each_step) == saved["ema_updates"] == 6
    expected = dict(after_each_step[0])
    for weights in after_each_step[1:]:
        for name, ema in expected.items():
            if ema.is_floating_point():
                expected[name] = torch.lerp(ema, weights[name], 1 - DECAY)
            else:
                expected[name] = (ema * DECAY + weights[name] * (1 - DECAY)).to(ema.dtype)
    assert same_tensors(saved["ema"], expected)
    assert same_tensors(saved["model"], after_each_step[-1])
    differ = [
        name for name, ema in saved["ema"].items() if not torch.equal(ema, saved["model"][name])
    ]
    assert any(saved["ema"][name].is_floating_point() for name in differ)


def script_validation(task, monkeypatch, checkpoints) -> list[float]:
    """Make validation score epochs 1-4 with SCRIPTED values (negated where lower is better);
    an epoch is told by last.pt (the end of the one before), so a resumed run scores alike."""
    values = [value if task.HIGHER_IS_BETTER else -value for value in SCRIPTED]
    evaluate = task.evaluate

    def scripted_evaluate(model, loader, device, *rest):
        last = checkpoints / "last.pt"
        epoch = load(last)["state"]["epoch"] + 1 if last.exists() else 1
        return {**evaluate(model, loader, device, *rest), task.BEST_METRIC: values[epoch - 1]}

    monkeypatch.setattr(task, "evaluate", scripted_evaluate)
    return values


# Validation values of epochs 1-4: epoch 2 is best, then 4, 3, 1.
SCRIPTED = [0.5, 0.9, 0.7, 0.8]


def epoch_file_name(task, values: list[float], epoch: int) -> str:
    return f"epoch-{epoch:03d}-{task.BEST_METRIC}-{values[epoch - 1]:.4f}.pt"


def test_validation_measures_the_ema_and_the_best_k_epochs_are_kept(
    train_script, tmp_path, monkeypatch
):
    task, checkpoints = train_script.task, tmp_path / "r" / "checkpoints"
    values = script_validation(task, monkeypatch, checkpoints)
    evaluated, files_before = [], []  # per validation: the weights measured, the kept files
    evaluate = task.evaluate

    def recording_evaluate(model, *rest):
        evaluated.append({k: v.clone() for k, v in model.state_dict().items()})
        files_before.append(sorted(path.name for path in checkpoints.glob("epoch-*.pt")))
        return evaluate(model, *rest)

    monkeypatch.setattr(task, "evaluate", recording_evaluate)
    train_script.main([*EMA_TOP_K_FLAGS, "--out-dir", str(tmp_path), "--run-name", "r"])

    def name(epoch: int) -> str:
        return epoch_file_name(task, values, epoch)

    # Validation ran on the EMA weights (as last.pt saved them), not on the raw ones.
    last, best = load(checkpoints / "last.pt"), load(checkpoints / "best.pt")
    assert same_tensors(evaluated[-1], last["ema"])
    assert not same_tensors(evaluated[-1], last["model"])
    # best.pt is the epoch whose EMA scored best: epoch 2.
    assert best["state"]["epoch"] == 2 and best["state"]["best_metric"] == values[1]
    assert same_tensors(best["ema"], evaluated[1])
    # The top 2 after each epoch: 1 | 2, 1 | 2, 3 (1 deleted) | 2, 4 (3 deleted).
    assert files_before[1:] == [[name(1)], sorted([name(1), name(2)]), sorted([name(2), name(3)])]
    assert epoch_files(tmp_path / "r") == sorted([name(2), name(4)])
    assert [entry["file"] for entry in last["state"]["kept"]] == [name(2), name(4)]
    for epoch in (2, 4):  # each kept file is its epoch's checkpoint
        kept = load(checkpoints / name(epoch))
        assert kept["state"]["epoch"] == epoch and same_tensors(kept["ema"], evaluated[epoch - 1])


def test_ema_and_top_k_survive_a_stop_and_resume_bitwise(
    straight_run, train_script, tmp_path, monkeypatch
):
    step = train_script.engine.MixedPrecision.step

    def step_then_sigterm_at_8(self, model, optimizer, grad_clip):
        step(self, model, optimizer, grad_clip)
        if optimizer.state_dict()["state"][0]["step"] == 8:  # in epoch 3: two epochs kept
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(train_script.engine.MixedPrecision, "step", step_then_sigterm_at_8)
    flags = [*EMA_TOP_K_FLAGS, "--out-dir", str(tmp_path), "--run-name", "r"]
    assert train_script.main(flags) == 128 + signal.SIGTERM
    monkeypatch.undo()
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    assert load(last)["state"]["global_step"] == 8 and len(load(last)["state"]["kept"]) == 2
    assert train_script.main(["--resume", str(last)]) == 0
    assert_same_checkpoint(last, straight_run / "checkpoints" / "last.pt")
    assert_same_checkpoint(last.with_name("best.pt"), straight_run / "checkpoints" / "best.pt")
    assert epoch_files(tmp_path / "r") == epoch_files(straight_run)
    assert len(epoch_files(straight_run)) == 2
    for name in epoch_files(straight_run):
        assert_same_checkpoint(last.with_name(name), straight_run / "checkpoints" / name)


@pytest.mark.parametrize("crash_after", ["the new epoch file", "last.pt"])
def test_a_crash_while_saving_the_top_k_resumes_to_the_same_kept_set(
    straight_run, train_script, tmp_path, monkeypatch, crash_after
):
    # Epoch 3 enters the top 2 and pushes epoch 1 out. Its save crashes after writing its
    # epoch file (before last.pt lists it), or after last.pt (before epoch 1's file is
    # deleted): either way three files are left, and the resumed run ends with the right two.
    task, checkpoints = train_script.task, tmp_path / "r" / "checkpoints"
    values = script_validation(task, monkeypatch, checkpoints)
    copy, remove = ckpt.atomic_copy, ckpt.remove_unkept_epoch_checkpoints

    def copy_crashing_at_epoch_3(source, target):
        if source.name.startswith("epoch-003") and target.name == "last.pt":
            raise RuntimeError("the machine went away")
        copy(source, target)

    def remove_crashing_at_epoch_3(folder, kept):
        if load(folder / "last.pt")["state"]["epoch"] == 3:
            raise RuntimeError("the machine went away")
        remove(folder, kept)

    if crash_after == "last.pt":
        monkeypatch.setattr(ckpt, "remove_unkept_epoch_checkpoints", remove_crashing_at_epoch_3)
    else:
        monkeypatch.setattr(ckpt, "atomic_copy", copy_crashing_at_epoch_3)
    flags = [*EMA_TOP_K_FLAGS, "--out-dir", str(tmp_path), "--run-name", "r"]
    with pytest.raises(RuntimeError, match="went away"):
        train_script.main(flags)
    names = [epoch_file_name(task, values, epoch) for epoch in (1, 2, 3, 4)]
    assert epoch_files(tmp_path / "r") == names[:3]
    assert load(checkpoints / "last.pt")["state"]["epoch"] == (3 if crash_after == "last.pt" else 2)

    monkeypatch.setattr(ckpt, "atomic_copy", copy)
    monkeypatch.setattr(ckpt, "remove_unkept_epoch_checkpoints", remove)
    assert train_script.main(["--resume", str(checkpoints / "last.pt")]) == 0
    assert epoch_files(tmp_path / "r") == [names[1], names[3]]
    resumed = load(checkpoints / "last.pt")
    assert [entry["file"] for entry in resumed["state"]["kept"]] == [names[1], names[3]]
    # The training itself is the unbroken run's (only the scripted metrics differ from it).
    straight = load(straight_run / "checkpoints" / "last.pt")
    assert resumed["state"]["global_step"] == straight["state"]["global_step"] == 12
    assert same_tensors(resumed["model"], straight["model"])
    assert same_tensors(resumed["ema"], straight["ema"])


def test_test_py_evaluates_the_ema_weights_and_says_so(straight_run, test_script, tmp_path, capsys):
    def report_of(path) -> tuple[str, dict]:
        assert test_script.main(["--checkpoint", str(path), "--num-workers", "0"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        return lines[0], json.loads(lines[-1])

    best = straight_run / "checkpoints" / "best.pt"
    first_line, report = report_of(best)
    assert first_line.startswith(f"checkpoint  {best} (EMA weights, epoch ")
    assert report["weights"] == "ema"
    # The value training measured on the same EMA weights and validation images. Only the
    # float32 sums' batching may differ (a rounding of about 1e-7 per term, for fewer than a
    # hundred images): a relative 1e-4 is far above that.
    metric = test_script.task.BEST_METRIC
    assert report[metric] == pytest.approx(load(best)["state"]["best_metric"], rel=1e-4)
    # The same file without its EMA: test.py measures the raw weights, and they score otherwise.
    payload = load(best)
    payload["ema"] = payload["ema_updates"] = None
    torch.save(payload, tmp_path / "raw.pt")
    _, raw_report = report_of(tmp_path / "raw.pt")
    assert raw_report["weights"] == "model" and raw_report["loss"] != report["loss"]


def test_test_py_evaluates_the_raw_weights_of_a_run_without_ema(tiny_run, test_script, capsys):
    last = tiny_run.run_dir / "checkpoints" / "last.pt"
    assert load(last)["ema"] is None
    assert test_script.main(["--checkpoint", str(last), "--num-workers", "0"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "EMA" not in lines[0] and json.loads(lines[-1])["weights"] == "model"
