"""Refuse a bad template answer with one clear sentence, before anything is written.

Cookiecutter renders this file with Jinja and runs it inside the new, still empty, project
folder; a non-zero exit makes it delete that folder, so a refusal leaves nothing on disk.
The module stays importable unrendered (the answers are read in main()) so tests can load it.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Callable, Iterable, Sequence
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

# What the generated project, its tests and its packaging import (and its own train/test
# scripts); a package of the same name would shadow them.
DEPENDENCIES = {
    *("torch", "torchvision", "tqdm", "tensorboard", "torchinfo", "prefetch_generator"),
    *("numpy", "PIL", "google", "setuptools", "pkg_resources", "pip", "pytest"),
    *("test", "tests", "data", "train"),
}
STDLIB = sys.stdlib_module_names
# Module names inside the generated package (DESIGN.md section 2).
PACKAGE_MODULES = {"layers", "losses", "ops", "data", "engine", "utils", "__init__"}

Check = Callable[[Any, dict[str, Any]], bool]


class Rule(NamedTuple):
    """One row of the table: the answer is refused with `reason` when `check` is false."""

    answer: str
    check: Check
    reason: str  # may use {value}
    example: str | bool


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


PACKAGE, MODEL = "image_classifier", "small_resnet"  # examples shown in refusals
MIN_COOKIECUTTER = (2, 7)
TEXT = "must be one line of printable text"
FOLDER = "is not a folder name of lowercase letters, digits, - and _ that starts with a letter"

# At most one message per answer: the first failing row of that answer (rows run in order).
RULES: list[Rule] = [
    Rule("project_name", one_line, TEXT, "Image Classifier"),
    Rule("project_slug", matches(SLUG), FOLDER, "image-classifier"),
    Rule("package_name", matches(LOWER_WITH_UNDER), "is not a lower_with_under name", PACKAGE),
    Rule("package_name", not_keyword, "is a Python keyword", PACKAGE),
    Rule("package_name", not_in(DEPENDENCIES), "shadows the {value} library", PACKAGE),
    Rule("package_name", not_in(STDLIB), "shadows the standard-library module {value}", PACKAGE),
    choice("task", ["classification", "image_to_image"]),
    Rule("model_name", matches(LOWER_WITH_UNDER), "is not a lower_with_under name", MODEL),
    Rule("model_name", not_keyword, "is a Python keyword", MODEL),
    Rule("model_name", not_in(PACKAGE_MODULES), "clashes with the package's {value} module", MODEL),
    Rule("model_name", differs_from("package_name"), "is the package name too", MODEL),
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


def check_answers(answers: dict[str, Any], rules: Sequence[Rule] = RULES) -> list[str]:
    """Return one error sentence per wrong answer (empty when all are fine)."""
    errors: list[str] = []
    refused: set[str] = set()
    for rule in rules:
        if rule.answer in refused:
            continue
        value = answers.get(rule.answer)
        if not rule.check(value, answers):
            refused.add(rule.answer)
            reason = rule.reason.format(value=value)
            errors.append(
                f"ERROR: {rule.answer} {value!r} {reason}; pick another, e.g. {rule.example!r}."
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


def main() -> int:
    """Validate the rendered answers; print every refusal and exit 1 if there is one."""
    import cookiecutter  # hooks run in the interpreter that runs cookiecutter

    # tojson writes ' < > & as \u escapes, so no answer can close this '''-quoted raw literal.
    answers = json.loads(r'''{{ cookiecutter | tojson }}''')  # fmt: skip
    errors = cookiecutter_version_error(cookiecutter.__version__) + check_answers(answers)
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
