"""Elastic and preemptible runs under torchrun on the CPU (gloo), counted sample by sample.

tests/sample_recorder.py writes down which samples each process trained on, committed at each
checkpoint; these tests add the records up over every start of a run and check that each
sample of an epoch was trained on exactly once, whatever the process counts and however the
run was stopped.
"""

import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from ..helpers import PROJECT_ROOT, TINY_RUN_FLAGS, scalar_steps, torchrun, torchrun_command
from ..sample_recorder import committed_samples, read_attempts, recording

# 96 samples in batches of 4 divide evenly among 1, 2 and 3 processes, and so do the samples
# left after the stops below: no tail is dropped, so every sample of an epoch is trained on,
# and must be counted exactly once. Without loader workers and the prefetch thread a fetched
# batch is a trained batch, which is what the recorder counts.
SAMPLES, BATCH = 96, 4
RECORDED_FLAGS = [*TINY_RUN_FLAGS, "--synthetic-size", str(SAMPLES), "--batch-size", str(BATCH),
                  "--num-workers", "0", "--no-prefetch-thread"]  # fmt: skip


def every_sample_once(*epochs: int) -> Counter:
    """Each (epoch, index) of `epochs` once: what the records of a finished run add up to."""
    return Counter((epoch, index) for epoch in epochs for index in range(SAMPLES))


def last_state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]


def at_an_epoch_boundary(state: dict) -> bool:
    return state["step_in_epoch"] == 0 and state["samples_in_epoch"] == 0


def resume_flags(run_dir: Path) -> list[str]:
    """Continue the run in `run_dir` from its last.pt to the end (no --max-steps)."""
    return ["--resume", str(run_dir / "checkpoints" / "last.pt"), "--max-steps", "0"]


@pytest.fixture(scope="module")
def resharded(train_script, tmp_path_factory):
    """Runs of one epoch stopped part-way (--max-steps), then finished by another process count.

    one: 1 process stops after 4 steps (16 samples); one_then_two: 2 processes finish it (80).
    two: 2 processes stop after 3 steps (24 samples); two_then_one: 1 process finishes it (72),
    two_then_three: 3 processes finish a copy of it.
    Two torchrun launches: the 2-process runs in one (tests/distributed_probe.py), then 3.
    """
    out = tmp_path_factory.mktemp("resharded")
    runs, records, outputs = out / "runs", out / "records", {}
    flags = [*RECORDED_FLAGS, "--epochs", "1", "--out-dir", str(runs)]
    with recording(records / "one"):
        assert train_script.main([*flags, "--max-steps", "4", "--run-name", "one"]) == 0
    spec = {"runs": [["two", [*flags, "--max-steps", "3", "--run-name", "two"], str(records / "two")],
                     ["one_then_two", resume_flags(runs / "one"), str(records / "one_then_two")]],
            "report": str(out / "report.json")}  # fmt: skip
    (out / "spec.json").write_text(json.dumps(spec))
    launch = torchrun("-m", "tests.distributed_probe", str(out / "spec.json"))
    assert launch.returncode == 0, launch.stderr[-3000:]
    outputs["one_then_two"] = launch.stdout
    for copy in ("two_then_one", "two_then_three"):
        shutil.copytree(runs / "two", runs / copy)
    with contextlib.redirect_stdout(io.StringIO()) as stdout, recording(records / "two_then_one"):
        assert train_script.main(resume_flags(runs / "two_then_one")) == 0
    outputs["two_then_one"] = stdout.getvalue()
    recorder = ["-m", "tests.sample_recorder", str(records / "two_then_three")]
    launch = torchrun(*recorder, *resume_flags(runs / "two_then_three"), processes=3)
    assert launch.returncode == 0, launch.stderr[-3000:]
    outputs["two_then_three"] = launch.stdout
    return runs, records, outputs


class Resharded(NamedTuple):
    """A run stopped part-way through its epoch and the run that finished it."""

    stopped: str  # the records of the stopped run
    finished: str  # the records of the run that finished it
    run: str  # the run folder it finished in
    before: int  # processes that trained before the stop
    after: int  # processes that finished the epoch
    steps_before: int  # optimizer steps before the stop


RESHARDED = [
    Resharded("two", "two_then_one", "two_then_one", before=2, after=1, steps_before=3),
    Resharded("two", "two_then_three", "two_then_three", before=2, after=3, steps_before=3),
    Resharded("one", "one_then_two", "one", before=1, after=2, steps_before=4),
]


