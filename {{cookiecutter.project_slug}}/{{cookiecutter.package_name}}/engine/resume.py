"""Resuming a run: the checkpoint to continue (--resume auto finds the newest), the flags it
runs with (its own, and those a resumed run may change), and the training state it restores."""

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..errors import UserError
from .checkpoint import (
    TrainState,
    load_checkpoint,
    load_model_weights,
    restore_rng_state,
    task_extras,
)
from .cli import check_stored_values
from .devices import effective_batch, is_distributed, world_size
from .loader import optimizer_steps
from .runs import plain
from .step import (
    MixedPrecision,
    apply_schedule,
    decay_progress,
    refit_schedule,
    warmup_steps_of,
)

# Flags a resumed run may change; every other flag is the checkpoint's own.
CHANGEABLE_ON_RESUME = frozenset(
    {"epochs", "max_steps", "num_workers", "prefetch_thread", "device", "log_every",
     "ckpt_every_steps",
     "download", "data_dir", "out_dir", "run_name", "resume", "debug", "smoke_test",
     "channels_last", "compile", "sync_bn", "log_graph", "viz_graph",
     "tracker", "log_checkpoints"}
)  # fmt: skip
_UNSET = object()


class ResumedCheckpoint:
    """The checkpoint a run resumes, read once, by parse_resumed_args, and handed on with the
    args (as args.resumed, never saved with them): restore_training takes the training state
    out of it, open_trackers the run ids of its trackers."""

    def __init__(self, path: str | Path, contents: dict) -> None:
        self.path = Path(path)
        self.contents: dict | None = contents
        self.tracker_runs = tracker_runs(contents)

    def take(self) -> dict:
        """The checkpoint's contents, let go of here so that its weights are freed once
        restored (asked again, it is read again)."""
        contents, self.contents = self.contents, None
        if contents is None:
            contents = load_checkpoint(self.path)
            self.tracker_runs = tracker_runs(contents)
        return contents

    def __repr__(self) -> str:  # as args.txt shows it
        return f"ResumedCheckpoint({str(self.path)!r})"


def tracker_runs(checkpoint: dict) -> dict[str, str]:
    """The tracker run ids a checkpoint kept ({} for one saved before trackers had ids)."""
    return dict(checkpoint.get("trackers") or {})


def resumed_checkpoint(args: argparse.Namespace) -> ResumedCheckpoint:
    """The checkpoint of --resume as parse_resumed_args read it (read now for args made
    without it, e.g. by hand)."""
    resumed = getattr(args, "resumed", None)
    if resumed is None or resumed.path != Path(args.resume):
        resumed = args.resumed = ResumedCheckpoint(args.resume, load_checkpoint(args.resume))
    return resumed


def find_latest_checkpoint(out_dir: Path, run_name: str | None) -> Path | None:
    """`--resume auto`: the newest <out_dir>/<run>/checkpoints/last.pt (of --run-name if given).

    With --run-name, a run that has none yet is None: the command starts it, so one command
    line both starts a run and continues it (torchrun's restarts, a requeued job).
    """
    pattern = f"{run_name}/checkpoints/last.pt" if run_name else "*/checkpoints/last.pt"
    found = sorted(Path(out_dir).glob(pattern), key=lambda path: path.stat().st_mtime)
    if found:
        return found[-1]
    if run_name:
        return None
    raise UserError(
        f"--resume auto found no checkpoints/last.pt under {out_dir}; start a run first, "
        "give the checkpoint's path, or name the run with --run-name to start it if it is new"
    )


def with_resume(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    args: argparse.Namespace,
    task: str,
) -> argparse.Namespace:
    """The run's flags when --resume is given: the checkpoint's (--resume auto: the newest of
    --run-name, or, when it has none yet, `args` with auto_start set: this run starts it)."""
    if args.resume is None:
        return args
    if str(args.resume) == "auto":
        args.resume = find_latest_checkpoint(args.out_dir, args.run_name)
        if args.resume is None:  # torchrun's restarts run the first start's command again
            args.auto_start = True
            return args
    resumed = parse_resumed_args(parser, argv, args.resume, task)
    resumed.resume = args.resume
    return resumed


