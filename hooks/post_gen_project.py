"""Add the task's files, trim the project to the answers, write its CI matrix, smoke-train it.

Cookiecutter renders this file with Jinja and runs it inside the new project folder; a
non-zero exit makes it delete the project (unless --keep-project-on-failure is given).
The smoke step is the project's own `smoke_test.py` (torch-free, so any interpreter runs it),
which runs `python train.py --smoke-test --device <backend>` once per backend the interpreter
can use. Environment overrides (for CI): SMOKE_TEST (auto/required/off), SMOKE_DEVICES (e.g.
cpu,cuda), SMOKE_PYTHON (interpreter), SMOKE_TIMEOUT (seconds per backend).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Condition = Callable[[dict[str, Any]], bool]


# Each task's own files (its task module, data, model, the layers/losses/ops only it uses, its
# tests) live in one folder per task, `_tasks/<task>/`, at their project-relative paths; the
# shared tree holds only task-agnostic files. The hook moves the chosen task's files into the
# project (all but the files that describe the task to the template) and removes `_tasks/`.
TASKS = "_tasks"

# What the template's task folders say (template_tasks.py), rendered in by cookiecutter; left
# unrendered when the tests import this module, which then reads the folders themselves.
TASK_CATALOG = r'''{{ cookiecutter | task_catalog | tojson }}'''  # fmt: skip


@functools.cache
def task_catalog() -> dict[str, Any]:
    """Every task's package modules and model-module classes, and the template-only files."""
    if TASK_CATALOG.startswith("{" + "{"):
        import template_tasks

        return template_tasks.catalog()
    return json.loads(TASK_CATALOG)


# (condition on the answers, project paths it removes); later options add rows here.
# `is False`: the pre-gen hook has already refused anything that is not a JSON boolean.
EXCLUSIONS: list[tuple[Condition, list[str]]] = [
    (lambda answers: answers.get("license") == "none", ["LICENSE"]),
    (lambda answers: answers.get("github_actions") is False, [".github"]),
    (lambda answers: answers.get("pre_commit") is False, [".pre-commit-config.yaml"]),
]
# The GitHub workflow is copied without rendering (its expressions are GitHub's): this hook writes
# its Python matrix, the floor the project declares and the newest Python it supports.
WORKFLOW = Path(".github/workflows/ci.yml")
MATRIX_LINE = re.compile(r"^(?P<indent>\s*)python: \[.*\]$", re.MULTILINE)
NEWEST_PYTHON = "3.12"
MODES = ("auto", "required", "off")
BACKENDS = ("cpu", "cuda", "mps")
DEFAULT_TIMEOUT = 300.0
SMOKE_SCRIPT = "smoke_test.py"  # the project's own smoke test: `python smoke_test.py --help`
BACKEND_FAILED = 1  # its exit status when a backend failed (2: it could not run at all)
CACHE_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
KEEP_HINT = "rerun with --keep-project-on-failure to keep the project and debug it"


class SmokeError(Exception):
    """A problem that stops the smoke step; its text is one sentence for the user."""


@dataclass(frozen=True)
class Settings:
    """How to run the smoke step: the answer, overridden by SMOKE_* environment variables."""

    mode: str
    devices: tuple[str, ...]  # empty: every backend
    python: str
    timeout: float


def remove_excluded(project: Path, answers: dict[str, Any]) -> list[str]:
    """Delete the files and folders that the answers exclude; return their paths."""
    removed = []
    for applies, paths in EXCLUSIONS:
        if not applies(answers):
            continue
        for relative in paths:
            path = project / relative
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            removed.append(relative)
    return removed


def add_task_files(project: Path, answers: dict[str, Any]) -> list[str]:
    """Move the chosen task's files into the project at their paths; remove every task folder."""
    source = project / TASKS / answers["task"]
    added = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source)
        if relative.as_posix() in task_catalog()["template_only"]:
            continue
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        path.replace(project / relative)
        added.append(relative.as_posix())
    shutil.rmtree(project / TASKS)
    return added


def ci_pythons(answers: dict[str, Any]) -> list[str]:
    """The Pythons CI tests: the declared floor (python_requires) and the newest, once each."""
    return list(dict.fromkeys([str(answers.get("python_requires", NEWEST_PYTHON)), NEWEST_PYTHON]))


def write_ci_matrix(project: Path, answers: dict[str, Any]) -> None:
    """Write the workflow's Python matrix line (no workflow, e.g. github_actions=no: nothing)."""
    path = project / WORKFLOW
    if not path.is_file():
        return
    versions = ", ".join(f'"{version}"' for version in ci_pythons(answers))
    text, count = MATRIX_LINE.subn(rf"\g<indent>python: [{versions}]", path.read_text(), count=1)
    if count != 1:
        raise SmokeError(f"{WORKFLOW} has no 'python: [...]' matrix line to write.")
    path.write_text(text)