@pytest.mark.parametrize("case", RESHARDED, ids=lambda case: f"{case.before}-then-{case.after}")
def test_a_mid_epoch_checkpoint_is_finished_by_another_process_count_each_sample_once(
    resharded, case
):
    runs, records, outputs = resharded
    consumed = committed_samples(records / case.stopped)
    rest = committed_samples(records / case.finished)
    assert len(consumed) == case.steps_before * BATCH * case.before
    assert not set(consumed) & set(rest)  # none of the samples trained on before the stop again
    assert Counter(consumed + rest) == every_sample_once(0)  # the rest each once, all of them
    attempts = read_attempts(records / case.finished)
    assert [attempt.world_size for attempt in attempts] == [case.after]
    state = last_state(runs / case.run)
    assert state["epoch"] == 1 and at_an_epoch_boundary(state)
    assert state["world_size"] == case.after
    left = SAMPLES - len(consumed)
    assert state["global_step"] == case.steps_before + left // (BATCH * case.after)
    checkpoint = runs / case.run / "checkpoints" / "last.pt"
    note = f"note: {checkpoint} was saved by {case.before} process(es) and this run has "
    assert f"{note}{case.after}" in outputs[case.finished]


def test_sigusr1_stops_python_train_py_at_the_next_step_with_exit_code_138(tmp_path):
    # SLURM's --signal=USR1@SECONDS, sent once the first checkpoint (step 2) says training is
    # under way; 50 epochs (1,200 steps) leave it no time to finish first.
    flags = [*RECORDED_FLAGS, "--epochs", "50", "--ckpt-every-steps", "2", "--out-dir",
             str(tmp_path), "--run-name", "usr1"]  # fmt: skip
    last = tmp_path / "usr1" / "checkpoints" / "last.pt"
    process = subprocess.Popen(
        [sys.executable, "train.py", *flags], cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGUSR1)
    stdout, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signal.SIGUSR1 == 138, stderr[-3000:]
    stopped_at = int(re.search(r"stopped at step (\d+); continue with", stdout).group(1))
    assert last_state(tmp_path / "usr1")["global_step"] == stopped_at >= 2
    saved = r"SIGUSR1: last\.pt \(.+ MB\) saved in \d+\.\d\d s, \d+\.\d\d s after the signal"
    assert re.search(saved, stdout), stdout[-2000:]


def test_sigusr1_on_one_process_stops_every_process_at_the_same_step_and_saves(tmp_path):
    records, runs = tmp_path / "records", tmp_path / "runs"
    flags = [*RECORDED_FLAGS, "--epochs", "1", "--log-every", "100", "--out-dir", str(runs),
             "--run-name", "usr1"]  # fmt: skip
    # Rank 1 alone gets SIGUSR1 while it fetches its 5th batch, as if sent straight to it
    # (torchrun forwards only the signals it handles itself, to every worker). No log step
    # comes before the epoch's end (step 12): the stop is agreed at every optimizer step.
    signal_rank_1 = {"SAMPLE_RECORDER_SIGNAL_AT": "1:5:SIGUSR1"}
    launch = torchrun("-m", "tests.sample_recorder", str(records), *flags, env=signal_rank_1)
    assert "SIGUSR1 received" in launch.stderr, launch.stderr[-3000:]
    # Every rank shares what it saw after each optimizer step and reads the others' one step
    # later: the signal of step 5 stops both ranks after step 6.
    (attempt,) = read_attempts(records)
    assert sorted((end["exit_code"], end["global_step"]) for end in attempt.exits) == [(138, 6)] * 2
    assert {commit["global_step"] for commit in attempt.commits} == {6}  # one checkpoint each
    state = last_state(runs / "usr1")
    assert state["global_step"] == 6 and state["samples_in_epoch"] == 6 * 2 * BATCH
    assert len(set(committed_samples(records))) == 6 * 2 * BATCH
    assert "stopped at step 6; continue with: torchrun" in launch.stdout
    # How long the save took (rank 0 saw no signal itself, so no time since it).
    assert re.search(r"SIGUSR1: last\.pt \(.+ MB\) saved in \d+\.\d\d s; give", launch.stdout)


