"""predict.py's classification records: per image, the predicted class, its probability and
the top-k classes; written as CSV or JSON lines (--output), or as JSON lines on stdout."""

import csv
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import torch
from PIL import Image

from .engine.inference import PredictionBatch, Predictor
from .errors import UserError

OUTPUT_SUFFIXES = (".csv", ".jsonl")
CSV_COLUMNS = ("path", "class", "probability", "top_k_classes", "top_k_probabilities", "error")
DECIMALS = 6  # probabilities as written: plenty to rank, short to read
# The most pixels an input may have once its short side is resized for the model (48 MiB as
# float RGB): a 1 KB PNG of 1,000,000 x 1 px resized to a short side of 32 px is 32,000,000 px
# long, many GB, for a centre crop that keeps 32 x 32 of it.
MAX_RESIZED_PIXELS = 2**22


class CheckResizable:
    """A transform that passes an image on, or refuses it (ValueError) when resizing its short
    side to `short_side` px would give more than MAX_RESIZED_PIXELS pixels: a long thin strip."""

    def __init__(self, short_side: int) -> None:
        self.short_side = short_side

    def __call__(self, image: Image.Image) -> Image.Image:
        short, long = sorted(image.size)
        resized_long = round(long * self.short_side / max(short, 1))
        if self.short_side * resized_long > MAX_RESIZED_PIXELS:
            raise ValueError(  # short: the image's record shows 120 characters of it
                f"{image.width}x{image.height} px: {resized_long} px long at a short side of "
                f"{self.short_side} px; crop it nearer to a square"
            )
        return image


class Predictions:
    """Writes one record per input image in input order; a failed input gets {"path", "error"}.

    A file given by --output is written under a temporary name and renamed into place at the
    end, so a run that stops half-way leaves an earlier file of that name as it was.
    """

    def __init__(self, classes: list[str], top_k: int, output: Path | None) -> None:
        self.classes, self.top_k, self.output = classes, min(top_k, len(classes)), output
        self.written = self.failed = 0
        self._temporary: Path | None = None
        self._stream: TextIO = sys.stdout
        self._csv: csv.DictWriter | None = None

    def __enter__(self) -> "Predictions":
        if self.output is not None:
            self._open_output_file()
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if self.output is None:
            self._stream.flush()
            return
        self._stream.close()
        try:
            if error_type is None:
                os.replace(self._temporary, self.output)
        except OSError as failure:
            raise UserError(
                f"cannot write --output {self.output} ({failure}); pick a writable place"
            ) from None
        finally:
            self._temporary.unlink(missing_ok=True)

    def _open_output_file(self) -> None:
        if self.output.is_dir():
            raise UserError(
                f"--output {self.output} is a folder; name a file in it, such as "
                f"{self.output / 'predictions.csv'}"
            )
        if self.output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise UserError(
                f"--output {self.output} is neither .csv nor .jsonl; name the file "
                "predictions.csv or predictions.jsonl"
            )
        folder = self.output.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{self.output.name}.", dir=folder)
            os.fchmod(handle, replacement_mode(self.output))  # mkstemp's is 0600
        except OSError as error:
            raise UserError(
                f"cannot write --output {self.output} ({error}); pick a writable place"
            ) from None
        self._temporary = Path(name)
        # A file name that is not UTF-8 (copied from an old system) keeps its odd bytes as
        # escapes (\udcXX, as JSON writes them): the file stays UTF-8 for any reader.
        self._stream = os.fdopen(
            handle, "w", newline="", encoding="utf-8", errors="backslashreplace"
        )
        if self.output.suffix.lower() == ".csv":
            self._csv = csv.DictWriter(self._stream, CSV_COLUMNS)
            self._csv.writeheader()

    def add(self, predictor: Predictor, batch: PredictionBatch) -> None:
        """Predict the batch's images and write its records, in input order."""
        records = {index: {"path": str(image.path), "error": reason}
                   for index, image, reason in batch.failures}  # fmt: skip
        for group in batch.groups:
            probabilities = torch.softmax(predictor.run(group.batch), dim=1)
            top = probabilities.topk(self.top_k, dim=1)
            # One copy to the host per group (each .tolist() of a GPU tensor waits for it).
            values, indices = top.values.tolist(), top.indices.tolist()
            for index, image, value, label in zip(group.indices, group.inputs, values, indices,
                                                  strict=True):  # fmt: skip
                records[index] = self._record(image.path, value, label)
        for index in sorted(records):
            self._write(records[index])

    def _record(self, path: Path, probabilities: list[float], labels: list[int]) -> dict:
        top_k = [{"class": self.classes[label], "probability": round(value, DECIMALS)}
                 for value, label in zip(probabilities, labels, strict=True)]  # fmt: skip
        return {"path": str(path), **top_k[0], "top_k": top_k}

    def _write(self, record: dict) -> None:
        if "error" in record:
            self.failed += 1
        else:
            self.written += 1
        if self._csv is None:
            self._stream.write(json.dumps(record) + "\n")
        else:
            self._csv.writerow(csv_row(record))

    def summary(self) -> str:
        """One line: how many images were classified, how many failed, where the records are."""
        where = f"written to {self.output}" if self.output is not None else "on stdout"
        return f"{self.written} image(s) classified, {self.failed} failed; records {where}"


def csv_row(record: dict) -> dict:
    """A record as a CSV row: the top-k as '|'-separated classes and probabilities."""
    if "error" in record:
        return {"path": record["path"], "error": record["error"]}
    return {
        "path": record["path"],
        "class": record["class"],
        "probability": record["probability"],
        "top_k_classes": "|".join(entry["class"] for entry in record["top_k"]),
        "top_k_probabilities": "|".join(str(entry["probability"]) for entry in record["top_k"]),
    }


def replacement_mode(path: Path) -> int:
    """The permissions a file written to `path` gets: those of the file it replaces, or a new
    file's (0666 less the umask, as open() gives)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
        os.umask(umask)
        return 0o666 & ~umask
