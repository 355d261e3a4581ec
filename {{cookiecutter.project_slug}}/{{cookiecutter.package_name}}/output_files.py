"""predict.py's output files under --output-dir, named after their inputs: planned before any
work, so that none lands on an input or on another input's output, and the folder made.

An output "lands on an input" under the input's own path, or under another name of the same
file: a hard link, or another letter case on a case-insensitive disk (macOS, Windows), where
photo.png would replace photo.PNG.
"""

from collections.abc import Callable
from pathlib import Path

from .errors import UserError
from .input_files import InputFile


def check_outputs(
    output_dir: Path,
    inputs: list[InputFile],
    output_names: Callable[[InputFile], list[str]],
    clash_hint: str = "",
) -> None:
    """Refuse, in one sentence, outputs (output_names(input), relative to --output-dir) that
    would overwrite an input or each other; clash_hint says how outputs are named."""
    paths = {found.path.resolve(): found.path for found in inputs}
    input_ids = {_file_id(path) for path in paths} - {None}
    planned: dict[Path, Path] = {}
    for found in inputs:
        for name in output_names(found):
            output = (output_dir / name).resolve()
            if output in paths or _file_id(output) in input_ids:
                raise UserError(
                    f"--output-dir {output_dir} would write {output_dir / name} over the input "
                    f"{paths.get(output, output)}; pick an --output-dir outside the inputs"
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
