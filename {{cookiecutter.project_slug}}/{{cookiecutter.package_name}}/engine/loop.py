"""What the training loop runs with: batches loaded ahead in a thread, step timing (data vs
compute), and a clean stop on Ctrl-C or SIGTERM."""

import contextlib
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sized

import torch
import torch.distributed as dist
from prefetch_generator import BackgroundGenerator
from torch import nn

from .devices import launched_by_torchrun, max_across_ranks, synchronize, world_size


class BackgroundLoader(BackgroundGenerator):
    """BackgroundGenerator over a DataLoader that can be closed when the loop breaks early.

    prefetch_generator already hands an exception raised while loading to the consumer at
    its next `next()`; on top of that, close() stops the thread and releases the DataLoader
    iterator (and its workers) instead of leaving them blocked on a full queue.
    """

    def __init__(self, iterable: Iterable, max_prefetch: int = 2) -> None:
        self._closing = threading.Event()
        super().__init__(iter(iterable), max_prefetch=max_prefetch)

    def run(self) -> None:
        try:
            for item in self.generator:
                if self._closing.is_set():
                    break
                self.queue.put((True, item))
        except Exception as error:
            self.queue.put((False, error))
        finally:
            self.queue.put((False, StopIteration))

    def close(self) -> None:
        """Stop the background thread and drop the iterator; safe to call more than once."""
        self._closing.set()
        while self.is_alive():
            # Make room, so that a put() blocked on a full queue returns and sees the flag.
            with contextlib.suppress(queue.Empty):
                self.queue.get(timeout=0.05)
        self.generator = None

    def __enter__(self) -> "BackgroundLoader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


class EvaluationStopped(Exception):  # noqa: N818 (a stop, not an error)
    """A stop request ended an evaluation part-way: metrics of part of the split are no metrics."""


class StopRequest:
    """Turns SIGINT, SIGTERM and SIGUSR1 into a request to stop after the current optimizer
    step, or validation batch.

    The loop asks at each optimizer step, saves last.pt and exits with the conventional
    128 + signal number (130, 143, 138), which a requeue script can test. SLURM sends SIGTERM
    at preemption and, with --signal=USR1@SECONDS, SIGUSR1 ahead of the time limit. A second
    Ctrl-C stops at once (KeyboardInterrupt). Outside the main thread (where Python cannot
    install handlers) it never fires. A validation asks at each batch (evaluate_unless_stopped):
    a whole pass over a big split can outlast a scheduler's grace period.

    Under torchrun the ranks must stop at the same step, or the ones still training would
    wait forever in DDP's all-reduce: poll(), called by every rank after each optimizer step,
    shares each rank's signal with an asynchronous all-reduce on a CPU (gloo) group of its
    own, read at the next step. A signal on any rank so stops every rank one step later, and
    the GPUs never wait for it. A process that torchrun started also stops, as if sent SIGHUP
    (exit code 129), once its parent, the torchrun agent, is gone (killed with SIGKILL, say):
    nothing would ever stop or restart the workers otherwise, and they would train on unseen.
    """

    SIGNALS = tuple(
        getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name)
    )
    WHEN = "after this optimizer step or validation batch"

    def __init__(self) -> None:
        self.signum: int | None = None  # the signal this process received
        self.agreed_signum: int | None = None  # the one every rank has agreed to stop for
        self.received_at: float | None = None  # when it came (time.perf_counter())
        self._previous: dict[int, object] = {}
        self._group: dist.ProcessGroup | None = None
        self._pending: tuple[torch.Tensor, dist.Work] | None = None  # the all-reduce in flight
        self._launcher: int | None = None  # under torchrun: the agent's process id

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        if launched_by_torchrun():
            self._launcher = os.getppid()
        if world_size() > 1:  # every rank creates it, at the same point, as new_group needs
            self._group = dist.new_group(backend="gloo")
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._pending is not None and exc_type is None:
            self._pending[1].wait()  # every rank started it: finish it before the group goes
        self._pending = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user wants out now
        self.signum, self.received_at = signum, time.perf_counter()
        name = signal.Signals(signum).name
        self._say(f"{name} received: stopping {self.WHEN} (Ctrl-C again: at once)")

    @staticmethod
    def _say(message: str) -> None:
        print(f"\n{message}", file=sys.stderr, flush=True)

    def _check_launcher(self) -> None:
        """Under torchrun: request a stop once the agent that started this process is gone
        (the process then has another parent, as the orphan of a dead one)."""
        if self._launcher is None or self.signum is not None or os.getppid() == self._launcher:
            return
        # SIGHUP: the signal of "the controlling process died" (where there is one)
        self.signum = getattr(signal, "SIGHUP", signal.SIGTERM)
        self.received_at = time.perf_counter()
        self._say(f"the torchrun agent (process {self._launcher}) is gone: stopping {self.WHEN}")

    def poll(self) -> None:
        """Under torchrun: take in the signals the ranks shared at the previous step, and share
        this rank's (and whether its agent is gone). Every rank must call it at the same steps
        (a collective); with one process it only looks for the agent."""
        self._check_launcher()
        if self._group is None:
            return
        if self._pending is not None:
            flag, work = self._pending
            work.wait()  # long done: it was started a whole step ago
            self.agreed_signum = self.agreed_signum or int(flag.item()) or None
        flag = torch.tensor([self.signum or 0])
        work = dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group, async_op=True)
        self._pending = (flag, work)

    def evaluate_unless_stopped(
        self, evaluate: Callable[..., dict], model: nn.Module, loader: Sized, device: torch.device
    ) -> dict | None:
        """`evaluate(model, loader, device, on_batch)`, ended at the first batch after a stop
        request: then None.

        Under torchrun the ranks agree on it as at the training steps, with a poll() at each of
        the batches that every rank's shard has (the shards may differ by one batch); then
        every rank leaves the evaluation at the same batch, before its closing all-reduce.
        """
        shared_batches, batches = self._fewest_across_ranks(len(loader)), 0

        def stop_if_requested(*batch_outputs: torch.Tensor) -> None:
            nonlocal batches
            batches += 1
            if batches <= shared_batches:
                self.poll()
            if self.requested:
                raise EvaluationStopped

        try:
            return evaluate(model, loader, device, stop_if_requested)
        except EvaluationStopped:
            return None

    def _fewest_across_ranks(self, count: int) -> int:
        if self._group is None:
            return count
        counts = torch.tensor([count])
        dist.all_reduce(counts, op=dist.ReduceOp.MIN, group=self._group)
        return int(counts.item())

    @property
    def requested(self) -> bool:
        """True once a stop signal has arrived (on any rank, once agreed under torchrun)."""
        return self._effective_signum is not None

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + (self._effective_signum or 0)

    @property
    def name(self) -> str:
        """The signal's name, e.g. SIGTERM ("" before one came)."""
        signum = self._effective_signum
        return signal.Signals(signum).name if signum else ""

    @property
    def _effective_signum(self) -> int | None:
        return self.agreed_signum if self._group is not None else self.signum
