"""Input files on disk, for any task: the files, folders (searched recursively) and glob patterns
a user names, found once each, with names for their outputs that do not clash."""

from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .errors import UserError

GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class InputKind:
    """What a task's prediction inputs are: their name in messages, the suffixes a folder
    search picks up (a file named on the command line is tried whatever its suffix; none:
    every file), and a glob pattern to suggest."""

    noun: str
    suffixes: frozenset[str] = frozenset()
    example: str = "inputs/*"


@dataclass(frozen=True)
class InputFile:
    """An input file: its path, and the name its outputs get (unique among the inputs)."""

    path: Path
    name: str  # a file's own name; under a folder given as input, the path relative to it


def files_under(folder: Path, suffixes: Set[str], skip: Iterable[Path] = ()) -> list[Path]:
    """Every file under `folder` whose suffix is one of `suffixes` (any suffix when it is
    empty), recursively, sorted; hidden files and folders skipped, and so is what lies in a
    `skip` folder inside `folder`."""
    skipped = _folders_inside(folder, skip)
    return sorted(
        path
        for path in folder.rglob("*")  # enters no symlinked folder: a link loop cannot trap it
        if (not suffixes or path.suffix.lower() in suffixes)
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and not (skipped and _is_in(path, skipped))
    )


def _folders_inside(root: Path, folders: Iterable[Path]) -> list[Path]:
    """Those of `folders` that lie inside `root` (not `root` itself), resolved. A skip folder
    that holds the whole input is no reason to skip it: writing over it is refused instead."""
    root = root.resolve()
    resolved = (folder.resolve() for folder in folders)
    return [folder for folder in resolved if folder != root and folder.is_relative_to(root)]


def _is_in(path: Path, folders: list[Path]) -> bool:
    """Whether `path` lies in (or is) one of `folders` (resolved paths), however it is spelled."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder) for folder in folders)


def find_inputs(
    inputs: Sequence[str], kind: "InputKind", skip: Iterable[Path] = ()
) -> list[InputFile]:
    """The input files that files, folders (searched recursively) and glob patterns name.

    Folders and patterns leave out what lies in a `skip` folder inside them (where predictions
    go: a rerun does not take the last run's outputs for inputs). A path that does not exist is
    kept beside files that do (loading it fails, and its record says so); no input at all, or
    two inputs whose outputs would share a name, is a UserError.
    """
    skip = list(skip)
    found: dict[Path, InputFile] = {}
    for text in inputs:
        for file in _expand(text, kind, skip):
            found.setdefault(file.path.absolute(), file)  # the same file named twice: once
    if not any(file.path.exists() for file in found.values()):
        suffixes = f" ({', '.join(sorted(kind.suffixes))})" if kind.suffixes else ""
        missing = [text for text in inputs
                   if not GLOB_CHARACTERS & set(text) and not Path(text).exists()]  # fmt: skip
        gone = f" ({', '.join(missing)}: no such file or folder)" if missing else ""
        raise UserError(
            f"no {kind.noun} found in {', '.join(inputs)}{gone}; give {kind.noun} files, "
            f"folders of {kind.noun}s{suffixes} or glob patterns such as '{kind.example}'"
        )
    _check_unique_names(list(found.values()))
    return list(found.values())


def _expand(text: str, kind: "InputKind", skip: list[Path]) -> list[InputFile]:
    """The files one command-line input names (a missing file stays, to be reported)."""
    path = Path(text)
    if path.is_dir():
        files = files_under(path, kind.suffixes, skip)
        return [InputFile(file, file.relative_to(path).as_posix()) for file in files]
    if path.exists() or not GLOB_CHARACTERS & set(text):
        return [InputFile(path, path.name)]
    matches = glob_paths(text, skip)
    files = [InputFile(match, match.name) for match in matches if match.is_file()]
    for folder in (match for match in matches if match.is_dir()):
        files += _expand(str(folder), kind, skip)
    return files


def glob_paths(pattern: str, skip: Iterable[Path] = ()) -> list[Path]:
    """The paths a glob pattern matches, sorted, but none in a `skip` folder below the pattern's
    fixed start. Found as the shell's globstar finds them: `**` enters no symlinked folder (a
    link to its own folder would make the search endless), and a name that starts with a dot
    matches only a pattern part that starts with one."""
    parts = Path(pattern).parts
    first_pattern = next(index for index, part in enumerate(parts) if GLOB_CHARACTERS & set(part))
    root, relative = Path(*parts[:first_pattern]), Path(*parts[first_pattern:])
    skipped = _folders_inside(root, skip)
    try:
        return sorted(
            match
            for match in root.glob(str(relative))
            if _shown(match.relative_to(root), relative)
            and not (skipped and _is_in(match, skipped))
        )
    except ValueError as error:  # such as '**' inside a name
        raise UserError(
            f"cannot read the glob pattern {pattern} ({error}); use * within names and ** "
            "alone between slashes, as in 'photos/**/*.jpg'"
        ) from None


def _shown(relative: Path, pattern: Path) -> bool:
    """Whether every hidden part of `relative` is matched by a pattern part that starts with a
    dot (as the shell does: `*` and `**` pass over hidden files and folders)."""
    dotted = [part for part in pattern.parts if part.startswith(".")]
    return all(
        any(fnmatchcase(part, dotted_part) for dotted_part in dotted)
        for part in relative.parts
        if part.startswith(".")
    )


def _check_unique_names(files: list[InputFile]) -> None:
    """Refuse inputs whose outputs would overwrite each other (same name from two folders)."""
    first_with_name: dict[str, Path] = {}
    for file in files:
        other = first_with_name.setdefault(file.name, file.path)
        if other != file.path:
            raise UserError(
                f"{other} and {file.path} would both be called {file.name} in the outputs; "
                "give the folder above both as the input (names then keep their sub-folders)"
            )
