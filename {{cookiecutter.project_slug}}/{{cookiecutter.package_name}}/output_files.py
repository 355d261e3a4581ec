"""predict.py's output files under --output-dir, named after their inputs: planned before any
work, so that none lands on an input or on another input's output, the folder made, and the
predictions of the tasks that write them (OutputFilePredictions).

An output "lands on an input" under the input's own path, or under another name of the same
file: a hard link, or another letter case on a case-insensitive disk (macOS, Windows), where
photo.png would replace photo.PNG.
"""

import json
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from .engine.inference import InputGroup, PredictionBatch, Predictor
from .errors import UserError
from .input_files import InputFile
from .tiled_inference import ModelGrid, Tiling, too_large


def check_outputs(
    output_dir: Path,
    inputs: list[InputFile],
    output_names: Callable[[InputFile], list[str]],
    clash_hint: str = "",
) -> None:
    """Refuse, in one sentence, outputs (output_names(input), relative to --output-dir) that
    would overwrite an input or each other; clash_hint says how outputs are named."""
    paths = {found.path.resolve(): found.path for found in inputs}
    by_id = {_file_id(path): found for path, found in paths.items()}
    by_id.pop(None, None)
    planned: dict[Path, Path] = {}
    for found in inputs:
        for name in output_names(found):
            output = (output_dir / name).resolve()
            same_file = by_id.get(_file_id(output)) if output not in paths else None
            if output in paths or same_file is not None:
                one_file = " (the two names are one file)" if same_file else ""
                raise UserError(
                    f"--output-dir {output_dir} would write {output_dir / name} over the input "
                    f"{paths.get(output, same_file)}{one_file}; pick an --output-dir outside "
                    "the inputs"
                )
            if output in planned:
                raise UserError(
                    f"the outputs of {planned[output]} and {found.path} would both be "
                    f"{output_dir / name}{clash_hint}; rename one of them"
                )
            planned[output] = found.path


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file (two names of one file share it), else None."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def make_output_dir(output_dir: Path) -> None:
    """Create --output-dir (and its parents); a UserError when that is impossible."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create --output-dir {output_dir} ({error.strerror or error}); "
            "pick a writable folder"
        ) from None


def save_picture(picture: Image.Image, path: Path, **options) -> None:
    """Save a PIL image (options: PIL's save arguments, its format among them) under a
    temporary name and rename it into place: never a half-written file under `path`."""
    temporary = path.with_name(f".{path.name}.partial")
    try:
        picture.save(temporary, **options)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class OutputFilePredictions(ABC):
    """Predictions written as files under --output-dir: each group of a batch run whole (or in
    tiles), its files written, one record per input printed to stdout as a JSON line, in input
    order, and the written and failed inputs counted. A task subclasses it with write_group
    (run the model on a group, write each input's files: their records) and summary."""

    def __init__(self, output_dir: Path, grid: ModelGrid, tiling: Tiling | None) -> None:
        self.output_dir, self.grid, self.tiling = output_dir, grid, tiling
        self.written = self.failed = 0
        self._records: dict[int, dict] = {}

    def __enter__(self) -> "OutputFilePredictions":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """Nothing to close: each file is written whole (under a temporary name) as it comes;
        an error goes on up."""
        return None

    @property
    def records(self) -> list[dict]:
        """Every input's record so far, in input order (a failed input's: {"path", "error"})."""
        return [self._records[index] for index in sorted(self._records)]

    def add(self, predictor: Predictor, batch: PredictionBatch) -> None:
        """Predict the batch's inputs and write their files; print their records in order."""
        records = {index: {"path": str(found.path), "error": reason}
                   for index, found, reason in batch.failures}  # fmt: skip
        for group in batch.groups:
            if reason := too_large(group.batch, self.grid, self.tiling):
                outcomes = [{"path": str(found.path), "error": f"{found.path} {reason}"}
                            for found in group.inputs]  # fmt: skip
            else:
                outcomes = self.write_group(predictor, group)
            records.update(zip(group.indices, outcomes, strict=True))
        for index in sorted(records):
            self._record(index, records[index])
        sys.stdout.flush()

    @abstractmethod
    def write_group(self, predictor: Predictor, group: InputGroup) -> list[dict]:
        """Run the model on one group and write each input's files: their records, in order."""

    @abstractmethod
    def summary(self) -> str:
        """One line: how many inputs were written, how many failed, where the files went."""

    def _record(self, index: int, record: dict) -> None:
        if "error" in record:
            self.failed += 1
        else:
            self.written += 1
        self._records[index] = record
        print(json.dumps(record))
