"""The command line: argparse types that name the allowed range, a parser whose errors are
one sentence, and run_cli, which ends a script with one sentence instead of a traceback."""

import argparse
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Callable, Container, Mapping, Sequence
from pathlib import Path

from ..errors import DivergedError, UserError
from .task_base import Task

MAX_SEED = 2**32 - 1  # numpy's generators take seeds below 2**32
MAX_IMAGE_SIZE = 4096  # far past what fits a batch in memory; a typo (100000) stops here
MAX_NAME_BYTES = 255  # the longest file or folder name of ext4, XFS, APFS, NTFS
WORKERS_PER_CORE = 4  # more loader processes than this per core only compete for the cores
# train.py --smoke-test: the flags of its two steps (the task adds its own smallest sizes);
# TensorBoard alone, so that no smoke test lands in MLflow or W&B.
SMOKE_SETTINGS = {"dataset": "synthetic", "batch_size": 8, "accum_steps": 1, "epochs": 1,
                  "max_steps": 2, "log_every": 1, "num_workers": 0, "run_name": "smoke",
                  "resume": None, "tracker": "tensorboard"}  # fmt: skip


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser without abbreviations (`--epoch 3` is not taken as `--epochs 3`);
    an error is one line that points to --help (not the usage block that buries it), and a
    value given to an on/off flag gets an error that names the fix. --help shows each default
    (HelpFormatter)."""

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)
        # What a --config file set (by dest), and the file: see config.parse_args_with_config.
        self.file_values: dict[str, object] = {}
        self.file_path: Path | None = None

    def error(self, message: str):
        valued_switch = re.fullmatch(r"argument (\S+): ignored explicit argument (.+)", message)
        if valued_switch:
            flags, value = valued_switch.groups()
            spellings = " or ".join(flags.split("/"))
            message = f"{flags.split('/')[0]} takes no value (got {value}); write just {spellings}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to a flag's help, unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # e.g. "name of the run folder (default: a timestamp)" needs no "(default: None)" too.
        if action.help and "default" in action.help:
            return action.help
        return super()._get_help_string(action)


def _number(cast, text: str, accept, expected: str):
    try:
        value = cast(text)
    except ValueError:
        kind = "a whole number" if cast is int and is_number(text) else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {kind}; expected {expected}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"{text} is out of range; expected {expected}")
    return value


def is_number(text: str) -> bool:
    """Whether `text` is a number of any kind (2.7, 1e3)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def positive_int(text: str) -> int:
    """An integer >= 1 (a batch size, a number of epochs)."""
    return _number(int, text, lambda value: value >= 1, "an integer of 1 or more")


def batch_size(text: str) -> int | str:
    """A batch size: an integer >= 1, or "auto" (fitted to the training set; loader.py)."""
    if text == "auto":
        return text
    return _number(int, text, lambda value: value >= 1, "an integer of 1 or more, or auto")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (0 often meaning 'none' or 'no limit')."""
    return _number(int, text, lambda value: value >= 0, "an integer of 0 or more")


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate)."""
    return _number(float, text, lambda value: 0 < value < float("inf"), "a number above 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a weight decay)."""
    return _number(float, text, lambda value: 0 <= value < float("inf"), "a number of 0 or more")


def probability(text: str) -> float:
    """A number in [0, 1) (label smoothing, dropout)."""
    return _number(float, text, lambda value: 0 <= value < 1, "a number in [0, 1)")


def seed(text: str) -> int:
    """A random seed numpy accepts: an integer from 0 to 2**32 - 1."""
    expected = f"an integer from 0 to {MAX_SEED}"
    return _number(int, text, lambda value: 0 <= value <= MAX_SEED, expected)


def image_size(text: str) -> int:
    """An image side of 8 px (the model halves it twice and normalises what is left) to 4096 px."""
    expected = f"an integer from 8 to {MAX_IMAGE_SIZE}"
    return _number(int, text, lambda value: 8 <= value <= MAX_IMAGE_SIZE, expected)


def num_workers(text: str) -> int:
    """DataLoader workers: 0 to WORKERS_PER_CORE x this machine's cores (more only thrash)."""
    cores = os.cpu_count() or 1
    limit = WORKERS_PER_CORE * cores
    expected = f"an integer from 0 to {limit} ({WORKERS_PER_CORE} x this machine's {cores} cores)"
    return _number(int, text, lambda value: 0 <= value <= limit, expected)


def folder_name(text: str) -> str:
    """A plain folder name (a run name): not empty, no path separators, not '.' or '..', and
    short enough for a file system."""
    if not text:
        raise argparse.ArgumentTypeError("the name is empty; give a folder name")
    if Path(text).name != text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r} is a path; give a plain folder name")
    return short_enough(text)


def folder_path(text: str) -> Path:
    """A folder's path (an output folder), each of its names short enough for a file system."""
    for part in Path(text).parts:
        short_enough(part)
    return Path(text)


def short_enough(name: str) -> str:
    """`name` if a file system takes it as one file or folder name (255 bytes on nearly all)."""
    size = len(os.fsencode(name))
    if size > MAX_NAME_BYTES:
        raise argparse.ArgumentTypeError(
            f"{name[:20]}... is {size} bytes long, over the {MAX_NAME_BYTES} a file system "
            "takes for one name; give a shorter one"
        )
    return name


