"""The template's test-only task: a vector of numbers in, a class out, with no image anywhere.

It proves that the shared scripts, engine/ and tests/engine/ know no task and no image: baked
through the same hooks as the real tasks, it trains, resumes, runs under torchrun, evaluates,
exports and predicts through the unchanged scripts. Data: --dataset synthetic (noisy points
around one centre per class) or --dataset folder (DIR/train.csv and DIR/val.csv, each row a
class index and then the features); predict.py reads one vector a text file.
"""

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from . import {{ cookiecutter.model_name }} as architecture
from .engine.inference import PredictionBatch, Predictor
from .engine.task_base import Task
from .errors import UserError
from .input_files import InputFile, InputKind

FEATURES = 16  # synthetic vectors' length
CLASSES = 3  # synthetic classes
NOISE = 0.8  # the spread of the synthetic points around their class centre


@dataclass
class VectorData:
    """The two splits and what the model needs to know of them."""

    train: TensorDataset
    val: TensorDataset
    features: int
    num_classes: int
    train_sample_weights: None = None
    train_batch_transform: None = None


def synthetic_split(size: int, seed: int) -> TensorDataset:
    """`size` points: each class's centre (the same for every split) plus seeded noise."""
    centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (size,), generator=generator)
    points = centres[labels] + NOISE * torch.randn(size, FEATURES, generator=generator)
    return TensorDataset(points, labels)


def read_split(path: Path) -> TensorDataset:
    """One CSV split: rows of a class index and the features; a bad row is a UserError."""
    if not path.is_file():
        raise UserError(f"{path} does not exist; write it as rows of a class index and features")
    rows = list(csv.reader(path.read_text().splitlines()))
    try:
        labels = torch.tensor([int(row[0]) for row in rows])
        points = torch.tensor([[float(value) for value in row[1:]] for row in rows])
    except (ValueError, IndexError) as error:
        raise UserError(
            f"cannot read {path} ({error}); each row: a class index, then features"
        ) from None
    if len(rows) == 0 or points.shape[1] == 0 or labels.min() < 0:
        raise UserError(f"{path} has no rows, no features or a negative class; fix the file")
    return TensorDataset(points, labels)


class VectorReader:
    """predict.py's reader: a text file of `features` numbers as one input vector."""

    def __init__(self, features: int) -> None:
        self.features = features

    def __call__(self, path: Path) -> torch.Tensor:
        text = path.read_text().replace(",", " ").split()
        try:
            vector = torch.tensor([float(value) for value in text])
        except ValueError as error:
            raise UserError(f"cannot read the vector {path} ({error}); write numbers") from None
        if vector.numel() != self.features:
            raise UserError(
                f"{path} holds {vector.numel()} numbers; the model takes {self.features}"
            )
        return vector


class VectorPredictions:
    """predict.py's records: the predicted class and its probability, JSON lines on stdout."""

    def __init__(self) -> None:
        self.written = self.failed = 0

    def __enter__(self) -> "VectorPredictions":
        return self

    def __exit__(self, *exception) -> None:
        sys.stdout.flush()

    def add(self, predictor: Predictor, batch: PredictionBatch) -> None:
        """Predict the batch's vectors and print their records, in input order."""
        records = {index: {"path": str(file.path), "error": reason}
                   for index, file, reason in batch.failures}  # fmt: skip
        for group in batch.groups:
            best = torch.softmax(predictor.run(group.batch), dim=1).max(dim=1)
            for index, file, value, label in zip(group.indices, group.inputs,
                                                 best.values.tolist(), best.indices.tolist(),
                                                 strict=True):  # fmt: skip
                records[index] = {"path": str(file.path), "class": label,
                                  "probability": round(value, 6)}  # fmt: skip
        for index in sorted(records):
            self.failed += "error" in records[index]
            self.written += "error" not in records[index]
            print(json.dumps(records[index]))

    def summary(self) -> str:
        return f"{self.written} vector(s) classified, {self.failed} failed"


class Vectors(Task):
    """Vector classification: cross-entropy, accuracy as the best metric."""

    NAME = "vector"
    BEST_METRIC = "accuracy"
    HIGHER_IS_BETTER = True
    DATASETS = ("synthetic", "folder")
    DATA_DIR_HELP = "folder with train.csv and val.csv (--dataset folder)"
    SYNTHETIC_SIZE = 512
    MODEL_CLASS = architecture.{{ cookiecutter.__model_class }}
    INPUTS = InputKind("vector", frozenset({".txt", ".csv"}), "vectors/*.txt")

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        model = parser.add_argument_group("model")
        model.add_argument("--width", type=int, default=32, help="hidden units a layer")
        model.add_argument("--norm", choices=architecture.NORMS, default="batch", help="norm")

    def build_data(self, args: argparse.Namespace) -> VectorData:
        if args.dataset == "synthetic":
            train = synthetic_split(args.synthetic_size, seed=1)
            val = synthetic_split(max(args.synthetic_size // 5, 1), seed=2)
        else:
            if not args.data_dir.is_dir():
                raise UserError(
                    f"--data-dir {args.data_dir} does not exist; point it at a folder with "
                    "train.csv and val.csv"
                )
            train, val = (read_split(args.data_dir / f"{split}.csv") for split in ("train", "val"))
        features = train.tensors[0].shape[1]
        num_classes = int(max(train.tensors[1].max(), val.tensors[1].max())) + 1
        return VectorData(train, val, features, num_classes)

    def model_config(self, args: argparse.Namespace, data: VectorData) -> dict:
        return {"in_features": data.features, "num_classes": data.num_classes,
                "width": args.width, "norm": args.norm}  # fmt: skip

    def checkpoint_extras(self, data: VectorData) -> dict:
        return {}  # the model config says all a prediction needs

    def build_criterion(self, args: argparse.Namespace) -> nn.Module:
        return nn.CrossEntropyLoss()

    def batch_sums(self, inputs, outputs, targets) -> dict[str, torch.Tensor]:
        hits = (outputs.argmax(dim=1) == targets).sum()  # int64: exact over processes
        return {"loss": F.cross_entropy(outputs.float(), targets, reduction="sum"), "hits": hits}

    def metrics(self, sums: dict[str, torch.Tensor], samples: int) -> dict[str, float]:
        return {"loss": sums["loss"].item() / samples, "accuracy": sums["hits"].item() / samples}

    def add_predict_flags(self, parser: argparse.ArgumentParser) -> None:
        """None: the records go to stdout."""

    def prediction_reader(self, card: dict) -> VectorReader:
        return VectorReader(card["model_config"]["in_features"])

    def open_predictions(self, args, card: dict, inputs: list[InputFile]) -> VectorPredictions:
        return VectorPredictions()

    def export_examples(self, card: dict) -> list[torch.Tensor]:
        """Batches of 2, 1 and 3 vectors: the batch dimension stays free."""
        generator = torch.Generator().manual_seed(0)
        features = card["model_config"]["in_features"]
        return [torch.randn(size, features, generator=generator) for size in (2, 1, 3)]


task = Vectors()
