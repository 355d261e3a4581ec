"""The template's tasks, read from their folders: `{{project}}/_tasks/<task>/manifest.json`.

Every list the hooks, cookiecutter.json's defaults and the template's tests need about the tasks
is derived here from the folders, so adding a task is its folder plus its row among
cookiecutter.json's `task` choices (which cookiecutter itself needs to prompt for it).

A manifest holds what the folder's files cannot say themselves:
    prompt                the text cookiecutter shows for the choice (cookiecutter.json's
                          __prompts__ row must say the same; a test holds them equal)
    project_name, model_name, description
                          the default answers for this task
    model_module_classes  classes the model module re-exports beside the model class (a model
                          class of the same name could not live there)
    own_words             words only this task's files use (a bake of another task has none)
    test_bake             extra answers of this task's bake in the template's test matrix
    natural_model_name    a model name that shadows a common module (the tests train with it)
The modules a task owns are not listed: they are the files of its folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# Spelled in two pieces: cookiecutter renders the hooks that import this module with Jinja.
PROJECT_FOLDER = "{" + "{cookiecutter.project_slug}}"
PACKAGE_FOLDER = "{" + "{cookiecutter.package_name}}"
MODEL_FILE = "{" + "{cookiecutter.model_name}}.py"
TASKS = "_tasks"
MANIFEST = "manifest.json"
README_PARTS = "readme.md"  # the task's parts of the generated README (Jinja macros)
# Files of a task folder that describe the task to the template and are not copied in.
TEMPLATE_ONLY = (MANIFEST, README_PARTS)
REPO = Path(__file__).resolve().parent
REQUIRED = ("prompt", "project_name", "model_name", "description")


@dataclass(frozen=True)
class TaskManifest:
    """One task folder's manifest (the module docstring says what each field is for)."""

    name: str
    prompt: str
    project_name: str
    model_name: str
    description: str
    model_module_classes: tuple[str, ...] = ()
    own_words: tuple[str, ...] = ()
    test_bake: dict = field(default_factory=dict)
    natural_model_name: str = "model"


def tasks_folder(repo: Path = REPO) -> Path:
    """The folder holding one folder per task."""
    return repo / PROJECT_FOLDER / TASKS


def read_manifest(folder: Path) -> TaskManifest:
    """The manifest of one task folder; a missing field names the file and the field."""
    path = folder / MANIFEST
    fields = json.loads(path.read_text(encoding="utf-8"))
    missing = [name for name in REQUIRED if not isinstance(fields.get(name), str)]
    if missing:
        raise ValueError(f"{path} has no {missing[0]!r} text; every task manifest needs one.")
    for name in ("model_module_classes", "own_words"):
        fields[name] = tuple(fields.get(name, ()))
    return TaskManifest(folder.name, **fields)


def read_tasks(repo: Path = REPO) -> dict[str, TaskManifest]:
    """Every task of the template, by name, in folder-name order."""
    folders = sorted(path for path in tasks_folder(repo).iterdir() if path.is_dir())
    return {folder.name: read_manifest(folder) for folder in folders}


def package_modules(folder: Path) -> set[str]:
    """The module and subpackage names a package folder of the template holds."""
    if not folder.is_dir():
        return set()
    return {
        path.stem if path.suffix == ".py" else path.name
        for path in folder.iterdir()
        if path.name != MODEL_FILE and path.name != "__pycache__"
        and (path.is_dir() or path.suffix == ".py")
    }  # fmt: skip


def project_package_modules(task: str, repo: Path = REPO) -> set[str]:
    """The names inside the generated package of `task`: the shared ones and the task's own."""
    shared = package_modules(repo / PROJECT_FOLDER / PACKAGE_FOLDER)
    own = package_modules(tasks_folder(repo) / task / PACKAGE_FOLDER)
    return shared | own | {"__init__"}


def task_default(task: str, answer: str) -> str:
    """cookiecutter.json's default for `answer` (project_name, model_name, ...) for `task`;
    empty for a task the template lacks (the pre-gen hook refuses that task in one sentence)."""
    tasks = read_tasks()
    return getattr(tasks[task], answer) if task in tasks else ""


def catalog(repo: Path = REPO) -> dict:
    """What the hooks need about the tasks, as JSON-ready data (the `task_catalog` filter
    renders it into them: a hook runs from a temporary copy and cannot find this folder)."""
    return {
        "tasks": {
            name: {
                "package_modules": sorted(project_package_modules(name, repo)),
                "model_module_classes": list(task.model_module_classes),
                "project_name": task.project_name,
                "model_name": task.model_name,
            }
            for name, task in read_tasks(repo).items()
        },
        "template_only": list(TEMPLATE_ONLY),
    }
