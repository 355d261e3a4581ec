"""Inference: a trained model as a function of image batches, and what it needs to be fed.

A model card (a dict of plain values, JSON-able) says what a model file is: its task, the
config that builds it, how images become its inputs, its classes and the task's own settings.
predict.py reads it from a checkpoint or from an exported file (engine/exports.py writes it into
each format), so a deployed model carries everything a prediction needs.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError
from .checkpoint import load_checkpoint, load_model_weights

CARD_VERSION = 1  # bump when a card's keys change meaning


@dataclass
class Predictor:
    """A model ready to predict: `run` maps a float32 batch on `device` to the model's output
    (float32, on `device`), without autograd; `card` says how to feed it and read it."""

    run: Callable[[torch.Tensor], torch.Tensor]
    card: dict
    device: torch.device


def model_card(checkpoint: dict, path: str | Path, setting_names: tuple[str, ...]) -> dict:
    """The model card of a checkpoint; `setting_names` are the training flags the task needs at
    prediction time (e.g. image_to_image's corruption, for --corrupt)."""
    if checkpoint.get("preprocessing") is None:
        raise UserError(
            f"{path} was written before checkpoints recorded how images are fed to the model; "
            "evaluate it with test.py, or train a new run to predict with or export it"
        )
    train_args, state = checkpoint["args"], checkpoint["state"]
    return {
        "card_version": CARD_VERSION,
        "task": checkpoint.get("task"),
        "model_config": checkpoint["model_config"],
        "preprocessing": checkpoint["preprocessing"],
        "classes": list(checkpoint["classes"]),
        "settings": {name: train_args.get(name) for name in setting_names},
        # A run trained with --ema measured (and picked best.pt by) its average of the weights.
        "weights": "ema" if checkpoint.get("ema") is not None else "model",
        "checkpoint": str(path),
        "epoch": state["epoch"],
        "global_step": state["global_step"],
    }


def load_checkpoint_model(
    path: Path, task_name: str, setting_names: tuple[str, ...], build_model: Callable
) -> tuple[nn.Module, dict]:
    """The checkpoint's network in eval mode on the CPU (its EMA weights when it has them),
    and its model card."""
    checkpoint = load_checkpoint(path, task_name)
    card = model_card(checkpoint, path, setting_names)
    model = build_model(checkpoint["model_config"])
    load_model_weights(model, checkpoint, path, card["weights"])
    return model.eval(), card


def eager_predictor(model: nn.Module, card: dict, device: torch.device) -> Predictor:
    """A Predictor of an nn.Module: eval mode, on `device`, under inference_mode."""
    model = model.eval().to(device)

    @torch.inference_mode()
    def run(images: torch.Tensor) -> torch.Tensor:
        return model(images).float()

    return Predictor(run, card, device)
