"""The run folder: one per run, named by --run-name or the time, never overwritten, locked
while a run writes to it, holding the args each start of the run was given (a resumed run
continues in the folder its checkpoint belongs to: see resume.py)."""

import argparse
import errno
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path

from ..errors import UserError
from .checkpoint import TrainState
from .config import CONFIG_FILE, NOT_SAVED, config_text
from .devices import effective_batch, world_size
from .files import write_failure, write_text_atomic

try:  # POSIX only; where it is missing (Windows) run folders are not locked
    import fcntl
except ImportError:
    fcntl = None

LOCK_FILE = ".lock"
# Temporary files of atomic writes are named .<file>.<pid>.tmp (see files.atomic_write).
TEMPORARY_FILE = re.compile(r"\..+\.(\d+)\.tmp")


def create_run_dir(out_dir: str | Path, run_name: str | None, reuse_unsaved: bool = False) -> Path:
    """Make `<out_dir>/<run_name or timestamp>/`; an existing folder is an error, not overwritten,
    unless it is an attempt that ended before its first checkpoint (see is_unsaved_attempt).
    """
    out_dir = Path(out_dir)
    if run_name:
        run_dir = out_dir / run_name
        if is_unsaved_attempt(run_dir, reuse_unsaved):
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            return run_dir
        if run_dir.exists():
            last = run_dir / "checkpoints" / "last.pt"
            hint = f"continue it with --resume {last}" if last.is_file() else "delete it"
            raise UserError(
                f"run folder {run_dir} already exists; pick another --run-name, or {hint}"
            )
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir, suffix = out_dir / stamp, 1
        while run_dir.exists():  # two runs started within the same second
            run_dir, suffix = out_dir / f"{stamp}-{suffix}", suffix + 1
    try:
        (run_dir / "checkpoints").mkdir(parents=True)
    except FileExistsError:  # another process made it since the check above
        raise UserError(
            f"run folder {run_dir} was just created by another run; pick another --run-name"
        ) from None
    except OSError as error:
        raise UserError(
            f"cannot create the run folder {run_dir} ({error.strerror}); "
            "point --out-dir at a writable folder"
        ) from None
    return run_dir


def is_unsaved_attempt(run_dir: Path, auto_start: bool = False) -> bool:
    """Whether `run_dir` is a run folder without a checkpoint: an attempt that was killed, or
    failed (a broken image mid-epoch), before its first save. Nothing in it can be resumed,
    so the same --run-name starts the run again in it. With --resume auto (`auto_start`) any
    such folder is one, as its first start may have been killed before it saved its args.
    """
    checkpoints = run_dir / "checkpoints"
    if not run_dir.is_dir() or any(checkpoints.glob("*.pt")):
        return False
    return auto_start or (run_dir / "args.json").is_file()


def plain(value: object) -> object:
    """A flag's value as a plain JSON type (a path becomes a string)."""
    return str(value) if isinstance(value, Path) else value


def args_to_dict(args: argparse.Namespace) -> dict:
    """The parsed arguments as plain JSON types, as saved with the run and in checkpoints."""
    return {key: plain(value) for key, value in vars(args).items() if key not in NOT_SAVED}


def save_args(
    run_dir: Path, args: argparse.Namespace, stem: str = "args", **resolved: object
) -> None:
    """Write <stem>.json (args plus values resolved at start-up) and <stem>.txt, the str(args) line.

    A resumed run passes its own stem, so the args of the first start are never overwritten.
    Each file is written whole or not at all; on an OSError neither is left.
    """
    record = {**args_to_dict(args), **resolved}
    record_file = run_dir / f"{stem}.json"
    write_text_atomic(record_file, json.dumps(record, indent=2, sort_keys=True) + "\n")
    try:
        write_text_atomic(run_dir / f"{stem}.txt", f"{args}\n")
    except OSError:
        record_file.unlink(missing_ok=True)
        raise


def save_text(path: Path, text: str) -> None:
    """Write a file of a new run (e.g. the model summary) whole; a failure is a UserError."""
    try:
        write_text_atomic(path, text)
    except OSError as error:
        raise UserError(f"{write_failure(path, error)}; nothing was trained yet") from None


