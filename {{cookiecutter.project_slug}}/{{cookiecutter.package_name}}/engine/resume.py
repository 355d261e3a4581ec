"""Start a new run folder, or continue a run from its checkpoint."""

import argparse
from pathlib import Path

import torch
from torch import nn

from .checkpoint import TrainState, load_checkpoint, load_model_weights, restore_rng_state
from .run_dir import create_run_dir, save_args


def resume_or_start(
    args: argparse.Namespace,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    **resolved: object,
) -> tuple[TrainState, Path, bool]:
    """Return the training state, the run folder and whether the folder is new.

    With --resume the model, optimizer, schedule, counters and RNG states come from the
    checkpoint and the run continues in the folder the checkpoint belongs to; the args of
    this start are saved beside the original ones, never over them.
    """
    if args.resume is None:
        run_dir = create_run_dir(args.out_dir, args.run_name)
        save_args(run_dir, args, **resolved)
        return TrainState(), run_dir, True
    checkpoint = load_checkpoint(args.resume)
    load_model_weights(model, checkpoint, args.resume)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_state(checkpoint["rng"])
    state = TrainState(**checkpoint["state"])
    run_dir = Path(args.resume).resolve().parent.parent  # <run>/checkpoints/last.pt
    if not (run_dir / "args.json").is_file():  # a checkpoint moved out of its run folder
        run_dir = create_run_dir(args.out_dir, args.run_name)
        save_args(run_dir, args, **resolved)
        return state, run_dir, True
    save_args(run_dir, args, stem=f"args-resume-step{state.global_step}", **resolved)
    return state, run_dir, False
