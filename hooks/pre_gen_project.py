"""Refuse a bad template answer with one clear sentence, before anything is written.

Cookiecutter renders this file with Jinja and runs it inside the new, still empty, project
folder; a non-zero exit makes it delete that folder, so a refusal leaves nothing on disk.
The module stays importable unrendered (the answers are read in main()) so tests can load it.
"""

from __future__ import annotations

import difflib
import functools
import json
import keyword
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

# PEP 440 Appendix B: the canonical public version form (what PyPI shows); no local "+tag".
PEP440 = re.compile(
    r"([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*((a|b|rc)(0|[1-9][0-9]*))?"
    r"(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?"
)
LOWER_WITH_UNDER = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
SLUG = re.compile(r"[a-z][a-z0-9_-]*")
# Plain ASCII only: the address lands inside TOML and Markdown without escaping.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# A key=value argument of the cookiecutter command line (an answer given as extra context).
ANSWER_ARGUMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")

# What the generated project, its tests and its packaging import (and its own train/test
# scripts); a package of the same name would shadow them.
DEPENDENCIES = {
    *("torch", "torchvision", "tqdm", "tensorboard", "torchinfo", "prefetch_generator"),
    *("yaml", "tomli"),  # config files (engine/config.py)
    *("numpy", "PIL", "google", "setuptools", "pkg_resources", "pip", "pytest"),
    *("test", "tests", "data", "train"),
}
STDLIB = sys.stdlib_module_names
# Longest names that keep every generated line within ruff's 100 columns (the model's class
# name sits inside code lines, the package name only in import lines).
MAX_PACKAGE_NAME = 40
MAX_MODEL_NAME = 32
# Spelled without braces side by side: cookiecutter renders this file with Jinja.
JINJA_MARKERS = tuple("{" + mark for mark in ("{", "%", "#"))

Check = Callable[[Any, dict[str, Any]], bool]
# An example a refusal suggests: a fixed value, or one read from the other answers.
Example = str | bool | Callable[[dict[str, Any]], str]


class Rule(NamedTuple):
    """One row of the table: the answer is refused with `reason` when `check` is false."""

    answer: str
    check: Check
    reason: str  # may use {value}
    example: Example

    def example_for(self, answers: dict[str, Any]) -> str | bool:
        """The example to suggest, given the other answers (a task's own default names)."""
        return self.example(answers) if callable(self.example) else self.example


def matches(pattern: re.Pattern[str]) -> Check:
    """Check that a string answer matches the whole pattern."""
    return lambda value, _: isinstance(value, str) and pattern.fullmatch(value) is not None


def one_line(value: Any, _: dict[str, Any]) -> bool:
    """Check free text: a non-empty single line without control characters."""
    return isinstance(value, str) and bool(value.strip()) and value.isprintable()


def not_keyword(value: Any, _: dict[str, Any]) -> bool:
    """Check that an identifier is not a Python keyword (import would be a syntax error)."""
    return not keyword.iskeyword(value)


def not_in(names: Iterable[str]) -> Check:
    """Check that a name is none of `names`, ignoring case (case-insensitive file systems)."""
    taken = {name.casefold() for name in names}
    return lambda value, _: value.casefold() not in taken


def at_most(length: int) -> Check:
    """Check that a name has at most `length` characters."""
    return lambda value, _: len(value) <= length


# What the template's task folders say (template_tasks.py), rendered in by cookiecutter; left
# unrendered when the tests import this module, which then reads the folders themselves.
TASK_CATALOG = r'''{{ cookiecutter | task_catalog | tojson }}'''  # fmt: skip


@functools.cache
def task_catalog() -> dict[str, Any]:
    """Every task's package modules, model-module classes and default names; template-only files."""
    if TASK_CATALOG.startswith("{" + "{"):
        import template_tasks

        return template_tasks.catalog()
    return json.loads(TASK_CATALOG)


def known_task(value: Any, _: dict[str, Any]) -> bool:
    """Check that the task answer names a task folder of the template."""
    return value in task_catalog()["tasks"]


def not_a_package_module(value: Any, answers: dict[str, Any]) -> bool:
    """Check that a model name is no module of the generated package (shared or the task's own):
    the model file would replace it."""
    if not known_task(answers.get("task"), answers):
        return True  # the task answer is refused on its own
    modules = task_catalog()["tasks"][answers["task"]]["package_modules"]
    return not_in(modules)(value, answers)