def test_a_stop_agreed_during_validation_ends_it_on_every_process_and_saves(tmp_path):
    records, runs = tmp_path / "records", tmp_path / "runs"
    flags = [*RECORDED_FLAGS, "--epochs", "2", "--log-every", "100", "--out-dir", str(runs),
             "--run-name", "usr1"]  # fmt: skip
    # Rank 1 gets SIGUSR1 while it fetches the epoch's last batch (step 12): the ranks learn
    # of it at the first validation batch (3 a rank), and leave the validation together.
    signal_rank_1 = {"SAMPLE_RECORDER_SIGNAL_AT": "1:12:SIGUSR1"}
    launch = torchrun("-m", "tests.sample_recorder", str(records), *flags, env=signal_rank_1)
    (attempt,) = read_attempts(records)
    ends = sorted((end["exit_code"], end["global_step"]) for end in attempt.exits)
    assert ends == [(138, 12)] * 2, launch.stderr[-3000:]
    state = last_state(runs / "usr1")  # epoch 0's training, not yet validated
    assert (state["epoch"], state["global_step"], state["samples_in_epoch"]) == (0, 12, SAMPLES)
    assert not (runs / "usr1" / "checkpoints" / "best.pt").exists()
    assert scalar_steps(runs / "usr1", "val/loss") == []


