"""Where the time goes: waiting for data vs computing, and the compute efficiency.

Compute efficiency = compute time / (data + compute) time over a window of steps; the
window's wall time is read after the device has finished its queued work (a log step, which
reads the loss anyway), so samples/s is true and nothing synchronises on the steps between.

On the CPU the host's timers are the truth: data time is the wait for the next batch. A GPU
runs behind the host, so host timers would only see kernel launches (and count as "waiting
for data" a wait the GPU spent busy with earlier steps). On CUDA every step therefore records
two events on the stream, after the batch's copy and after the step's kernels; the GPU's time
between each pair is compute, the rest of the window is the GPU starved for data. MPS keeps
the host timers (one synchronise per window still makes its wall time and samples/s true).

Under torchrun a process whose loader is slow holds the others up in the gradient all-reduce,
where their GPUs look busy; so every process reports the data time of the most starved one.
"""

import time

import torch

from .device import synchronize
from .distributed import max_across_ranks


class StepTimer:
    """Call data_ready() when a batch is on hand, step_done() after its step, report() to read."""

    # Below this efficiency for this many reports in a row, the data pipeline is the bottleneck.
    SLOW_DATA_EFFICIENCY, SLOW_DATA_REPORTS = 0.8, 3

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.uses_events = device.type == "cuda"
        self._slow_reports, self._hinted = 0, False
        self.reset()

    def slow_data_hint(self, efficiency: float, num_workers: int) -> str | None:
        """Once per run, when efficiency has stayed low for a while: what to do about it."""
        self._slow_reports = self._slow_reports + 1 if efficiency < self.SLOW_DATA_EFFICIENCY else 0
        if self._hinted or self._slow_reports < self.SLOW_DATA_REPORTS:
            return None
        self._hinted = True
        return (
            f"note: compute efficiency has stayed below {self.SLOW_DATA_EFFICIENCY:.0%}: the "
            f"model waits for data; raise --num-workers (now {num_workers}) if CPU cores are free"
        )

    def reset(self) -> None:
        """Start a new measuring window now."""
        self._window_start = self._step_end = time.perf_counter()
        self._data_s = 0.0
        self._spans: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._batches = self._samples = 0

    def data_ready(self) -> None:
        """The batch has arrived (its copy to the device is queued): the step starts."""
        if self.uses_events:
            self._span_start = self._record_event()
        else:
            self._data_s += time.perf_counter() - self._step_end

    def step_done(self, batch_size: int) -> None:
        """The batch's forward/backward (and update, if any) has been queued or done."""
        if self.uses_events:
            self._spans.append((self._span_start, self._record_event()))
        else:
            self._step_end = time.perf_counter()
        self._batches += 1
        self._samples += batch_size

    def report(self) -> dict[str, float]:
        """Per-batch data and compute ms, compute efficiency and samples/s; starts a new window."""
        synchronize(self.device)  # the window's wall time must include the queued device work
        wall_s = max(time.perf_counter() - self._window_start, 1e-9)
        own_data_s = wall_s - min(self._compute_seconds(wall_s), wall_s)
        data_s = min(max_across_ranks(own_data_s, self.device), wall_s)
        compute_s = wall_s - data_s
        batches = max(self._batches, 1)
        result = {
            "data_ms": 1000 * data_s / batches,
            "compute_ms": 1000 * compute_s / batches,
            "compute_efficiency": compute_s / wall_s,
            "samples_per_s": self._samples / wall_s,
        }
        self.reset()
        return result

    def _compute_seconds(self, wall_s: float) -> float:
        """The window's compute time: the GPU's busy spans, or the wall time less data waits."""
        if self.uses_events:  # the events are complete: report() synchronised first
            return sum(start.elapsed_time(end) for start, end in self._spans) / 1000
        return wall_s - self._data_s

    def _record_event(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))  # behind the work queued so far
        return event
