"""torchrun: the same train.py in 2 CPU processes (gloo) equals one process, and resumes.

One torchrun launch runs every distributed training these tests need (tests/distributed_probe.py);
a second one checks the real command line.
"""

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
import torch
import torch.distributed as dist

from {{ cookiecutter.package_name }}.engine import devices
from {{ cookiecutter.package_name }}.engine.checkpoint import load_checkpoint
from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.engine.devices import select_device
from {{ cookiecutter.package_name }}.engine.loader import build_loader
from {{ cookiecutter.package_name }}.task import task

from ..helpers import (
    DDP_FLAGS,
    EMA_FLAGS,
    PROJECT_ROOT,
    assert_same_weights,
    last_checkpoint,
    model_of_this_task,
    torchrun,
    torchrun_command,
)
from ..task import task_cases

# Batch-independent (GroupNorm, no flips), so 2 x 8 and 1 x 16 see the same 16 samples a step
# and must compute the same update. 96 samples: 6 optimizer steps an epoch either way.
# SGD, not AdamW: the claim is about gradients, and SGD moves the weights by lr x gradient, so
# the rounding of another reduction order stays rounding-sized. Adam divides by the root of its
# squared-gradient average: where a gradient is ~0 its rounding sets the sign of a whole
# lr-sized step, and which weights that hits depends on the CPU's kernels.


@pytest.fixture(scope="module")
def ddp(train_script, tmp_path_factory):
    """The runs: one single-process baseline here, then five runs in one torchrun launch."""
    out_dir = tmp_path_factory.mktemp("ddp")
    flags = [*DDP_FLAGS, "--out-dir", str(out_dir)]
    train_script.main([*flags, "--run-name", "single"])
    train_script.main([*flags, *EMA_FLAGS, "--run-name", "single_ema"])
    shutil.copytree(out_dir / "single", out_dir / "from_single")  # to continue under DDP
    per_process = [*flags, "--batch-size", "8"]
    runs = [
        ("ddp", [*per_process, "--run-name", "ddp"]),
        ("ddp_accum", [*flags, "--batch-size", "4", "--accum-steps", "2", "--run-name", "ddp_accum"]),
        ("ddp_stopped", [*per_process, "--max-steps", "3", "--run-name", "ddp_stopped"]),
        ("ddp_resumed", ["--resume", str(out_dir / "ddp_stopped/checkpoints/last.pt"),
                         "--max-steps", "0"]),
        ("ddp_mid_epoch", [*per_process, "--max-steps", "2", "--run-name", "ddp_mid_epoch"]),
        ("ddp_ema", [*per_process, *EMA_FLAGS, "--run-name", "ddp_ema"]),
        ("ddp_from_single", ["--resume", str(out_dir / "from_single/checkpoints/last.pt"),
                             "--epochs", "2"]),
    ]  # fmt: skip
    spec = out_dir / "spec.json"
    report = out_dir / "report.json"
    spec.write_text(json.dumps({"runs": runs, "report": str(report)}))
    launch = torchrun("-m", "tests.distributed_probe", str(spec))
    assert launch.returncode == 0, launch.stderr[-3000:]
    return out_dir, json.loads(report.read_text())


def test_all_ranks_end_with_identical_weights(ddp):
    _, report = ddp
    for name, run in report.items():
        assert run["world_size"] == 2
        first, second = run["fingerprints"]
        assert first == second, name


def test_only_rank_0_writes_one_run_folder_with_one_set_of_events(ddp):
    out_dir, _ = ddp
    started_by_ddp = {"ddp", "ddp_accum", "ddp_stopped", "ddp_mid_epoch", "ddp_ema"}
    folders = {path.name for path in out_dir.iterdir() if path.is_dir()}
    assert folders == started_by_ddp | {"single", "from_single", "single_ema"}
    for name in started_by_ddp:
        starts = 2 if name == "ddp_stopped" else 1  # each start opens one events file
        assert len(list((out_dir / name).glob("events.out.tfevents.*"))) == starts, name
        args = json.loads((out_dir / name / "args.json").read_text())
        assert args["world_size"] == 2
        assert args["effective_batch"] == 16  # 8 x 1 x 2 and 4 x 2 x 2


def test_two_processes_with_half_batches_equal_one_process_with_the_whole_batch(ddp):
    out_dir, _ = ddp
    assert_same_weights(last_checkpoint(out_dir, "single"), last_checkpoint(out_dir, "ddp"))


def test_every_rank_keeps_the_same_ema_and_it_equals_one_processs(ddp):
    out_dir, report = ddp
    first, second = report["ddp_ema"]["ema_fingerprints"]
    assert first == second
    assert report["ddp"]["ema_fingerprints"] is None
    single, ddp_ema = last_checkpoint(out_dir, "single_ema"), last_checkpoint(out_dir, "ddp_ema")
    # The average of weights that agree to rounding agrees to rounding: the same tolerance.
    assert_same_weights({"model": single["ema"]}, {"model": ddp_ema["ema"]})
    assert ddp_ema["ema_updates"] == 6
    kept = list((out_dir / "ddp_ema" / "checkpoints").glob("epoch-*.pt"))
    assert [path.name for path in kept] == [ddp_ema["state"]["kept"][0]["file"]]


def test_accumulation_under_ddp_equals_the_same_effective_batch_without_it(ddp):
    out_dir, _ = ddp
    assert_same_weights(last_checkpoint(out_dir, "single"), last_checkpoint(out_dir, "ddp_accum"))


