"""Jinja extensions cookiecutter loads from this folder (cookiecutter.json's `_extensions`).

An empty or "." project_slug renders the project folder's name to the output folder itself,
which cookiecutter refuses with "directory already exists" before the pre-gen hook can run.
The `project_folder` filter, applied to the slug while the answers are read (the private
`__project_folder` answer), refuses such a slug with the pre-gen hook's own sentence first.
The `task_default` and `task_catalog` filters read the task folders (template_tasks.py).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from cookiecutter.exceptions import FailedHookException
from jinja2 import Environment
from jinja2.ext import Extension

from template_tasks import catalog, task_default

PRE_GEN_HOOK = Path(__file__).resolve().parent / "hooks" / "pre_gen_project.py"
# What names no new folder: nothing, dots and slashes (".", "./", "..", "/").
NO_FOLDER = re.compile(r"[\s./\\]*")


def project_folder(slug: str) -> str:
    """Return the slug; raise the pre-gen hook's sentence if it names no new folder."""
    if not NO_FOLDER.fullmatch(str(slug)):
        return slug
    spec = importlib.util.spec_from_file_location("pre_gen_project_rules", PRE_GEN_HOOK)
    assert spec and spec.loader
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)  # the module stays importable unrendered (its docstring)
    rules = [rule for rule in hook.RULES if rule.answer == "project_slug"]
    [error] = hook.check_answers({"project_slug": slug}, rules)
    # cookiecutter's command line prints this exception's text as its only line, exit 1.
    raise FailedHookException(error)


class ProjectFolderCheck(Extension):
    """Adds the `project_folder` filter."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["project_folder"] = project_folder


class TaskDefaults(Extension):
    """Adds the `task_default` filter (cookiecutter.json's default answers for the chosen task)
    and `task_catalog` (what the hooks need about every task), read from the task folders."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["task_default"] = task_default
        environment.filters["task_catalog"] = lambda _: catalog()