def parse_resumed_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, path: Path, task: str | None = None
):
    """Parse argv with the checkpoint's args as defaults, so a resume needs only --resume.

    A flag given again with another value is refused unless it is one a run can change
    mid-way (CHANGEABLE_ON_RESUME): a new batch size or optimizer would silently break the
    state being resumed. The checkpoint's own values pass the flags' validators too, so an
    edited one (batch_size 0, run_name ../../X) is refused, not trained with.
    """
    checkpoint = load_checkpoint(path, task)
    saved = checkpoint["args"]
    given = vars(parser.parse_args(argv, namespace=_namespace_of_unset(parser)))
    from_file = getattr(parser, "file_values", {})  # --config FILE with --resume auto
    not_given = {
        name: value
        for name, value in saved.items()
        if given.get(name) is _UNSET and name not in from_file
    }
    check_stored_values(parser, not_given, path, overridable=CHANGEABLE_ON_RESUME)
    for name, value in [*from_file.items(), *given.items()]:
        if value is _UNSET or name in CHANGEABLE_ON_RESUME or name not in saved:
            continue
        if plain(value) == saved[name] or (name == "batch_size" and value == "auto"):
            continue  # auto: the number it resolved to at the run's start, as the run has
        if given.get(name) is _UNSET:  # the file's value, not the command line's
            raise UserError(
                f"{parser.file_path} sets {name} to {plain(value)}, but the run being resumed "
                f"has {saved[name]}; remove {name} from the file (or make it {saved[name]}), "
                "or start a new run without --resume"
            )
        raise UserError(_conflict(name, value, saved[name]))
    require_same_run_folder(path, given, from_file)
    defaults = vars(parser.parse_args([]))
    restored = {
        name: Path(value) if isinstance(defaults.get(name), Path) and value is not None else value
        for name, value in saved.items()
        if name in defaults
    }
    # The file's values the command line does not override: equal to the run's, or ones a
    # resumed run may change (checked above).
    restored.update({name: value for name, value in from_file.items() if given[name] is _UNSET})
    resumed = parser.parse_args(argv, namespace=argparse.Namespace(**restored))
    if resumed.batch_size == "auto":  # given again: the number it resolved to at the start
        resumed.batch_size = saved["batch_size"]
    resumed.recorded = task_extras(checkpoint)  # e.g. the data must be fed as before
    resumed.resumed = ResumedCheckpoint(path, checkpoint)  # restore_training's, not read again
    return resumed


def require_same_run_folder(checkpoint: Path, given: dict, from_file: dict) -> None:
    """Refuse an --out-dir or --run-name that names another folder than the resumed run's.

    A resumed run writes into the folder its checkpoint belongs to; a different folder named
    on the command line would be silently ignored, and the run's files changed instead.
    A checkpoint moved out of its run folder starts a new folder: there they are obeyed.
    """
    run_dir = Path(checkpoint).resolve().parent.parent  # <run>/checkpoints/last.pt
    if not (run_dir / "args.json").is_file():
        return
    named = {**from_file, **{name: value for name, value in given.items() if value is not _UNSET}}
    out_dir, run_name = named.get("out_dir"), named.get("run_name")
    if out_dir is not None and Path(out_dir).resolve() != run_dir.parent:
        wrong = f"--out-dir {out_dir}"
    elif run_name is not None and run_name != run_dir.name:
        wrong = f"--run-name {run_name}"
    else:
        return
    raise UserError(
        f"{wrong} names another folder than the run being resumed, which continues in "
        f"{run_dir}; drop {wrong.split()[0]} to continue that run, or start a new run "
        "without --resume"
    )


