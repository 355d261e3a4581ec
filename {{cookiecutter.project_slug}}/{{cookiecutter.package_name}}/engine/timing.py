"""Where the time goes: waiting for data vs computing, and the compute efficiency.

Compute efficiency = compute time / (data time + compute time), over the steps since the
last report. On the CPU the host clock measures compute directly. On CUDA the host only
queues kernels, so host timers would measure launches: there each step's compute is timed
with a pair of CUDA events, and the events are read only at reporting time (one sync per
report, none per step).
"""

import time

import torch

from .device import synchronize


class StepTimer:
    """Call data_ready() when a batch is on hand, step_done() after its update, report() to read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.use_events = device.type == "cuda"
        self.reset()

    def reset(self) -> None:
        """Start a new measuring window now."""
        self._window_start = self._step_end = time.perf_counter()
        self._data_s = self._host_compute_s = 0.0
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._steps = self._samples = 0

    def data_ready(self) -> None:
        """The batch has arrived: the time since the last step was spent waiting for data."""
        now = time.perf_counter()
        self._data_s += now - self._step_end
        self._compute_start = now
        if self.use_events:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            self._events.append((start, torch.cuda.Event(enable_timing=True)))

    def step_done(self, batch_size: int) -> None:
        """The batch's forward/backward (and update, if any) has been queued or done."""
        if self.use_events:
            self._events[-1][1].record()
        self._step_end = time.perf_counter()
        self._host_compute_s += self._step_end - self._compute_start
        self._steps += 1
        self._samples += batch_size

    def report(self) -> dict[str, float]:
        """Per-step data and compute ms, compute efficiency and samples/s; starts a new window."""
        synchronize(self.device)  # the wall clock must include the queued work
        wall_s = max(time.perf_counter() - self._window_start, 1e-9)
        if self.use_events:
            compute_s = sum(start.elapsed_time(end) for start, end in self._events) / 1000
            data_s = max(wall_s - compute_s, 0.0)  # the device sat idle, waiting for input
        else:
            compute_s, data_s = self._host_compute_s, self._data_s
        steps = max(self._steps, 1)
        result = {
            "data_ms": 1000 * data_s / steps,
            "compute_ms": 1000 * compute_s / steps,
            "compute_efficiency": compute_s / max(compute_s + data_s, 1e-9),
            "samples_per_s": self._samples / wall_s,
        }
        self.reset()
        return result