class RunDirLock:
    """An exclusive lock on a run folder while one process trains in it: <run>/.lock.

    A POSIX record lock (fcntl.lockf) belongs to the process: the OS drops it when the
    process ends, even by kill -9, so there is never a stale lock to remove, and DataLoader
    workers forked later do not inherit it (they never keep a run locked after it ended).
    The file records the holder's pid and host for the refusal. Without fcntl (Windows) it
    locks nothing.
    """

    def __init__(self) -> None:
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the lock (never where locks are unavailable)."""
        return self._descriptor is not None

    def acquire(self, run_dir: Path) -> None:
        """Lock `run_dir`, or raise a UserError naming the process that holds it."""
        if fcntl is None:
            return
        path = run_dir / LOCK_FILE
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never truncates on open
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):  # e.g. a mount without locks
                os.close(descriptor)
                return
            holder = os.read(descriptor, 200).decode(errors="replace").strip()  # read only
            os.close(descriptor)
            raise UserError(
                f"the run folder {run_dir} is in use by {holder or 'another process'}; "
                "wait for it to finish or pick another --run-name"
            ) from None
        try:  # unbuffered writes: a full disk fails here, not later in a close
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError as error:
            os.close(descriptor)
            error.filename = str(path)
            raise
        self._descriptor = descriptor

    def release(self) -> None:
        """Unlock (the file stays: removing it could race a process that is about to lock it)."""
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    def __del__(self) -> None:  # a run that failed before the `with` that releases it
        self.release()

    def __enter__(self) -> "RunDirLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def remove_stale_temporaries(folder: Path, all_stale: bool) -> None:
    """Remove temporary files that a killed process left in `folder` (.last.pt.<pid>.tmp).

    all_stale: the caller holds the run folder's lock, and only the holder writes there, so
    every one is stale; otherwise only those whose process is gone.
    """
    for path in folder.glob(".*.tmp"):
        match = TEMPORARY_FILE.fullmatch(path.name)
        if match and (all_stale or not process_is_alive(int(match.group(1)))):
            path.unlink(missing_ok=True)


def process_is_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (assumed so where it cannot be told)."""
    if os.name != "posix":  # os.kill on Windows would end the process, not probe it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def open_run_dir(
    args: argparse.Namespace, state: TrainState, lock: RunDirLock | None = None
) -> tuple[Path, bool]:
    """The run folder and whether it is new, locked by `lock`, with this start's args saved in
    it (and the process count and effective batch they make).

    With --resume the run continues in the folder the checkpoint belongs to; the args of
    this start are saved beside the original ones, never over them. Only one process may
    call this (rank 0 under torchrun); the caller releases `lock` when training ends.
    """
    lock = lock or RunDirLock()
    resolved = {"world_size": world_size(), "effective_batch": effective_batch(args)}
    if args.resume is not None:
        run_dir = Path(args.resume).resolve().parent.parent  # <run>/checkpoints/last.pt
        if (run_dir / "args.json").is_file():
            try:
                continue_in(run_dir, args, state, lock, resolved)
            except OSError as error:  # a full disk, a read-only folder
                lock.release()
                kept = f"the last good checkpoint {args.resume} is untouched"
                raise UserError(
                    f"{write_failure(failed_path(error, run_dir), error)}; {kept}"
                ) from None
            return run_dir, False
    # A new run, or a checkpoint moved out of its run folder: a new folder (or, with
    # --resume auto, the folder of an attempt that never saved a checkpoint).
    reuse = getattr(args, "auto_start", False)
    reused = bool(args.run_name) and is_unsaved_attempt(Path(args.out_dir) / args.run_name, reuse)
    run_dir = create_run_dir(args.out_dir, args.run_name, reuse_unsaved=reuse)
    # Starting again in an attempt's folder is what --resume auto does when it finds no
    # checkpoint: the trackers then drop all that the attempt logged.
    args.auto_start = reuse or reused
    try:
        lock.acquire(run_dir)
        save_args(run_dir, args, **resolved)
        write_text_atomic(run_dir / CONFIG_FILE, config_text(args))  # --config replays it
    except OSError as error:  # e.g. a full disk: leave no empty run folder behind
        lock.release()
        failure = write_failure(failed_path(error, run_dir), error)
        if reused:
            raise UserError(f"{failure}; nothing in {run_dir} was removed") from None
        shutil.rmtree(run_dir, ignore_errors=True)
        kept = f"; the checkpoint {args.resume} is untouched" if args.resume else ""
        raise UserError(f"{failure}; the new run folder {run_dir} was removed{kept}") from None
    if reused:
        print(f"{run_dir} has no checkpoint yet, so the run starts again in it")
    return run_dir, True


def failed_path(error: OSError, run_dir: Path) -> Path:
    """The file an OSError names, else the run folder."""
    return Path(error.filename) if error.filename else run_dir


def continue_in(
    run_dir: Path, args: argparse.Namespace, state: TrainState, lock: RunDirLock, resolved: dict
) -> None:
    """Lock a resumed run's folder, clear what killed processes left, and save this start's args."""
    lock.acquire(run_dir)
    for folder in (run_dir, run_dir / "checkpoints"):
        remove_stale_temporaries(folder, all_stale=lock.held)
    stem, suffix = f"args-resume-step{state.global_step}", 1
    while (run_dir / f"{stem}.json").exists():  # resumed from the same step before
        stem, suffix = f"args-resume-step{state.global_step}-{suffix}", suffix + 1
    save_args(run_dir, args, stem=stem, **resolved)