def _conflict(name: str, value: object, saved: object) -> str:
    """The sentence refusing flag `name` given as `value` where the run had `saved`."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):  # an on/off flag: name it as typed, say what the run had
        given = flag if value else flag.replace("--", "--no-", 1)
        return (
            f"{given} differs from the run being resumed (it had {flag} "
            f"{'on' if saved else 'off'}); drop it, or start a new run without --resume"
        )
    return (
        f"{flag} {value} differs from the {saved} of the run being resumed; "
        f"drop {flag} to keep the run's value, or start a new run without --resume"
    )


def _namespace_of_unset(parser: argparse.ArgumentParser) -> argparse.Namespace:
    # argparse fills in a default only where the namespace lacks the attribute, so every
    # attribute still _UNSET after parsing is a flag the user did not give.
    return argparse.Namespace(**dict.fromkeys(vars(parser.parse_args([])), _UNSET))


def restore_training(
    args: argparse.Namespace,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: MixedPrecision | None = None,
    ema: AveragedModel | None = None,
    train_size: int | None = None,
) -> TrainState:
    """A fresh TrainState, or with --resume the checkpoint's (as parse_resumed_args read it),
    after loading into the model, optimizer, schedule, scaler, EMA and RNGs what it saved
    (every rank does this).

    A checkpoint saved by another number of processes goes on with this run's: the rest of
    its epoch is dealt out over them (ResumableSampler), and the learning-rate schedule is
    refitted to end with the run (`train_size`: the training set's length).
    """
    require_one_checkpoint_for_all(args.resume)
    if args.resume is None:
        return TrainState(world_size=world_size())
    checkpoint = resumed_checkpoint(args).take()
    state = TrainState(**checkpoint["state"])
    if args.max_steps and state.global_step >= args.max_steps:
        raise UserError(
            f"{args.resume} is at step {state.global_step}, so --max-steps {args.max_steps} is "
            "reached; pass --max-steps 0 (no limit) or a larger number to train further"
        )
    if state.epoch >= args.epochs:
        raise UserError(
            f"{args.resume} has finished all {state.epoch} epochs: nothing left to train; "
            "raise --epochs to train further"
        )
    if "samples_in_epoch" not in checkpoint["state"]:  # saved before the count was kept
        state.samples_in_epoch = state.step_in_epoch * effective_batch(args, state.world_size)
    load_model_weights(model, checkpoint, args.resume)
    require_same_parameter_groups(checkpoint["optimizer"], optimizer, args.resume)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if state.world_size != world_size() and train_size is not None:
        print(process_count_note(args, state, train_size))
        state.lr_anchor = schedule_anchor(args, state, train_size)
    if state.lr_anchor is not None and train_size is not None:
        total_steps = state.global_step + optimizer_steps_left(args, state, train_size)
        refit_schedule(scheduler, args, total_steps, tuple(state.lr_anchor))
    apply_schedule(optimizer, scheduler)  # --epochs may have lengthened the schedule
    if precision is not None:
        precision.load_state_dict(checkpoint.get("scaler"))
    if ema is not None and checkpoint.get("ema") is not None:
        load_model_weights(ema.module, checkpoint, args.resume, weights="ema")
        # The step count too: at 0 the next update would copy the weights over the average.
        ema.n_averaged.fill_(checkpoint["ema_updates"])
    restore_rng_state(checkpoint["rng"])
    state.world_size = world_size()
    return state


def require_same_parameter_groups(
    saved: dict, optimizer: torch.optim.Optimizer, checkpoint: Path
) -> None:
    """Refuse to resume an optimizer state of other parameter groups (one saved by an older
    version of this project, before the task's groups were kept apart): its moments would
    land on the wrong parameters. The weights themselves are fine for test.py."""
    before, now = len(saved["param_groups"]), len(optimizer.param_groups)
    if before != now:
        raise UserError(
            f"{checkpoint} was saved by an older version of this project, whose optimizer had "
            f"{before} parameter group(s) where this one has {now} (a decay and a no-decay "
            "group for each of the task's parameter groups), so its training cannot go on; "
            f"evaluate it with test.py --checkpoint {checkpoint}, or start a new run"
        )


def require_one_checkpoint_for_all(checkpoint: Path | None) -> None:
    """Under torchrun: refuse to go on unless every process resumes the same checkpoint file
    (or none). Machines that each keep --out-dir on a disk of their own would each find
    their own last.pt (or none) with --resume auto, and train from different weights."""
    if not is_distributed():
        return
    found = None
    if checkpoint is not None:
        stat = Path(checkpoint).stat()
        found = (stat.st_size, stat.st_mtime_ns)  # the same file seen from every machine
    every = [None] * world_size()
    dist.all_gather_object(every, found)
    if len(set(every)) > 1:
        raise UserError(
            f"the processes of this run found different checkpoints to resume (this one: "
            f"{checkpoint or 'none'}); put --out-dir on a file system that every machine "
            "shares, or give every process the same --resume PATH"
        )


def optimizer_steps_left(
    args: argparse.Namespace, state: TrainState, train_size: int, processes: int | None = None
) -> int:
    """The optimizer steps from `state` to the end of --epochs with `processes` processes
    (this run's by default): each takes batch_size x accum_steps of its share of the rest."""
    deal = (processes or world_size(), args.batch_size, args.accum_steps)
    this_epoch = optimizer_steps(train_size - state.samples_in_epoch, *deal)
    return this_epoch + optimizer_steps(train_size, *deal) * (args.epochs - state.epoch - 1)


def schedule_anchor(args: argparse.Namespace, state: TrainState, train_size: int) -> list[float]:
    """[step, progress]: how far the learning-rate decay had gone at this step with the process
    count that saved `state`, for the refitted schedule to go on from (see decay_progress)."""
    step = state.global_step
    total_before = step + optimizer_steps_left(args, state, train_size, state.world_size)
    warmup_before = warmup_steps_of(args, total_before)
    previous = tuple(state.lr_anchor) if state.lr_anchor else None
    progress = 0.0
    if step >= warmup_before:
        progress = decay_progress(step, warmup_before, total_before, previous)
    total_now = step + optimizer_steps_left(args, state, train_size)
    return [max(step, warmup_steps_of(args, total_now)), progress]


def process_count_note(args: argparse.Namespace, state: TrainState, train_size: int) -> str:
    """The line a run prints when it resumes a checkpoint of another process count."""
    before, now = state.world_size, world_size()
    where = (
        f"the rest of epoch {state.epoch + 1} ({train_size - state.samples_in_epoch:,} of its "
        f"{train_size:,} samples) is dealt out over its processes, each sample once"
        if state.samples_in_epoch
        else f"epoch {state.epoch + 1} is dealt out over its processes"
    )
    return (
        f"note: {args.resume} was saved by {before} process(es) and this run has {now}: {where}; "
        f"the effective batch becomes {effective_batch(args, now)} (it was "
        f"{effective_batch(args, before)}) and the learning-rate schedule goes on from step "
        f"{state.global_step} to end with the run, so it is not bitwise the run it would have been"
    )
