"""Compute efficiency and samples/s: true on the CPU and on a GPU that runs behind the host.

A simulated clock and stream make the timelines exact: the host waits for data and queues
kernels; the GPU runs them in order, starting when both it and the host are ready.
"""

import types

import pytest
import torch

from {{ cookiecutter.package_name }}.engine import loop
from {{ cookiecutter.package_name }}.engine.loop import StepTimer

BATCH = 8
STEPS = 10


class SimulatedEvent:
    def __init__(self, at_s: float) -> None:
        self.at_s = at_s

    def elapsed_time(self, end: "SimulatedEvent") -> float:
        return 1000 * (end.at_s - self.at_s)


class SimulatedMachine:
    """A host clock, and a GPU stream that finishes its queued work at `stream_free_s`."""

    def __init__(self) -> None:
        self.host_s = self.stream_free_s = 0.0

    def host_work(self, seconds: float) -> None:
        self.host_s += seconds

    def queue_kernels(self, seconds: float) -> None:
        self.stream_free_s = max(self.stream_free_s, self.host_s) + seconds

    def record_event(self) -> SimulatedEvent:
        event = SimulatedEvent(max(self.stream_free_s, self.host_s))
        self.stream_free_s = event.at_s
        return event

    def synchronize(self, device: torch.device) -> None:
        self.host_s = max(self.host_s, self.stream_free_s)


@pytest.fixture
def machine(monkeypatch):
    simulated = SimulatedMachine()
    clock = types.SimpleNamespace(perf_counter=lambda: simulated.host_s)
    monkeypatch.setattr(loop, "time", clock)
    monkeypatch.setattr(loop, "synchronize", simulated.synchronize)
    monkeypatch.setattr(StepTimer, "_record_event", staticmethod(simulated.record_event))
    return simulated


def run_window(machine, timer, data_s, launch_s, gpu_s):
    """STEPS steps: wait for data, then launch kernels (run on the host when gpu_s is 0)."""
    for _ in range(STEPS):
        machine.host_work(data_s)
        timer.data_ready()
        machine.host_work(launch_s)
        if gpu_s:
            machine.queue_kernels(gpu_s)
        timer.step_done(BATCH)
    return timer.report()


def test_cpu_efficiency_is_compute_over_data_plus_compute(machine):
    report = run_window(machine, StepTimer(torch.device("cpu")), 0.030, 0.010, 0)
    assert report["compute_efficiency"] == pytest.approx(0.25)
    assert report["data_ms"] == pytest.approx(30) and report["compute_ms"] == pytest.approx(10)
    assert report["samples_per_s"] == pytest.approx(STEPS * BATCH / 0.4)


def test_gpu_busy_behind_the_host_counts_as_compute_not_data_wait(machine):
    # The host waits 10 ms a batch, but the GPU needs 30 ms a step: the loader keeps up, the
    # GPU never idles after the first batch. Host timers would call this 10/11 data wait.
    report = run_window(machine, StepTimer(torch.device("cuda")), 0.010, 0.001, 0.030)
    wall_s = 0.010 + 0.001 + STEPS * 0.030  # first wait, first launch, then the GPU's work
    assert report["compute_efficiency"] == pytest.approx((wall_s - 0.010) / wall_s)
    assert report["samples_per_s"] == pytest.approx(STEPS * BATCH / wall_s)


def test_gpu_starved_by_the_loader_reports_the_idle_time_as_data(machine):
    # 30 ms a batch from the loader, 10 ms of GPU work: the GPU idles ~2/3 of the time.
    report = run_window(machine, StepTimer(torch.device("cuda")), 0.030, 0.001, 0.010)
    wall_s = STEPS * 0.031 + 0.010  # the host's steps, then the last step's kernels
    assert report["compute_efficiency"] == pytest.approx(STEPS * 0.011 / wall_s)
    assert report["compute_efficiency"] < 0.4


def test_a_new_window_starts_after_each_report(machine):
    timer = StepTimer(torch.device("cuda"))
    run_window(machine, timer, 0.0, 0.001, 0.030)  # a GPU-bound window first
    report = run_window(machine, timer, 0.030, 0.001, 0.010)  # then a starved one
    wall_s = STEPS * 0.031 + 0.010
    assert report["compute_efficiency"] == pytest.approx(STEPS * 0.011 / wall_s)
    assert report["samples_per_s"] == pytest.approx(STEPS * BATCH / wall_s)


def test_under_torchrun_the_most_starved_process_sets_the_data_time(machine, monkeypatch):
    # This GPU never waits, but another process waited 0.2 s for its loader (and so this one
    # spent that time in the gradient all-reduce, which looks like compute here).
    monkeypatch.setattr(loop, "max_across_ranks", lambda value, device: max(value, 0.2))
    report = run_window(machine, StepTimer(torch.device("cuda")), 0.0, 0.001, 0.030)
    wall_s = 0.001 + STEPS * 0.030
    assert report["compute_efficiency"] == pytest.approx((wall_s - 0.2) / wall_s)
    assert report["data_ms"] == pytest.approx(1000 * 0.2 / STEPS)


def test_slow_data_hint_comes_once_after_several_low_reports_in_a_row():
    timer = StepTimer(torch.device("cpu"))
    low, high = 0.5, 0.95
    assert [timer.slow_data_hint(value, 2) for value in (low, low, high, low, low)] == [None] * 5
    hint = timer.slow_data_hint(low, 2)
    assert "raise --num-workers (now 2)" in hint
    assert [timer.slow_data_hint(low, 2) for _ in range(5)] == [None] * 5