def next_steps(project: Path, answers: dict[str, Any]) -> str:
    """What to type after generation: install, train, evaluate (and pre-commit, if chosen)."""
    steps = [f"cd {project.name}", 'pip install -e ".[dev]"']
    if answers.get("pre_commit") is True:
        steps.append("git init && pre-commit install   # no git init inside an existing repository")
    steps += ["python train.py", "python test.py --checkpoint runs/<run>/checkpoints/best.pt"]
    return "Next steps:\n" + "".join(f"    {step}\n" for step in steps)


def read_settings(answers: dict[str, Any], environ: Mapping[str, str]) -> Settings:
    """Combine the smoke_test answer with the SMOKE_* environment overrides."""
    mode = environ.get("SMOKE_TEST") or answers.get("smoke_test") or "auto"
    if mode not in MODES:
        raise SmokeError(f"SMOKE_TEST={mode!r} is not one of auto, required, off.")
    devices = [d.strip().lower() for d in environ.get("SMOKE_DEVICES", "").split(",")]
    devices = list(dict.fromkeys(d for d in devices if d))  # drop blanks and repeats
    unknown = [d for d in devices if d not in BACKENDS]
    if unknown:
        raise SmokeError(f"SMOKE_DEVICES names unknown backend {unknown[0]!r}; use cpu, cuda, mps.")
    try:
        timeout = float(environ.get("SMOKE_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise SmokeError(f"SMOKE_TIMEOUT={environ['SMOKE_TIMEOUT']!r} is not a number of seconds.")
    python = environ.get("SMOKE_PYTHON") or sys.executable
    # Resolve a bare command now: the subprocesses run in the project folder, not the caller's.
    return Settings(mode, tuple(devices), shutil.which(python) or python, timeout)


def smoke_env() -> dict[str, str]:
    """Environment of the smoke subprocess: no bytecode caches in the new project."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def smoke_command(settings: Settings) -> list[str]:
    """The project's smoke test as the settings ask for it, run by the chosen interpreter."""
    command = [settings.python, SMOKE_SCRIPT, "--mode", settings.mode]
    command += ["--timeout", repr(settings.timeout), "--python", settings.python]
    if settings.devices:
        command += ["--devices", ",".join(settings.devices)]
    return command


def smoke(project: Path, settings: Settings) -> int:
    """Run the project's smoke test, its output streaming through; 0 when it passes."""
    sys.stdout.flush()  # keep what cookiecutter printed ahead of the script's lines
    try:
        proc = subprocess.run(
            smoke_command(settings), cwd=project, env=smoke_env(), stdin=subprocess.DEVNULL
        )
    except OSError as exc:
        raise SmokeError(f"cannot run the interpreter {settings.python!r} ({exc}).") from exc
    if proc.returncode == BACKEND_FAILED:
        print(f"The project is not kept; {KEEP_HINT}.", file=sys.stderr)
    return 0 if proc.returncode == 0 else 1


def snapshot(project: Path) -> set[Path]:
    """Every path in the project, so that whatever the smoke run adds can be removed."""
    found = set()
    for root, dirs, files in os.walk(project):
        found.update(Path(root, name) for name in (*dirs, *files))
    return found


def clean_up(project: Path, keep: set[Path]) -> None:
    """Remove everything not in `keep` (runs/, checkpoints) and every cache folder."""
    for root, dirs, files in os.walk(project):
        for name in (*dirs, *files):
            path = Path(root, name)
            if path in keep and name not in CACHE_NAMES:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        dirs[:] = [d for d in dirs if Path(root, d).is_dir()]  # skip what was just removed


def main() -> int:
    """Add the task's files, trim the project, then run the smoke step unless it is off."""
    # tojson writes ' < > & as \u escapes, so no answer can close this '''-quoted raw literal.
    answers = json.loads(r'''{{ cookiecutter | tojson }}''')  # fmt: skip
    project = Path.cwd()
    remove_excluded(project, answers)
    add_task_files(project, answers)
    before = snapshot(project)
    try:
        write_ci_matrix(project, answers)
        settings = read_settings(answers, os.environ)
        code = 0 if settings.mode == "off" else smoke(project, settings)
        if code == 0:
            print(next_steps(project, answers), end="")
        return code
    except SmokeError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        clean_up(project, before)  # whatever happened, leave only the generated files


if __name__ == "__main__":
    sys.exit(main())