def model_class_free(value: Any, answers: dict[str, Any]) -> bool:
    """Check that the model's class name (CapWords form) is not a class its module re-exports."""
    task = task_catalog()["tasks"].get(answers.get("task"))
    return task is None or model_class(value) not in task["model_module_classes"]


def model_class(model_name: str) -> str:
    """The class name cookiecutter.json derives from model_name (its __model_class)."""
    return model_name.title().replace("_", "")


def differs_from(other: str) -> Check:
    """Check that the answer is not the same as another answer."""
    return lambda value, answers: value != answers.get(other)


def choice(answer: str, options: Sequence[str]) -> Rule:
    """Row for a choice answer (replay files and old CLIs can bypass cookiecutter's check)."""
    listed = ", ".join(options)
    return Rule(answer, lambda value, _: value in options, f"is not one of {listed}", options[0])


def yes_no(answer: str) -> Rule:
    """Row for a JSON-boolean answer (only a replay file can bypass cookiecutter's own check)."""
    return Rule(answer, lambda value, _: isinstance(value, bool), "is not true or false", True)


def task_defaults(answers: dict[str, Any]) -> dict[str, str]:
    """The default project_name, project_slug, package_name and model_name of the chosen task
    (of the first task when the task answer is refused), derived as cookiecutter.json does."""
    tasks = task_catalog()["tasks"]
    task = tasks.get(answers.get("task")) or next(iter(tasks.values()))
    slug = task["project_name"].lower().strip().replace(" ", "-").replace("_", "-")
    slug = slug.replace("/", "-")
    return {"project_name": task["project_name"], "project_slug": slug,
            "package_name": slug.replace("-", "_"), "model_name": task["model_name"]}  # fmt: skip


def task_example(answer: str) -> Callable[[dict[str, Any]], str]:
    """An example that is the chosen task's default for `answer`."""
    return lambda answers: task_defaults(answers)[answer]


PROJECT, SLUG_EXAMPLE = task_example("project_name"), task_example("project_slug")
PACKAGE, MODEL = task_example("package_name"), task_example("model_name")
MIN_COOKIECUTTER = (2, 7)
TEXT = "must be one line of printable text"
TOO_LONG = "is longer than {} characters"
LOSS_CLASS = "would give the model class the name of a loss class its module re-exports"
FOLDER = "is not a folder name of lowercase letters, digits, - and _ that starts with a letter"

# At most one message per answer: the first failing row of that answer (rows run in order).
RULES: list[Rule] = [
    Rule("project_name", one_line, TEXT, PROJECT),
    Rule("project_slug", matches(SLUG), FOLDER, SLUG_EXAMPLE),
    Rule("package_name", matches(LOWER_WITH_UNDER), "is not a lower_with_under name", PACKAGE),
    Rule("package_name", not_keyword, "is a Python keyword", PACKAGE),
    Rule("package_name", not_in(DEPENDENCIES), "shadows the {value} library", PACKAGE),
    Rule("package_name", not_in(STDLIB), "shadows the standard-library module {value}", PACKAGE),
    Rule("package_name", at_most(MAX_PACKAGE_NAME), TOO_LONG.format(MAX_PACKAGE_NAME), PACKAGE),
    Rule("task", known_task, "is not one of {tasks}", "classification"),
    Rule("model_name", matches(LOWER_WITH_UNDER), "is not a lower_with_under name", MODEL),
    Rule("model_name", not_keyword, "is a Python keyword", MODEL),
    Rule("model_name", not_a_package_module, "clashes with the package's {value} module", MODEL),
    Rule("model_name", differs_from("package_name"), "is the package name too", MODEL),
    Rule("model_name", at_most(MAX_MODEL_NAME), TOO_LONG.format(MAX_MODEL_NAME), MODEL),
    Rule("model_name", model_class_free, LOSS_CLASS, MODEL),
    Rule("description", one_line, TEXT, "Trains a model."),
    Rule("author_name", one_line, TEXT, "Ada Lovelace"),
    Rule("author_email", matches(EMAIL), "is not an email address", "you@example.com"),
    Rule("version", matches(PEP440), "is not a canonical PEP 440 version", "0.1.0"),
    choice("python_requires", ["3.10", "3.11", "3.12"]),
    choice("license", ["MIT", "BSD-3-Clause", "Apache-2.0", "none"]),
    yes_no("github_actions"),
    yes_no("pre_commit"),
    choice("smoke_test", ["auto", "required", "off"]),
]