def test_workers_whose_torchrun_agent_is_killed_stop_together_and_save(tmp_path):
    records, runs, log = tmp_path / "records", tmp_path / "runs", tmp_path / "torchrun.log"
    # 500 epochs (6,000 steps) outlast the test's wait: orphans that train on never finish.
    flags = [*RECORDED_FLAGS, "--epochs", "500", "--ckpt-every-steps", "2", "--log-every", "100",
             "--out-dir", str(runs), "--run-name", "orphans"]  # fmt: skip
    with open(log, "w") as output:
        agent = subprocess.Popen(
            [*torchrun_command(2), "-m", "tests.sample_recorder", str(records), *flags],
            cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
    try:
        wait_for(lambda: list(records.glob("commit-*")), [agent], [log])  # training under way
        # The agent alone: torchrun starts each worker in a session of its own.
        os.kill(agent.pid, signal.SIGKILL)
        agent.wait()
        deadline = time.monotonic() + 120
        while len(list(records.glob("exit-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        kill_all([agent], records)
    (attempt,) = read_attempts(records)
    ends = [(end["exit_code"], end["global_step"]) for end in attempt.exits]
    assert len(ends) == 2 and len(set(ends)) == 1, log.read_text()[-3000:]  # the same step
    exit_code, stopped_at = ends[0]
    assert exit_code == 128 + signal.SIGHUP and stopped_at < 6000
    assert last_state(runs / "orphans")["global_step"] == stopped_at
    assert "the torchrun agent (process" in log.read_text()


# Elastic torchrun on this machine: --nnodes 1:2 agents meet in a c10d rendezvous. A round
# closes when both agents are in, or last_call_timeout seconds after the first (default 30 s).
# That is how long the survivor waits before it goes on alone, and how late the second agent
# may come to the first round: its own start and its retries to reach the host's store take a
# few seconds on a busy machine. An agent silent for keep_alive_interval x keep_alive_max_attempt
# seconds counts as gone (default 5 s x 3). An agent that joins a later round (scale-up) hangs
# with torch's shared TCP store (the host, rank 0 again, never publishes the new round's
# MASTER_ADDR): TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1, as the README says.
RENDEZVOUS = "keep_alive_interval=1,keep_alive_max_attempt=3,last_call_timeout=10,join_timeout=300"
NO_SHARED_STORE = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
ELASTIC_DEADLINE = 400  # seconds for the whole run: generous, for a loaded machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_agent(port: int, is_host: bool, log: Path, command: list[str], **env: str):
    """One elastic torchrun agent with one worker, in a process group of its own."""
    agent = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1:2", "--nproc-per-node", "1",
        "--max-restarts", "3", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}",
        "--rdzv-id", "elastic-test", "--rdzv-conf", f"is_host={int(is_host)},{RENDEZVOUS}",
    ]  # fmt: skip
    with open(log, "w") as output:  # a file, not a pipe nobody reads while it runs
        return subprocess.Popen(
            [*agent, *command], cwd=PROJECT_ROOT, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", **NO_SHARED_STORE, **env},
        )  # fmt: skip


def wait_for(found, agents: list[subprocess.Popen], logs: list[Path]):
    """Poll `found()` until it returns something, while every agent still runs."""
    deadline = time.monotonic() + ELASTIC_DEADLINE
    while not (result := found()):
        running = all(agent.poll() is None for agent in agents)
        if not running or time.monotonic() > deadline:
            pytest.fail("\n".join(log.read_text()[-3000:] for log in logs))
        time.sleep(0.05)
    return result


def kill_all(agents: list[subprocess.Popen], records: Path) -> None:
    """SIGKILL what the test started and is still alive: the agents and their workers (torchrun
    starts each worker in a session of its own, which killing its agent leaves running)."""
    for agent in agents:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()
    for attempt in read_attempts(records):
        for pid in (start["pid"] for start in attempt.starts if still_a_worker(start["pid"])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def still_a_worker(pid: int) -> bool:
    """Whether process `pid` is still a recorded worker, not another that took its number
    (Linux's /proc tells; elsewhere a worker left by a failed test is not looked for)."""
    try:
        return b"tests.sample_recorder" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_an_elastic_run_that_loses_a_process_then_gains_one_trains_each_sample_once(tmp_path):
    records, runs = tmp_path / "records", tmp_path / "runs"
    records.mkdir()
    # Two epochs: 12 steps each with 2 processes, 24 with one. A checkpoint every 4 steps.
    flags = [*RECORDED_FLAGS, "--epochs", "2", "--ckpt-every-steps", "4", "--log-every", "1",
             "--out-dir", str(runs), "--run-name", "job", "--resume", "auto"]  # fmt: skip
    command = ["-m", "tests.sample_recorder", str(records), *flags]
    logs = [tmp_path / "host.log", tmp_path / "lost.log", tmp_path / "joined.log"]
    port, started = free_port(), time.time()  # wall clock: compared with the records' times
    # The host keeps the rendezvous' store, so it must be the agent that survives. The other
    # one's worker stops at its 6th batch: after step 4's checkpoint and step 5, which the kill
    # loses (and the survivor trains again). The survivor's worker, alone, pauses at its 20th
    # batch (the 4th of epoch 1) until the third agent's arrival makes torchrun stop it.
    host = start_agent(port, True, logs[0], command, SAMPLE_RECORDER_PAUSE_AT="20")
    lost = start_agent(port, False, logs[1], command, SAMPLE_RECORDER_HOLD_AT="6")
    agents = [host, lost]
    try:
        held = wait_for(lambda: list(records.glob("held-*")), agents, logs)
        killed = time.time()
        os.killpg(lost.pid, signal.SIGKILL)  # the agent first: it would restart its worker
        os.kill(int(held[0].name.split("-")[1]), signal.SIGKILL)
        wait_for(lambda: list(records.glob("paused-*")), [host], logs)
        joined_at = time.time()
        agents.append(start_agent(port, False, logs[2], command))
        assert host.wait(timeout=ELASTIC_DEADLINE) == 0, logs[0].read_text()[-3000:]
        assert agents[2].wait(timeout=ELASTIC_DEADLINE) == 0, logs[2].read_text()[-3000:]
        finished = time.time()
    finally:
        kill_all(agents, records)
    attempts = read_attempts(records)
    assert [attempt.world_size for attempt in attempts] == [2, 1, 2]
    first, alone, joined = attempts
    # The survivor went on from the last checkpoint written before the kill ...
    assert alone.start_step == max(commit["global_step"] for commit in first.commits) == 4
    # ... and, stopped by torchrun (SIGTERM) to let the new agent in, saved where it stopped
    # (after the paused batch's step: alone, it needs no other rank's word), from which both
    # went on.
    (alone_end,) = alone.exits
    assert alone_end["exit_code"] == 128 + signal.SIGTERM
    assert joined.start_step == alone_end["global_step"] == alone.commits[-1]["global_step"] == 24
    assert Counter(committed_samples(records)) == every_sample_once(0, 1)
    state = last_state(runs / "job")
    assert state["epoch"] == 2 and at_an_epoch_boundary(state) and state["world_size"] == 2
    # Alone: the rest of epoch 0 (64 samples, 16 steps), then epoch 1 from step 20 until the
    # stop; together: the rest of epoch 1, 8 samples a step.
    left_together = SAMPLES - (alone_end["global_step"] - 20) * BATCH
    assert state["global_step"] == alone_end["global_step"] + left_together // (2 * BATCH)
    assert [path.name for path in runs.iterdir()] == ["job"]
    assert not list((runs / "job" / "checkpoints").glob(".*.tmp"))
    # Each start purged the steps its checkpoint did not keep: every step once, in order.
    assert scalar_steps(runs / "job", "train/loss") == list(range(1, state["global_step"] + 1))
    # The phases (shown with pytest -s): the first checkpoint, the kill, the restart alone,
    # the third agent's start, the restart together, the end.
    first_commit = min(path.stat().st_mtime for path in records.glob("commit-*"))
    restarts = [(records / f"start-{attempt.starts[0]['attempt']}-rank0.json").stat().st_mtime
                for attempt in (alone, joined)]  # fmt: skip
    print(f"\nelastic run: first checkpoint {first_commit - started:.1f} s, kill "
          f"{killed - started:.1f} s, alone {restarts[0] - started:.1f} s, third agent "
          f"{joined_at - started:.1f} s, together {restarts[1] - started:.1f} s, finished "
          f"{finished - started:.1f} s")  # fmt: skip
