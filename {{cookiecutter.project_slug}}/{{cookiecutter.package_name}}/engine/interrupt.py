"""Stop a run cleanly on Ctrl-C or SIGTERM (a scheduler, a spot instance going away)."""

import signal
import sys
import threading

import torch

from .distributed import is_distributed, max_across_ranks


class StopRequest:
    """Turns SIGINT and SIGTERM into a request to stop after the current optimizer step.

    The loop checks `requested` at each optimizer step, saves last.pt and exits with the
    conventional 128 + signal number. A second Ctrl-C stops at once (KeyboardInterrupt).
    Outside the main thread (where Python cannot install handlers) it never fires.

    Under torchrun the ranks must stop at the same step, or the ones still training would
    wait forever in DDP's all-reduce: a signal on any rank counts only once agree() has
    shared it with all of them (the loop calls it at log steps).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None  # the signal this process received
        self.agreed_signum: int | None = None  # the one every rank has agreed to stop for
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: the user wants out now
        self.signum = signum
        name = signal.Signals(signum).name
        message = f"{name} received: stopping after this optimizer step (Ctrl-C again: at once)"
        print(f"\n{message}", file=sys.stderr, flush=True)

    def agree(self, device: torch.device) -> None:
        """Under torchrun: stop on every rank if any rank got a signal. Every rank must call
        it at the same step (it is a collective); a no-op with one process."""
        if is_distributed():
            agreed = max_across_ranks(self.signum or 0, device)
            self.agreed_signum = agreed or None

    @property
    def requested(self) -> bool:
        """True once a stop signal has arrived (on any rank, once agreed under torchrun)."""
        return self._effective_signum is not None

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by that signal."""
        return 128 + (self._effective_signum or 0)

    @property
    def _effective_signum(self) -> int | None:
        return self.agreed_signum if is_distributed() else self.signum