def jinja_errors(answers: dict[str, Any]) -> list[str]:
    """One sentence per answer that still holds Jinja after cookiecutter rendered it.

    Such an answer would be stored in .cookiecutter.json and run again as a template when that
    file is fed back to cookiecutter, so it is never accepted.
    """
    return [
        f"ERROR: {name} {value!r} still holds Jinja template syntax after cookiecutter rendered "
        "it; remove the braces (answers are rendered as templates: never paste answers from an "
        "untrusted file)."
        for name, value in answers.items()
        if not name.startswith("_")
        and isinstance(value, str)
        and any(mark in value for mark in JINJA_MARKERS)
    ]


def task_names() -> list[str]:
    """The template's tasks, in the order of their folders' names."""
    return list(task_catalog()["tasks"])


def check_answers(answers: dict[str, Any], rules: Sequence[Rule] = RULES) -> list[str]:
    """Return one error sentence per wrong answer (empty when all are fine)."""
    errors = jinja_errors(answers)
    refused = {error.split()[1] for error in errors}
    for rule in rules:
        if rule.answer in refused:
            continue
        value = answers.get(rule.answer)
        if not rule.check(value, answers):
            refused.add(rule.answer)
            reason = rule.reason.format(value=value, tasks=", ".join(task_names()))
            example = rule.example_for(answers)
            errors.append(
                f"ERROR: {rule.answer} {value!r} {reason}; pick another, e.g. {example!r}."
            )
    return errors


def cookiecutter_version_error(version: str) -> list[str]:
    """One sentence if the running cookiecutter is older than 2.7 (its CLI booleans were broken)."""
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    if (major, minor) >= MIN_COOKIECUTTER:
        return []
    return [
        f"ERROR: cookiecutter {version} is too old for this template; "
        f"upgrade it, e.g. pip install 'cookiecutter>=2.7'."
    ]


def command_line_answers(argv: Sequence[str]) -> dict[str, str]:
    """The key=value answers of a cookiecutter command line as typed (none for others)."""
    if not any(Path(arg).name in ("cookiecutter", "cookiecutter.exe") for arg in argv[:3]):
        return {}
    return dict(arg.split("=", 1) for arg in argv if ANSWER_ARGUMENT.match(arg))


def command_line_keys(argv: Sequence[str]) -> list[str]:
    """The keys of the key=value answers of a cookiecutter command line (none for others)."""
    return list(command_line_answers(argv))


def typed_jinja_errors(typed: dict[str, str], answers: dict[str, Any]) -> list[str]:
    """One sentence per answer typed on the command line with Jinja in it: cookiecutter ran it
    as a template before this hook (a project_name of 7*7 in braces arrives as 49), so the
    answer the project would record is not what was typed. Answers that still hold Jinja
    after rendering are refused by check_answers instead."""
    return [
        f"ERROR: {name} {value!r} on the command line holds Jinja template syntax, which "
        f"cookiecutter ran as a template (it became {answers[name]!r}); remove the braces "
        "(never paste answers from an untrusted source)."
        for name, value in typed.items()
        if name in answers
        and any(mark in value for mark in JINJA_MARKERS)
        and not any(mark in str(answers[name]) for mark in JINJA_MARKERS)
    ]


def parent_command_line() -> list[str]:
    """The arguments of the process running this hook (cookiecutter); empty where unreadable."""
    try:  # Linux
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    except OSError:
        pass
    try:  # macOS and other Unixes: ps joins the arguments with spaces, enough to find key=
        command = ["ps", "-ww", "-o", "args=", "-p", str(os.getppid())]
        return subprocess.run(command, capture_output=True, text=True, timeout=5).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []


def unknown_key_warnings(keys: Iterable[str], known: Sequence[str]) -> list[str]:
    """One warning per key that is not an answer of this template, naming the closest one."""
    warnings = []
    for key in dict.fromkeys(keys):
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"the answers are {', '.join(known)}."
        warnings.append(f"WARNING: {key} is not an answer of this template (ignored); {hint}")
    return warnings


def main() -> int:
    """Validate the rendered answers; print every refusal and exit 1 if there is one."""
    import cookiecutter  # hooks run in the interpreter that runs cookiecutter

    # tojson writes ' < > & as \u escapes, so no answer can close this '''-quoted raw literal.
    answers = json.loads(r'''{{ cookiecutter | tojson }}''')  # fmt: skip
    known = sorted(name for name in answers if not name.startswith("_"))
    typed = command_line_answers(parent_command_line())
    for warning in unknown_key_warnings(typed, known):
        print(warning, file=sys.stderr)
    errors = cookiecutter_version_error(cookiecutter.__version__)
    errors += typed_jinja_errors(typed, answers) + check_answers(answers)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
