"""Which training samples each process trained on, written down at each checkpoint.

    python -m tests.sample_recorder RECORD_DIR TRAIN_FLAGS...
    torchrun ... -m tests.sample_recorder RECORD_DIR TRAIN_FLAGS...

runs train.py (its main() through run_cli, as the script ends) with three places watched:
the training data set's batch fetch (EpochSeeded.__getitems__, given the batch's (epoch,
index) keys; with --num-workers 0 and --no-prefetch-thread a fetched batch is a trained
batch), restore_training (each start of the run, an attempt, notes where it starts from), and
RunCheckpoints.save_last / save_epoch, which every rank calls at the same step. There, before
rank 0 writes the checkpoint, every rank commits what it fetched since its last commit to a
file of its own, and the ranks meet at a barrier: a checkpoint is written only once every
rank's record of it is. A process killed with SIGKILL so loses, like the training, exactly
what came after the last checkpoint. A commit whose checkpoint was never written (rank 0 killed
while saving) shows afterwards: the next attempt starts from an earlier step.
committed_samples() reads it all back. tests/distributed_probe.py records a run the same way.

Three knobs for tests, read from the environment by each process:
SAMPLE_RECORDER_HOLD_AT=N  the N-th training fetch of this process writes held-<pid> and waits
    forever, so that a test kills it at a known point;
SAMPLE_RECORDER_PAUSE_AT=N  the N-th training fetch of this process writes paused-<pid> and
    waits for a stop signal (then trains on, and the run stops as it would); only the first
    process of a record folder to get there pauses;
SAMPLE_RECORDER_SIGNAL_AT=RANK:N:NAME  at its N-th training fetch, rank RANK sends itself the
    signal NAME (e.g. 1:5:SIGUSR1).
"""

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import {{ cookiecutter.package_name }}.engine as engine
from {{ cookiecutter.package_name }}.engine import devices
from {{ cookiecutter.package_name }}.engine.checkpoint import RunCheckpoints, TrainState
from {{ cookiecutter.package_name }}.engine.loader import EpochSeeded

# Relative (the recorder runs as -m tests.sample_recorder), so its place among the imports
# does not depend on how the package name sorts against "tests".
from .helpers import load_script

Sample = tuple[int, int]  # (epoch, index)


class Recorder:
    """The records of one process: its attempt, the fetches not yet committed, its commits."""

    def __init__(self, record_dir: Path) -> None:
        self.record_dir = record_dir
        self.attempt: int | None = None  # rank 0's clock (ns) at the start, shared by all ranks
        self.rank = 0
        self.state: TrainState | None = None  # the loop's own state, read at each commit
        self.pending: list[Sample] = []
        self.fetches = 0
        self.commits = 0

    def started(self, state: TrainState) -> None:
        """A new attempt: note where it starts from (its checkpoint's step and epoch)."""
        self.attempt = devices.on_main_process(time.time_ns)
        self.rank, self.state, self.pending, self.commits = devices.rank(), state, [], 0
        self.write(f"start-{self.attempt}-rank{self.rank}.json", {
            "attempt": self.attempt, "rank": self.rank, "world_size": devices.world_size(),
            "pid": os.getpid(), "global_step": state.global_step,
            "epoch": state.epoch, "samples_in_epoch": state.samples_in_epoch,
        })  # fmt: skip

    def fetched(self, keys: list[Sample]) -> None:
        """A training batch was fetched: note it, then act on the test's knobs."""
        self.pending += [(int(epoch), int(index)) for epoch, index in keys]
        self.fetches += 1
        if os.environ.get("SAMPLE_RECORDER_HOLD_AT") == str(self.fetches):
            (self.record_dir / f"held-{os.getpid()}").touch()
            threading.Event().wait()  # until the test kills this process
        pause = os.environ.get("SAMPLE_RECORDER_PAUSE_AT") == str(self.fetches)
        if pause and not list(self.record_dir.glob("paused-*")):
            pause_until_a_stop_signal(self.record_dir / f"paused-{os.getpid()}")
        signal_at = os.environ.get("SAMPLE_RECORDER_SIGNAL_AT")
        if signal_at:
            rank, fetch, name = signal_at.split(":")
            if (int(rank), int(fetch)) == (self.rank, self.fetches):
                os.kill(os.getpid(), getattr(signal, name))

    def commit(self) -> None:
        """Write the samples fetched since the last commit, at the step of the checkpoint."""
        name = f"commit-{self.attempt}-rank{self.rank}-{self.commits:04d}.json"
        self.write(name, {"attempt": self.attempt, "rank": self.rank,
                          "global_step": self.state.global_step, "samples": self.pending})  # fmt: skip
        self.pending, self.commits = [], self.commits + 1

    def exited(self, exit_code: int) -> None:
        """The process's exit code and where it stopped (nothing before the first start)."""
        if self.attempt is not None:
            self.write(f"exit-{self.attempt}-rank{self.rank}.json",
                       {"exit_code": exit_code, "global_step": self.state.global_step})  # fmt: skip

    def write(self, name: str, record: dict) -> None:
        """Write a record whole or not at all: a killed process leaves no half a record."""
        self.record_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.record_dir / f".{name}.tmp"
        temporary.write_text(json.dumps(record))
        os.replace(temporary, self.record_dir / name)