def test_a_run_stopped_and_resumed_under_ddp_matches_a_straight_one(ddp):
    out_dir, _ = ddp
    straight, resumed = last_checkpoint(out_dir, "ddp"), last_checkpoint(out_dir, "ddp_stopped")
    assert resumed["state"] == straight["state"]
    assert_same_weights(straight, resumed, exact=True)


def test_a_single_process_checkpoint_continues_under_ddp(ddp):
    out_dir, _ = ddp
    state = last_checkpoint(out_dir, "from_single")["state"]
    assert state["epoch"] == 2 and state["world_size"] == 2
    assert state["global_step"] == 6 + 3  # 96 samples / (16 x 2 processes) in the 2nd epoch


def test_a_ddp_checkpoint_continues_in_a_single_process(ddp, train_script, tmp_path):
    out_dir, _ = ddp
    shutil.copytree(out_dir / "ddp", tmp_path / "ddp")  # leave the shared run as it is
    copy = tmp_path / "ddp" / "checkpoints" / "last.pt"
    assert train_script.main(["--resume", str(copy), "--epochs", "2"]) == 0
    state = torch.load(copy, weights_only=True)["state"]
    assert state["epoch"] == 2 and state["world_size"] == 1
    assert state["global_step"] == 6 + 12  # batch 8 in one process: 12 steps an epoch


def test_validation_under_ddp_equals_the_single_process_numbers(ddp, train_script):
    out_dir, report = ddp
    checkpoint = load_checkpoint(out_dir / "ddp" / "checkpoints" / "last.pt")
    model = train_script.task.build_model(checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"])
    data = task.build_data(train_script.parse_args(DDP_FLAGS))
    single = task.evaluate(model, build_loader(data.val, 8, False, 0, 0), torch.device("cpu"))
    sharded = report["ddp"]["validation"]
    assert sharded["samples"] == single["samples"] == len(data.val) == 19  # shards of 10 and 9
    assert set(sharded) == set(single) >= {task.BEST_METRIC, *task_cases.EXACT_METRICS}
    for name in single.keys() - {"samples"}:
        if name in task_cases.EXACT_METRICS:  # counts summed over the ranks: exactly equal
            assert sharded[name] == single[name], name
        else:  # float sums in another order: equal up to rounding
            assert sharded[name] == pytest.approx(single[name], rel=1e-5), name


def test_torchrun_train_py_prints_once_and_writes_one_run(tmp_path):
    flags = [*DDP_FLAGS, "--batch-size", "8", "--out-dir", str(tmp_path), "--run-name", "cli"]
    launch = torchrun("train.py", *flags)
    assert launch.returncode == 0, launch.stderr[-3000:]
    assert launch.stdout.count("Total params") == 1  # rank 1's stdout is silenced
    assert "effective batch: 8 x 1 accumulated x 2 process(es) = 16" in launch.stdout
    assert launch.stdout.count("epoch 1/1  step 6  val loss") == 1
    assert [path.name for path in tmp_path.iterdir()] == ["cli"]


def test_ctrl_c_under_torchrun_stops_every_rank_at_the_same_step_and_saves(tmp_path):
    flags = [*DDP_FLAGS, "--synthetic-size", "4000", "--batch-size", "8", "--log-every", "5",
             "--ckpt-every-steps", "10", "--out-dir", str(tmp_path), "--run-name", "stopped"]  # fmt: skip
    last = tmp_path / "stopped" / "checkpoints" / "last.pt"
    process = subprocess.Popen(
        [*torchrun_command(), "train.py", *flags], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the step-10 checkpoint says training is under way
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: torchrun and both ranks
    stdout, stderr = process.communicate(timeout=300)
    assert "stopped at step" in stdout, stderr[-3000:]
    # Both ranks stopped at one step (a rank still training would have waited forever in
    # DDP's all-reduce) and rank 0 saved it.
    state = torch.load(last, weights_only=True)["state"]
    assert 10 <= state["global_step"] < 250
    assert f"stopped at step {state['global_step']}; continue with: torchrun" in stdout


@pytest.fixture
def one_process_group():
    """A real gloo process group of one, in this process."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_sync_bn_on_the_cpu_is_refused_with_the_fix(one_process_group, train_script):
    model = model_of_this_task(train_script, *task_cases.model_size_flags(4)).model
    with pytest.raises(UserError, match="--sync-bn needs CUDA GPUs; on the CPU use --norm group"):
        devices.wrap_model(model, torch.device("cpu"), sync_batchnorm=True)
    wrapped = devices.wrap_model(model, torch.device("cpu"), sync_batchnorm=False)
    assert isinstance(wrapped, torch.nn.parallel.DistributedDataParallel)
    assert wrapped.module is model  # checkpoints save `model`, never the wrapper


def test_without_torchrun_nothing_is_wrapped_or_reduced(monkeypatch, train_script):
    for name in devices.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    model = model_of_this_task(train_script, *task_cases.model_size_flags(4)).model
    with devices.process_group(torch.device("cpu")):
        assert not devices.is_distributed() and devices.world_size() == 1
        assert devices.wrap_model(model, torch.device("cpu"), sync_batchnorm=True) is model
        assert devices.sum_across_ranks(torch.tensor(3.0)).item() == 3.0


def test_torchrun_on_mps_is_refused_before_joining(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    refused = pytest.raises(UserError, match="torchrun needs --device cuda or cpu")
    with refused, devices.process_group(torch.device("mps")):
        pass
    assert not devices.is_distributed()


def test_more_processes_than_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(
        UserError, match="LOCAL_RANK 3 but the machine has 2 GPU.*--nproc_per_node=2"
    ):
        select_device("auto")