def check_stored_values(
    parser: argparse.ArgumentParser,
    stored: Mapping[str, object],
    source: Path,
    overridable: Container[str] | None = None,
) -> None:
    """Refuse values read from a file (a checkpoint's args) that the command line would refuse.

    Each value goes through its flag's own type and choices, so an edited checkpoint
    (batch_size 0, lr nan, run_name ../../X) stops here with a sentence. The sentence offers
    the flag as the fix when it is `overridable` (every flag when that is None).
    """
    for action in parser._actions:
        if action.dest not in stored or stored[action.dest] is None or not action.option_strings:
            continue
        value, flag = stored[action.dest], action.option_strings[0]
        try:
            parse_stored_value(action, value)
        except argparse.ArgumentTypeError as error:
            fix = "use a checkpoint as train.py wrote it"
            if overridable is None or action.dest in overridable:
                fix = f"give {flag} with a valid value, or {fix}"
            raise UserError(
                f"{source} stores {flag} {value}, which the command line refuses ({error}); {fix}"
            ) from None


def parse_stored_value(action: argparse.Action, value: object) -> object:
    """A value read from a file, taken as its flag takes it from the command line: through the
    flag's type (as text) and choices; argparse.ArgumentTypeError says why it is refused."""
    if action.type is not None and not isinstance(value, bool):
        try:
            value = action.type(str(value))
        except (TypeError, ValueError):  # argparse's own answer to a type that raises these
            raise argparse.ArgumentTypeError(f"invalid value {value!r}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {choices}")
    return value


__all__ = ["DivergedError", "UserError", "run_cli", "stop_worker_processes", "user_message"]

# How long a killed worker process may take to be reaped before the script exits anyway.
WORKER_REAP_SECONDS = 5.0


class TerminatedError(Exception):
    """SIGTERM arrived (`kill`, a scheduler's stop) in a script that unwinds on it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise TerminatedError


def run_cli(
    main: Callable[[Sequence[str] | None], int | None], prog: str, unwind_on_sigterm: bool = False
) -> int:
    """Run `main`, turning a UserError into `prog: error: <message>` and exit code 2 (as argparse).

    With --debug on the command line the full traceback is shown instead. With
    `unwind_on_sigterm` (the scripts that write files but train nothing), SIGTERM unwinds like
    Ctrl-C, so a file being written is removed, not left half-written; train.py stops at the
    next step on its own.
    """
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if unwind_on_sigterm else None
    try:
        return main(None) or 0
    except TerminatedError:
        print(f"{prog}: stopped by SIGTERM; nothing more was saved", file=sys.stderr)
        return 128 + signal.SIGTERM
    except UserError as error:
        if "--debug" in sys.argv[1:]:
            raise
        print(f"{prog}: error: {user_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: the user asked to stop at once
        print(f"{prog}: stopped at once by Ctrl-C; nothing more was saved", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout's reader left early (`predict.py ... | head`): no traceback
        # Python flushes stdout again at exit, which would raise once more: point it nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        if unwind_on_sigterm:  # None: the handler was not Python's; the default then
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
        stop_worker_processes()


def stop_worker_processes() -> None:
    """Kill the DataLoader worker processes still alive, however the script ends.

    Workers ignore SIGTERM (engine/loader.py leaves stop signals to the main process), and
    after an error the traceback keeps their DataLoader alive, so nothing shuts them down:
    the interpreter's exit would send them SIGTERM and then wait for them forever. They hold
    nothing worth saving (a resumed run loads its batches again).
    """
    workers = [child for child in multiprocessing.active_children() if child.daemon]
    if not workers:  # DataLoader workers are daemonic; any other child is left alone
        return
    if hasattr(signal, "SIGCHLD"):  # torch's handler would raise "worker killed" for each
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join(WORKER_REAP_SECONDS)


def user_message(error: UserError) -> str:
    """The sentence of a UserError, also when a DataLoader worker raised it.

    A worker's exception reaches the main process re-raised with the worker's traceback as its
    message; the sentence is the last line, after the exception's class name.
    """
    text = str(error).strip()
    if "Traceback" not in text:
        return text
    return text.splitlines()[-1].split("UserError: ", 1)[-1]


def check_data_dir_read(data_dir: Path | None, dataset: str, datasets: Sequence[str]) -> None:
    """test.py: a --data-dir given while the data set is synthetic (the checkpoint's, unless
    --dataset says otherwise) would not be read; a UserError rather than a silent evaluation
    of other data."""
    if data_dir is None or dataset != "synthetic":
        return
    folders = [name for name in datasets if name != "synthetic"]
    fix = f"add --dataset {' or '.join(folders)}" if folders else "drop --data-dir"
    raise UserError(
        f"--data-dir {data_dir} would not be read: the data set is synthetic (the checkpoint's, "
        f"unless --dataset says otherwise); {fix}"
    )


def add_data_flags(add: Callable, task: Task, evaluating: bool = False) -> None:
    """The data flags of every script that reads a data set, declared once: --dataset (one of
    the task's DATASETS), --data-dir and --synthetic-size. `add` is an argument group's
    add_argument. Evaluating (test.py), each defaults to the checkpoint's value."""
    if evaluating:
        add("--dataset", choices=task.DATASETS, help="default: the checkpoint's")
        add("--data-dir", type=Path, help="default: the checkpoint's")
        add("--synthetic-size", type=positive_int, help="default: the checkpoint's")
        return
    add("--dataset", choices=task.DATASETS, default="synthetic", help="data set to train on")
    add("--data-dir", type=Path, default=Path("data"), help=task.DATA_DIR_HELP)
    add("--synthetic-size", type=positive_int, default=task.SYNTHETIC_SIZE,
        help="training samples of --dataset synthetic (validation gets a fifth)")  # fmt: skip