def pause_until_a_stop_signal(marker: Path) -> None:
    """Write `marker`, then wait until SIGTERM or SIGUSR1 comes, which the run's own handler
    (train.py's StopRequest) then also gets."""
    signalled = threading.Event()
    previous = {}

    def note_then_pass_on(signum, frame):
        signalled.set()
        previous[signum](signum, frame)

    for signum in (signal.SIGTERM, signal.SIGUSR1):
        previous[signum] = signal.signal(signum, note_then_pass_on)
    marker.touch()
    signalled.wait()
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@contextlib.contextmanager
def recording(record_dir: str | Path) -> Iterator[Recorder]:
    """Record the trainings run inside (train.main or train.train) into `record_dir`."""
    recorder = Recorder(Path(record_dir))
    build_loaders, restore_training = engine.build_loaders, engine.restore_training
    getitems = EpochSeeded.__getitems__
    save_last, save_epoch = RunCheckpoints.save_last, RunCheckpoints.save_epoch

    def build_recorded_loaders(*args, **kwargs):
        train_loader, val_loader = build_loaders(*args, **kwargs)
        train_loader.dataset.recorded = True  # the validation loader's fetches are not training
        return train_loader, val_loader

    def restore_and_note(*args, **kwargs):
        state = restore_training(*args, **kwargs)
        recorder.started(state)
        return state

    def fetch_and_note(dataset, keys):
        if getattr(dataset, "recorded", False):
            recorder.fetched(keys)
        return getitems(dataset, keys)

    def committed_first(save):
        def save_after_commit(checkpoints, *args, **kwargs):
            recorder.commit()
            devices.barrier()  # every rank's record is written before rank 0 writes last.pt
            return save(checkpoints, *args, **kwargs)

        return save_after_commit

    with contextlib.ExitStack() as patches:
        for target, name, replacement in (
            (engine, "build_loaders", build_recorded_loaders),
            (engine, "restore_training", restore_and_note),
            (EpochSeeded, "__getitems__", fetch_and_note),
            (RunCheckpoints, "save_last", committed_first(save_last)),
            (RunCheckpoints, "save_epoch", committed_first(save_epoch)),
        ):
            patches.enter_context(mock.patch.object(target, name, replacement))
        yield recorder


@dataclass
class Attempt:
    """One start of the run: each rank's start record, commits and exit record."""

    starts: list[dict] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)
    exits: list[dict] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.starts[0]["world_size"]

    @property
    def start_step(self) -> int:
        return self.starts[0]["global_step"]


def read_attempts(record_dir: str | Path) -> list[Attempt]:
    """Every attempt recorded in `record_dir`, in the order they started."""
    attempts: dict[int, Attempt] = {}
    for kind in ("start", "commit", "exit"):
        for path in sorted(Path(record_dir).glob(f"{kind}-*.json")):
            record = json.loads(path.read_text())
            attempt = attempts.setdefault(int(path.name.split("-")[1]), Attempt())
            getattr(attempt, f"{kind}s").append(record)
    return [attempts[key] for key in sorted(attempts)]


def committed_samples(record_dir: str | Path) -> list[Sample]:
    """The (epoch, index) of every sample the run trained on and kept, over all its attempts.

    A commit counts unless a later attempt started from an earlier step: then its checkpoint
    was never written (last.pt only moves forward), and that work was lost with it.
    """
    attempts = read_attempts(record_dir)
    samples = []
    for number, attempt in enumerate(attempts):
        later_starts = [later.start_step for later in attempts[number + 1 :]]
        kept_until = min(later_starts, default=float("inf"))
        for commit in attempt.commits:
            if commit["global_step"] <= kept_until:
                samples += [tuple(sample) for sample in commit["samples"]]
    return samples


def main(record_dir: str, flags: list[str]) -> int:
    """train.py's command line with `flags`, recorded; its exit code."""
    train = load_script("train")
    sys.argv = ["train.py", *flags]  # what run_cli and main() read
    with recording(record_dir) as recorder:
        exit_code = engine.run_cli(train.main, prog="train.py")
    recorder.exited(exit_code)
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
