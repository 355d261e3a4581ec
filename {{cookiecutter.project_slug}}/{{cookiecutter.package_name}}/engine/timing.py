"""Where the time goes: waiting for data vs computing, and the compute efficiency.

Data time is the host's wait for the next batch (the loader's cost that the step did not
hide). Compute time is the rest of the wall time. Compute efficiency = compute / (data +
compute). CUDA and MPS run asynchronously, so per-step host timers would only see kernel
launches; instead the device is synchronised once per report (a log step, which reads the
loss anyway), so the wall time of the window includes all the queued work and nothing is
synchronised on the steps in between.
"""

import time

import torch

from .device import synchronize


class StepTimer:
    """Call data_ready() when a batch is on hand, step_done() after its step, report() to read."""

    # Below this efficiency for this many reports in a row, the data pipeline is the bottleneck.
    SLOW_DATA_EFFICIENCY, SLOW_DATA_REPORTS = 0.8, 3

    def __init__(self, device: torch.device) -> None:
        self.device = device
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
        self._batches = self._samples = 0

    def data_ready(self) -> None:
        """The batch has arrived: the time since the previous step ended was spent waiting."""
        self._data_s += time.perf_counter() - self._step_end

    def step_done(self, batch_size: int) -> None:
        """The batch's forward/backward (and update, if any) has been queued or done."""
        self._step_end = time.perf_counter()
        self._batches += 1
        self._samples += batch_size

    def report(self) -> dict[str, float]:
        """Per-batch data and compute ms, compute efficiency and samples/s; starts a new window."""
        synchronize(self.device)  # the window's wall time must include the queued device work
        wall_s = max(time.perf_counter() - self._window_start, 1e-9)
        data_s = min(self._data_s, wall_s)
        batches = max(self._batches, 1)
        result = {
            "data_ms": 1000 * data_s / batches,
            "compute_ms": 1000 * (wall_s - data_s) / batches,
            "compute_efficiency": (wall_s - data_s) / wall_s,
            "samples_per_s": self._samples / wall_s,
        }
        self.reset()
        return result
