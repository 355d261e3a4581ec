"""Unit tests of the hook logic and of the project's smoke_test.py (which the post hook runs):
the files are imported unrendered, subprocesses are faked."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from cookiecutter.environment import StrictEnvironment
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config

REPO = Path(__file__).resolve().parents[1]
HOOKS = REPO / "hooks"
SMOKE_SCRIPT = REPO / "{{cookiecutter.project_slug}}" / "smoke_test.py"


def load_module(path: Path, name: str) -> ModuleType:
    """Import a (rendered or unrendered) hook file as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


pre = load_module(HOOKS / "pre_gen_project.py", "pre_gen_project")
post = load_module(HOOKS / "post_gen_project.py", "post_gen_project")
smoke = load_module(SMOKE_SCRIPT, "project_smoke_test")
import template_tasks  # noqa: E402  (beside cookiecutter.json: the task folders' catalogue)


def default_answers() -> dict:
    """The answers cookiecutter renders from cookiecutter.json with --no-input."""
    context = generate_context(REPO / "cookiecutter.json")
    return dict(prompt_for_config(context, no_input=True))


GOOD = default_answers()


# --- pre_gen_project: the validation table ---------------------------------------------------


def test_defaults_pass() -> None:
    assert GOOD["package_name"] == "image_classifier"
    assert pre.check_answers(GOOD) == []


@pytest.mark.parametrize(
    "answers",
    [
        {"project_slug": "mnist_2", "package_name": "mnist2", "model_name": "resnet_18"},
        {"version": "1.0.0rc1"},
        {"version": "2!1.0.post2.dev3"},
        {"author_email": "first.last+tag@sub.example.co.uk"},
        {"project_name": "Café « Zürich » it's \"quoted\""},
        {"description": "Uses { braces } and \\ backslashes and ''' quotes"},
        {"python_requires": "3.12", "license": "none", "smoke_test": "off"},
        {"package_name": "match"},  # soft keywords are fine module names
    ],
    ids=["names", "pre-release", "epoch-post-dev", "email", "unicode-name", "odd-text", "choices",
         "soft-keyword"],
)  # fmt: skip
def test_good_answers_pass(answers: dict) -> None:
    assert pre.check_answers({**GOOD, **answers}) == []


BAD = [
    ("project_slug", "Image Classifier", "is not a folder name"),
    ("project_slug", "1st-project", "is not a folder name"),
    ("project_slug", "a/b", "is not a folder name"),
    ("project_slug", "../escape", "is not a folder name"),
    ("project_slug", "", "is not a folder name"),
    ("package_name", "my-package", "is not a lower_with_under name"),
    ("package_name", "ImageClassifier", "is not a lower_with_under name"),
    ("package_name", "_private", "is not a lower_with_under name"),
    ("package_name", "class", "is a Python keyword"),
    ("package_name", "torch", "shadows the torch library"),
    ("package_name", "torchvision", "shadows the torchvision library"),
    ("package_name", "prefetch_generator", "shadows the prefetch_generator library"),
    ("package_name", "pil", "shadows the pil library"),
    ("package_name", "tests", "shadows the tests library"),
    ("package_name", "data", "shadows the data library"),
    ("package_name", "train", "shadows the train library"),
    ("package_name", "json", "shadows the standard-library module json"),
    ("package_name", "logging", "shadows the standard-library module logging"),
    ("model_name", "SmallResnet", "is not a lower_with_under name"),
    ("model_name", "small-resnet", "is not a lower_with_under name"),
    ("model_name", "__init__", "is not a lower_with_under name"),
    ("model_name", "lambda", "is a Python keyword"),
    ("model_name", "layers", "clashes with the package's layers module"),
    ("model_name", "losses", "clashes with the package's losses module"),
    ("model_name", "ops", "clashes with the package's ops module"),
    ("model_name", "data", "clashes with the package's data module"),
    ("model_name", "engine", "clashes with the package's engine module"),
    ("model_name", "errors", "clashes with the package's errors module"),
    ("model_name", "task", "clashes with the package's task module"),
    ("model_name", "image_files", "clashes with the package's image_files module"),
    ("model_name", "image_classifier", "is the package name too"),
    ("model_name", "classification_loss", "would give the model class the name of a loss class"),
    ("model_name", "m" * 33, "is longer than 32 characters"),
    ("package_name", "p" * 41, "is longer than 40 characters"),
    ("project_name", "", "must be one line of printable text"),
    ("project_name", "two\nlines", "must be one line of printable text"),
    ("description", "bell\a", "must be one line of printable text"),
    ("author_name", " ", "must be one line of printable text"),
    ("author_email", "not-an-email", "is not an email address"),
    ("author_email", "you@localhost", "is not an email address"),
    ("author_email", 'x"y@example.com', "is not an email address"),
    ("version", "1.0-beta", "is not a canonical PEP 440 version"),
    ("version", "v1.0", "is not a canonical PEP 440 version"),
    ("version", "01.0", "is not a canonical PEP 440 version"),
    ("version", "1.0+local", "is not a canonical PEP 440 version"),
    ("python_requires", "3.9", "is not one of 3.10, 3.11, 3.12"),
    ("license", "GPL", "is not one of MIT, BSD-3-Clause, Apache-2.0, none"),
    ("smoke_test", "maybe", "is not one of auto, required, off"),
    ("smoke_test", None, "is not one of auto, required, off"),
    ("github_actions", "yes", "is not true or false"),
    ("pre_commit", None, "is not true or false"),
]


@pytest.mark.parametrize(("answer", "value", "reason"), BAD, ids=[f"{a}={v!r}" for a, v, _ in BAD])
def test_bad_answer_refused_with_one_sentence(answer: str, value: str, reason: str) -> None:
    errors = pre.check_answers({**GOOD, answer: value})
    assert len(errors) == 1
    assert errors[0].startswith(f"ERROR: {answer} {value!r} {reason}")
    assert re.search(r"; pick another, e\.g\. ('.+'|True)\.\Z", errors[0]), errors[0]
    assert "\n" not in errors[0]


TASKS = template_tasks.read_tasks()


@pytest.mark.parametrize(
    ("task", "module"),
    [(task, module) for task in TASKS for module in template_tasks.project_package_modules(task)],
)
def test_a_model_name_that_is_a_module_of_the_tasks_package_is_refused(task, module) -> None:
    # e.g. model_name=predictions: the model file would replace predictions.py.
    errors = pre.check_answers({**GOOD, "task": task, "model_name": module})
    assert errors and errors[0].startswith(f"ERROR: model_name {module!r} "), errors


@pytest.mark.parametrize(
    ("task", "class_name"),
    [(name, cls) for name, task in TASKS.items() for cls in task.model_module_classes],
)
def test_a_model_class_named_like_a_class_of_the_tasks_model_module_is_refused(task, class_name):
    model_name = re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()  # RestorationLoss -> ...
    [error] = pre.check_answers({**GOOD, "task": task, "model_name": model_name})
    assert "would give the model class the name of a loss class" in error


def test_names_at_the_length_limits_pass() -> None:
    answers = {"package_name": "p" * pre.MAX_PACKAGE_NAME, "model_name": "m" * pre.MAX_MODEL_NAME}
    assert pre.check_answers({**GOOD, **answers}) == []


JINJA_LEFT = {"{{": "{{ 7*7 }}", "{%": "a {% raw %} b", "{#": "x {# note #}"}


@pytest.mark.parametrize("answer", ["project_name", "description", "author_name", "version"])
@pytest.mark.parametrize("text", JINJA_LEFT.values(), ids=JINJA_LEFT.keys())
def test_an_answer_still_holding_jinja_is_refused_with_one_sentence(answer: str, text: str) -> None:
    # Such an answer would be stored in .cookiecutter.json and rendered again on regeneration.
    errors = pre.check_answers({**GOOD, answer: text})
    assert errors == [
        f"ERROR: {answer} {text!r} still holds Jinja template syntax after cookiecutter rendered "
        "it; remove the braces (answers are rendered as templates: never paste answers from an "
        "untrusted file)."
    ]


@pytest.mark.parametrize(
    ("argv", "keys"),
    [
        (["/venv/bin/python", "/venv/bin/cookiecutter", "gh:o/t", "--no-input", "a=1", "b_2="],
         ["a", "b_2"]),
        (["python", "-m", "cookiecutter", ".", "-o", "out", "task=image_to_image"], ["task"]),
        (["cookiecutter.exe", ".", "--output-dir=x", "x y=z"], []),
        (["python", "-m", "pytest", "-k", "a=b"], []),  # not cookiecutter: arguments say nothing
        ([], []),
    ],
)  # fmt: skip
def test_command_line_keys(argv: list[str], keys: list[str]) -> None:
    assert pre.command_line_keys(argv) == keys


def test_an_answer_typed_with_jinja_is_refused_though_cookiecutter_rendered_it() -> None:
    typed = {"project_name": "{{ 7*7 }}", "project_slug": "myproj"}
    rendered = {**GOOD, "project_name": "49", "project_slug": "myproj"}
    [error] = pre.typed_jinja_errors(typed, rendered)
    assert error == (
        "ERROR: project_name '{{ 7*7 }}' on the command line holds Jinja template syntax, which "
        "cookiecutter ran as a template (it became '49'); remove the braces (never paste answers "
        "from an untrusted source)."
    )


def test_a_custom_slug_does_not_let_a_rendered_project_name_through(tmp_path: Path) -> None:
    # With the default slug, the rendered name failed the slug's own rule; with a slug of its
    # own, only the typed answer shows what cookiecutter ran.
    command = [sys.executable, "-m", "cookiecutter", str(REPO), "--no-input", "-o", "out",
               "project_name={{ 7*7 }}", "project_slug=myproj", "smoke_test=off"]  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "project_name '{{ 7*7 }}' on the command line holds Jinja" in result.stderr
    assert not (tmp_path / "out" / "myproj").exists()


def test_a_misspelt_answer_key_is_warned_about_with_the_closest_key() -> None:
    known = sorted(name for name in GOOD if not name.startswith("_"))
    warnings = pre.unknown_key_warnings(
        ["modle_name", "task", "nonexistent_key", "modle_name"], known
    )
    assert warnings[0] == (
        "WARNING: modle_name is not an answer of this template (ignored); did you mean model_name?"
    )
    assert warnings[1].startswith("WARNING: nonexistent_key is not an answer of this template")
    assert "the answers are author_email, author_name, " in warnings[1] and len(warnings) == 2


def test_defaults_follow_the_task() -> None:
    context = generate_context(REPO / "cookiecutter.json", extra_context={"task": "image_to_image"})
    answers = prompt_for_config(context, no_input=True)
    assert (answers["project_name"], answers["project_slug"]) == (
        "Image Restorer",
        "image-restorer",
    )
    assert (answers["package_name"], answers["model_name"]) == ("image_restorer", "small_unet")
    assert (GOOD["project_name"], GOOD["model_name"]) == ("Image Classifier", "small_resnet")


@pytest.mark.parametrize("slug", ["", ".", "./", "..", " "])
def test_a_slug_naming_no_new_folder_is_refused_before_cookiecutter_makes_the_folder(
    slug: str,
) -> None:
    context = generate_context(REPO / "cookiecutter.json", extra_context={"project_slug": slug})
    with pytest.raises(FailedHookException) as refused:
        prompt_for_config(context, no_input=True)
    assert str(refused.value) == (
        f"ERROR: project_slug {slug!r} is not a folder name of lowercase letters, digits, - and _ "
        "that starts with a letter; pick another, e.g. 'image-classifier'."
    )


def test_refusal_message_names_answer_reason_and_example() -> None:
    [error] = pre.check_answers({**GOOD, "package_name": "torch"})
    assert error == (
        "ERROR: package_name 'torch' shadows the torch library; "
        "pick another, e.g. 'image_classifier'."
    )


def task_answers(task: str) -> dict:
    """The answers cookiecutter renders with --no-input for `task`."""
    context = generate_context(REPO / "cookiecutter.json", extra_context={"task": task})
    return dict(prompt_for_config(context, no_input=True))


@pytest.mark.parametrize("task", template_tasks.read_tasks())
def test_examples_in_the_table_are_themselves_accepted(task: str) -> None:
    good = task_answers(task)
    for rule in pre.RULES:
        answers = {**good, rule.answer: rule.example_for(good)}
        assert pre.check_answers(answers) == [], rule


@pytest.mark.parametrize("task", template_tasks.read_tasks())
def test_refusals_suggest_the_chosen_tasks_own_names(task: str) -> None:
    good = task_answers(task)
    bad = {"project_slug": "9x", "package_name": "torch", "model_name": "class"}
    errors = pre.check_answers({**good, **bad})
    suggested = [error.rsplit("e.g. ", 1)[1].rstrip(".") for error in errors]
    assert suggested == [repr(good[name]) for name in bad]


def test_each_wrong_answer_reported_once() -> None:
    errors = pre.check_answers({**GOOD, "package_name": "torch", "version": "x", "license": "GPL"})
    assert [e.split()[1] for e in errors] == ["package_name", "version", "license"]


def test_every_answer_in_cookiecutter_json_has_a_rule() -> None:
    answers = json.loads((REPO / "cookiecutter.json").read_text())
    public = {name for name in answers if not name.startswith("_")}
    assert public <= {rule.answer for rule in pre.RULES}


def test_adding_choice_and_boolean_rows() -> None:
    rules = [pre.choice("task", ["classification", "image_to_image"]), pre.yes_no("use_amp")]
    assert pre.check_answers({"task": "classification", "use_amp": False}, rules) == []
    errors = pre.check_answers({"task": "gan", "use_amp": "maybe"}, rules)
    assert errors == [
        "ERROR: task 'gan' is not one of classification, image_to_image; "
        "pick another, e.g. 'classification'.",
        "ERROR: use_amp 'maybe' is not true or false; pick another, e.g. True.",
    ]


# --- both hooks: rendering reads answers through tojson ---------------------------------------

NASTY = {
    "project_name": "It's \"quoted\" ''' \"\"\" \\ \\' \\n </script> & {x}",
    "description": "'''); __import__('os').system('touch PWNED'); ('''",
    "author_name": '"""); __import__("os").system("touch PWNED"); ("""\\',
}


@pytest.mark.parametrize("hook", ["pre_gen_project.py", "post_gen_project.py"])
def test_hook_uses_jinja_only_to_read_answers(hook: str) -> None:
    # The answers, and the template's own task catalogue, both through tojson.
    text = (HOOKS / hook).read_text()
    assert text.count("{{") == 2 and "{%" not in text and "{#" not in text
    assert "json.loads(r'''{{ cookiecutter | tojson }}''')" in text
    assert "r'''{{ cookiecutter | task_catalog | tojson }}'''" in text


@pytest.mark.parametrize("hook", ["pre_gen_project.py", "post_gen_project.py"])
def test_rendered_hook_reads_nasty_answers_back_unchanged(
    hook: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {**GOOD, **NASTY, "smoke_test": "off"}
    extensions = json.loads((REPO / "cookiecutter.json").read_text())["_extensions"]
    env = StrictEnvironment(context={"cookiecutter": {**answers, "_extensions": extensions}})
    rendered = env.from_string((HOOKS / hook).read_text()).render(cookiecutter=answers)
    path = tmp_path / f"rendered_{hook}"
    path.write_text(rendered)
    module = load_module(path, f"rendered_{hook[:-3]}")
    seen: list[dict] = []
    if hook.startswith("pre"):
        monkeypatch.setattr(module, "check_answers", lambda a: seen.append(a) or [])
    else:
        monkeypatch.setattr(module, "remove_excluded", lambda _, a: seen.append(a) or [])
        monkeypatch.setattr(module, "add_task_files", lambda _, a: [])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SMOKE_TEST", raising=False)
    assert module.main() == 0
    assert seen == [answers]
    assert not (tmp_path / "PWNED").exists()


# --- post_gen_project: the CI matrix and the next steps ----------------------------------------


@pytest.mark.parametrize(
    ("floor", "versions"),
    [("3.10", ["3.10", "3.12"]), ("3.11", ["3.11", "3.12"]), ("3.12", ["3.12"])],
)
def test_ci_matrix_holds_the_declared_floor_and_the_newest_python(
    tmp_path: Path, floor: str, versions: list[str]
) -> None:
    workflow = REPO / "{{cookiecutter.project_slug}}" / post.WORKFLOW
    (tmp_path / post.WORKFLOW).parent.mkdir(parents=True)
    (tmp_path / post.WORKFLOW).write_text(workflow.read_text())
    post.write_ci_matrix(tmp_path, {**GOOD, "python_requires": floor})
    written = (tmp_path / post.WORKFLOW).read_text()
    assert written.count("python: [") == 1
    assert f"python: {json.dumps(versions)}" in written
    # Only that line changed: GitHub's own expressions are left as they were.
    assert written.count("${{") == workflow.read_text().count("${{")


def test_ci_matrix_is_skipped_without_a_workflow(tmp_path: Path) -> None:
    post.write_ci_matrix(tmp_path, {**GOOD, "github_actions": False})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pre_commit", [True, False])
def test_next_steps_name_install_train_and_test(tmp_path: Path, pre_commit: bool) -> None:
    steps = post.next_steps(tmp_path / "road-signs", {**GOOD, "pre_commit": pre_commit})
    lines = [line.strip() for line in steps.splitlines()]
    assert lines[0] == "Next steps:"
    assert lines[1:3] == ["cd road-signs", 'pip install -e ".[dev]"']
    assert lines[-2:] == [
        "python train.py", "python test.py --checkpoint runs/<run>/checkpoints/best.pt"
    ]  # fmt: skip
    assert any(line.startswith("git init && pre-commit install") for line in lines) == pre_commit


# --- post_gen_project: exclusions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("license_", "kept"), [("none", False), ("MIT", True), ("Apache-2.0", True)]
)
def test_license_none_removes_license_file(tmp_path: Path, license_: str, kept: bool) -> None:
    (tmp_path / "LICENSE").write_text("text")
    removed = post.remove_excluded(tmp_path, {**GOOD, "license": license_})
    assert (tmp_path / "LICENSE").exists() is kept
    assert removed == ([] if kept else ["LICENSE"])


@pytest.mark.parametrize(
    ("answers", "removed"),
    [
        ({"github_actions": True, "pre_commit": True}, []),
        ({"github_actions": False, "pre_commit": True}, [".github"]),
        ({"github_actions": True, "pre_commit": False}, [".pre-commit-config.yaml"]),
    ],
)
def test_optional_ci_and_pre_commit_files_follow_the_answers(
    tmp_path: Path, answers: dict, removed: list[str]
) -> None:
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("name: ci")
    (tmp_path / ".pre-commit-config.yaml").write_text("repos: []")
    assert post.remove_excluded(tmp_path, {**GOOD, **answers}) == removed
    assert (tmp_path / ".github").exists() is answers["github_actions"]
    assert (tmp_path / ".pre-commit-config.yaml").exists() is answers["pre_commit"]


def test_exclusion_rows_remove_folders_and_tolerate_missing_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs" / "api").mkdir(parents=True)
    (tmp_path / "docs" / "api" / "index.md").write_text("x")
    rows = [(lambda a: not a["docs"], ["docs", "mkdocs.yml"]), (lambda a: False, ["keep"])]
    monkeypatch.setattr(post, "EXCLUSIONS", rows)
    assert post.remove_excluded(tmp_path, {"docs": False}) == ["docs", "mkdocs.yml"]
    assert list(tmp_path.iterdir()) == []


def write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def read_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


# --- post_gen_project: one folder per task ----------------------------------------------------

TEMPLATE = REPO / "{{cookiecutter.project_slug}}"
TASK_CHOICES = json.loads((REPO / "cookiecutter.json").read_text())["task"]


@pytest.mark.parametrize("task", list(TASKS))
def test_the_chosen_tasks_files_are_added_and_every_task_folder_removed(
    tmp_path: Path, task: str
) -> None:
    tree = {"train.py": "shared", "pkg/engine/cli.py": "shared"}
    for name in TASKS:
        folder = f"{post.TASKS}/{name}"
        tree |= {f"{folder}/pkg/task.py": name, f"{folder}/pkg/layers/{name}_block.py": name}
        tree |= {f"{folder}/{only}": name for only in template_tasks.TEMPLATE_ONLY}
    write_tree(tmp_path, tree)
    added = post.add_task_files(tmp_path, {**GOOD, "task": task})
    assert added == [f"pkg/layers/{task}_block.py", "pkg/task.py"]
    assert read_tree(tmp_path) == {
        "train.py": "shared", "pkg/engine/cli.py": "shared",
        "pkg/task.py": task, f"pkg/layers/{task}_block.py": task,
    }  # fmt: skip


def test_cookiecutter_json_lists_exactly_the_task_folders_with_their_prompts() -> None:
    # The one row a new task adds outside its folder: cookiecutter needs it to offer the choice.
    config = json.loads((REPO / "cookiecutter.json").read_text())
    prompts = {name: text for name, text in config["__prompts__"]["task"].items()}
    assert set(config["task"]) == set(TASKS), (
        "cookiecutter.json's task choices differ from the folders under _tasks/: add or remove "
        "the row"
    )
    assert {name: prompts.get(name) for name in TASKS} == {
        name: task.prompt for name, task in TASKS.items()
    }, "cookiecutter.json's __prompts__ task rows differ from the task manifests' prompt texts"
    for name in TASKS:
        package = TEMPLATE / post.TASKS / name / "{{cookiecutter.package_name}}"
        assert (package / "task.py").is_file(), name


def test_the_pre_gen_hook_accepts_exactly_the_task_folders() -> None:
    for task in TASKS:
        assert pre.check_answers({**GOOD, "task": task}) == [], task
    [error] = pre.check_answers({**GOOD, "task": "detection"})
    assert error.startswith(f"ERROR: task 'detection' is not one of {', '.join(TASKS)};")


def test_a_manifest_without_a_required_field_names_the_file_and_the_field(tmp_path) -> None:
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / template_tasks.MANIFEST).write_text(json.dumps({"prompt": "toy: a toy"}))
    with pytest.raises(ValueError, match=r"manifest\.json has no 'project_name' text"):
        template_tasks.read_manifest(folder)


def test_task_files_add_to_the_shared_tree_and_never_replace_a_shared_file() -> None:
    def files_under(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}

    shared = {path for path in files_under(TEMPLATE) if not path.startswith(f"{post.TASKS}/")}
    for name in TASKS:
        own = files_under(TEMPLATE / post.TASKS / name) - set(template_tasks.TEMPLATE_ONLY)
        assert own and not own & shared, name


# --- post_gen_project: settings and environment overrides -------------------------------------


DEFAULT_FIELDS = {"mode": "auto", "devices": (), "python": sys.executable, "timeout": 300.0}


def hook_settings(**overrides: object) -> object:
    """The hook's Settings as read_settings would build them for the given fields."""
    return post.Settings(**{**DEFAULT_FIELDS, **overrides})


def settings(**overrides: object) -> object:
    """smoke_test.py's Settings as its flags would build them for the given fields."""
    return smoke.Settings(**{**DEFAULT_FIELDS, **overrides})


def test_settings_default_to_the_answer() -> None:
    assert post.read_settings({"smoke_test": "required"}, {}) == hook_settings(mode="required")
    assert post.read_settings({}, {}) == hook_settings()


def test_settings_environment_overrides() -> None:
    environ = {
        "SMOKE_TEST": "off",
        "SMOKE_DEVICES": " CPU, cuda,,cpu ",
        "SMOKE_PYTHON": "/opt/py/bin/python",  # not on this machine: kept as given
        "SMOKE_TIMEOUT": "12.5",
    }
    assert post.read_settings({"smoke_test": "required"}, environ) == hook_settings(
        mode="off", devices=("cpu", "cuda"), python="/opt/py/bin/python", timeout=12.5
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SMOKE_TEST": "sometimes"}, "SMOKE_TEST='sometimes' is not one of auto, required, off"),
        ({"SMOKE_DEVICES": "cpu,tpu"}, "SMOKE_DEVICES names unknown backend 'tpu'"),
        ({"SMOKE_TIMEOUT": "soon"}, "SMOKE_TIMEOUT='soon' is not a number of seconds"),
        ({"SMOKE_TIMEOUT": "0"}, "SMOKE_TIMEOUT='0' is not a number of seconds"),
        ({"SMOKE_TIMEOUT": "nan"}, "SMOKE_TIMEOUT='nan' is not a number of seconds"),
    ],
)
def test_bad_environment_overrides_are_refused(environ: dict, message: str) -> None:
    with pytest.raises(post.SmokeError, match=message):
        post.read_settings({"smoke_test": "auto"}, environ)


# --- smoke_test.py: device discovery -------------------------------------------------------


def completed(stdout: str = "", stderr: str = "", code: int = 0) -> subprocess.CompletedProcess:
    """A finished subprocess with the given output."""
    return subprocess.CompletedProcess([], code, stdout, stderr)


def fake_run(monkeypatch: pytest.MonkeyPatch, *results: object) -> list[dict]:
    """Replace subprocess.run; return the list of calls it receives."""
    calls: list[dict] = []
    queue = list(results)

    def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append({"command": command, **kwargs})
        result = queue.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def test_discovery_is_one_subprocess_and_reads_its_last_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = {"torch": "2.14.1", "devices": {"cpu": None, "cuda": "no device", "mps": "not built"}}
    calls = fake_run(monkeypatch, completed("a warning\n" + json.dumps(report) + "\n"))
    assert smoke.discover(settings(python="/venv/bin/python")) == ("2.14.1", report["devices"])
    [call] = calls
    assert call["command"][:2] == ["/venv/bin/python", "-c"]
    assert call["env"]["PYTHONDONTWRITEBYTECODE"] == "1"
    assert call["stdin"] is subprocess.DEVNULL


def test_discovery_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    line = json.dumps({"torch": None, "error": "ModuleNotFoundError: No module named 'torch'"})
    fake_run(monkeypatch, completed(line))
    assert smoke.discover(settings()) == (
        None, {"torch": "ModuleNotFoundError: No module named 'torch'"}
    )  # fmt: skip


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (completed("", "Segmentation fault", code=139), r"failed \(exit 139: Segmentation fault\)"),
        (completed("not json"), "gave no readable report"),
        (completed(""), "gave no readable report"),
        (FileNotFoundError(2, "No such file or directory"), "cannot run the interpreter"),
        (subprocess.TimeoutExpired("python", 5), "took over 300 s"),
    ],
    ids=["crash", "garbage", "silent", "no-interpreter", "timeout"],
)
def test_discovery_failures_are_one_sentence(
    monkeypatch: pytest.MonkeyPatch, result: object, message: str
) -> None:
    fake_run(monkeypatch, result)
    with pytest.raises(smoke.SmokeError, match=message):
        smoke.discover(settings())


OOM = "MPS backend out of memory"
FAKE_TORCH = """
class _Flag:
    def __init__(self, value):
        self.value = value
    def __call__(self):
        return self.value

class cuda:
    is_available = _Flag({cuda_available})

class backends:
    class cuda:
        is_built = _Flag({cuda_built})
    class mps:
        is_built = _Flag({mps_built})
        is_available = _Flag({mps_available})

__version__ = "0.0-fake"

def ones(*size, device="cpu"):
    if device == "mps" and {mps_fails}:
        raise RuntimeError("MPS backend out of memory (MPS allocated: 0 B)\\nmore detail")
    class T:
        def __add__(self, other):
            return self
        def cpu(self):
            return self
    return T()
"""


@pytest.mark.parametrize(
    ("flags", "devices"),
    [
        (
            {"cuda_available": True, "cuda_built": True, "mps_built": False},
            {"cpu": None, "cuda": None, "mps": "not built"},
        ),
        (
            {"cuda_available": False, "cuda_built": True, "mps_built": False},
            {"cpu": None, "cuda": "no device", "mps": "not built"},
        ),
        (
            {"cuda_available": False, "cuda_built": False, "mps_built": True},
            {"cpu": None, "cuda": "not built", "mps": None},
        ),
        (
            {"cuda_available": False, "cuda_built": False, "mps_built": True, "mps_available": 0},
            {"cpu": None, "cuda": "not built", "mps": "no device"},
        ),
        (  # what GitHub's macOS runners do: MPS "available", then no memory to allocate
            {"cuda_available": False, "cuda_built": False, "mps_built": True, "mps_fails": True},
            {"cpu": None, "cuda": "not built", "mps": f"{OOM} (MPS allocated: 0 B)"},
        ),
    ],
    ids=["cuda", "cuda-no-device", "mps", "mps-no-device", "mps-cannot-allocate"],
)  # fmt: skip
def test_discovery_script_against_a_fake_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: dict, devices: dict
) -> None:
    flags = {"mps_available": True, "mps_fails": False, **flags}
    (tmp_path / "torch.py").write_text(FAKE_TORCH.format(**flags))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert smoke.discover(settings()) == ("0.0-fake", devices)


def test_discovery_script_when_torch_import_breaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "torch.py").write_text("raise OSError('libtorch_cpu.so: cannot open')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert smoke.discover(settings()) == (None, {"torch": "OSError: libtorch_cpu.so: cannot open"})


# --- smoke_test.py: one backend's smoke run ------------------------------------------------

RESULT = {"device": "cpu", "steps": 2, "loss_first": 2.3061, "loss_last": 2.2712, "seconds": 4.1}


def test_parse_result_reads_the_last_line() -> None:
    assert smoke.parse_result(f"epoch 1\n{json.dumps(RESULT)}\n\n", "cpu") == RESULT
    assert smoke.parse_result(json.dumps({**RESULT, "device": "cuda:0"}), "cuda")["steps"] == 2


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ("", "not the smoke-test JSON result"),
        (json.dumps(RESULT) + "\ndone", "not the smoke-test JSON result"),
        (json.dumps({"device": "cpu"}), "not the smoke-test JSON result"),
        (json.dumps({**RESULT, "loss_last": float("nan")}), "losses are not finite"),
        (json.dumps({**RESULT, "loss_first": float("inf")}), "losses are not finite"),
        (json.dumps({**RESULT, "device": "cuda:0"}), "ran on 'cuda:0' instead of 'cpu'"),
    ],
    ids=["empty", "not-last", "no-losses", "nan", "inf", "wrong-device"],
)
def test_parse_result_rejects(stdout: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        smoke.parse_result(stdout, "cpu")


def test_run_backend_ok(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = fake_run(monkeypatch, completed("step 1\n" + json.dumps(RESULT) + "\n"))
    outcome = smoke.run_backend(tmp_path, "cpu", settings(python="/py", timeout=7.0))
    assert outcome.status == "ok"
    assert outcome.detail.startswith("loss 2.306 -> 2.271  ") and outcome.detail.endswith(" s")
    [call] = calls
    assert call["command"] == ["/py", "train.py", "--smoke-test", "--device", "cpu"]
    assert call["cwd"] == tmp_path and call["timeout"] == 7.0
    assert call["env"]["PYTHONDONTWRITEBYTECODE"] == "1"


def test_run_backend_failure_keeps_the_last_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stderr = "".join(f"line {i}\n" for i in range(40)) + "RuntimeError: boom\n"
    fake_run(monkeypatch, completed("starting\n", stderr, code=1))
    outcome = smoke.run_backend(tmp_path, "cpu", settings())
    assert outcome.status == "FAILED" and outcome.detail.startswith("exit status 1 after ")
    lines = outcome.tail.splitlines()
    assert len(lines) == smoke.TAIL_LINES and lines[-1] == "RuntimeError: boom"


def test_run_backend_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # On POSIX, TimeoutExpired carries bytes even when text=True was asked for.
    fake_run(monkeypatch, subprocess.TimeoutExpired("python", 5, output=b"epoch 1\n", stderr=None))
    outcome = smoke.run_backend(tmp_path, "mps", settings(timeout=5.0))
    assert (outcome.status, outcome.detail, outcome.tail) == (
        "FAILED",
        "timed out after 5 s",
        "epoch 1",
    )


def test_run_backend_bad_result_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_run(monkeypatch, completed(json.dumps({**RESULT, "loss_last": None})))
    outcome = smoke.run_backend(tmp_path, "cpu", settings())
    assert outcome.status == "FAILED" and "not the smoke-test JSON result" in outcome.detail


# --- smoke_test.py: report lines -----------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "line"),
    [
        (("cpu", "ok", "loss 2.31 -> 2.27  4.1 s"), "cpu   ok           loss 2.31 -> 2.27  4.1 s"),
        (("mps", "unavailable", "(not built)"), "mps   unavailable  (not built)"),
        (("cuda", "FAILED", "exit status 1, 3 s"), "cuda  FAILED       exit status 1, 3 s"),
    ],
)  # fmt: skip
def test_format_line_aligns_columns(outcome: tuple, line: str) -> None:
    assert smoke.format_line(smoke.Outcome(*outcome)) == line


# --- smoke_test.py: the whole smoke step, backends faked -----------------------------------

OK = smoke.Outcome("cpu", "ok", "loss 2.31 -> 2.27  4.1 s")
ALL_DEVICES = {"cpu": None, "cuda": "no device", "mps": "not built"}


def fake_backends(
    monkeypatch: pytest.MonkeyPatch, discovered: tuple, outcomes: dict[str, object]
) -> list[str]:
    """Fake discovery and the per-backend runs; return the backends that were run."""
    ran: list[str] = []
    monkeypatch.setattr(smoke, "discover", lambda _: discovered)

    def run_backend(_: Path, device: str, __: object) -> object:
        ran.append(device)
        return outcomes[device]

    monkeypatch.setattr(smoke, "run_backend", run_backend)
    return ran


def test_smoke_runs_every_available_backend(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    outcomes = {"cpu": OK, "cuda": smoke.Outcome("cuda", "ok", "loss 2.31 -> 2.2  1.0 s")}
    ran = fake_backends(monkeypatch, ("2.14", {**ALL_DEVICES, "cuda": None}), outcomes)
    assert smoke.smoke(tmp_path, settings(python=sys.executable)) == 0
    assert ran == ["cpu", "cuda"]
    assert capsys.readouterr().out.splitlines() == [
        f"Smoke test (python: {sys.executable})",
        "cpu   ok           loss 2.31 -> 2.27  4.1 s",
        "cuda  ok           loss 2.31 -> 2.2  1.0 s",
        "mps   unavailable  (not built)",
    ]


def test_smoke_devices_restricts_the_backends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    ran = fake_backends(monkeypatch, ("2.14", ALL_DEVICES), {"cpu": OK})
    assert smoke.smoke(tmp_path, settings(devices=("cpu",))) == 0
    assert ran == ["cpu"] and "cuda" not in capsys.readouterr().out


@pytest.mark.parametrize(("mode", "code"), [("auto", 0), ("required", 1)])
def test_requested_backend_that_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path,
    mode: str, code: int,
) -> None:  # fmt: skip
    fake_backends(monkeypatch, ("2.14", ALL_DEVICES), {"cpu": OK})
    assert smoke.smoke(tmp_path, settings(mode=mode, devices=("cpu", "cuda"))) == code
    out = capsys.readouterr().out
    status = "unavailable  (no device)" if mode == "auto" else "FAILED       asked for but no"
    assert f"cuda  {status}" in out


@pytest.mark.parametrize("mode", ["auto", "required"])
def test_failing_backend_fails_generation_with_its_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path, mode: str
) -> None:
    tail = "Traceback\nRuntimeError: boom"
    failed = smoke.Outcome("cpu", "FAILED", "exit status 1 after 2.0 s", tail)
    fake_backends(monkeypatch, ("2.14", ALL_DEVICES), {"cpu": failed})
    assert smoke.smoke(tmp_path, settings(mode=mode)) == 1
    captured = capsys.readouterr()
    assert "cpu   FAILED       exit status 1 after 2.0 s\n" in captured.out
    assert "    | RuntimeError: boom" in captured.out
    assert captured.err == "ERROR: the smoke test failed on cpu.\n"


@pytest.mark.parametrize(("mode", "code"), [("auto", 0), ("required", 2)])
def test_without_torch(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path,
    mode: str, code: int,
) -> None:  # fmt: skip
    project = tmp_path / "image-classifier"
    ran = fake_backends(monkeypatch, (None, {"torch": "ModuleNotFoundError: no torch"}), {})
    assert smoke.smoke(project, settings(mode=mode, python="/bare/python")) == code
    captured = capsys.readouterr()
    assert ran == []
    hint = "cd image-classifier && pip install -e . && python train.py --smoke-test"
    assert hint in (captured.out if mode == "auto" else captured.err)
    assert "torch is not importable by /bare/python (ModuleNotFoundError: no torch)" in (
        captured.out + captured.err
    )


@pytest.mark.parametrize(("mode", "code"), [("auto", 0), ("required", 2)])
def test_without_the_projects_dependencies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path,
    mode: str, code: int,
) -> None:  # fmt: skip
    fake_backends(monkeypatch, (None, {"missing": "torchvision, numpy"}), {})
    assert smoke.smoke(tmp_path, settings(mode=mode, python="/py")) == code
    captured = capsys.readouterr()
    assert "/py lacks the project's dependencies torchvision, numpy" in captured.out + captured.err


def test_a_discovery_failure_stops_with_one_sentence_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    fake_run(monkeypatch, completed("", "Segmentation fault", code=139))
    assert smoke.smoke(tmp_path, settings()) == 2
    assert capsys.readouterr().err == (
        "ERROR: finding the backends failed (exit 139: Segmentation fault).\n"
    )


# --- smoke_test.py: its command line and its independence from torch --------------------------


def test_flags_default_to_every_backend_auto_300_s_and_this_python() -> None:
    assert smoke.parse_args([]) == settings(python=smoke.shutil.which(sys.executable))


def test_flags() -> None:
    flags = ["--devices", " CPU, cuda,,cpu ", "--mode", "required", "--timeout", "12.5"]
    assert smoke.parse_args([*flags, "--python", "/opt/py/bin/python"]) == settings(
        mode="required", devices=("cpu", "cuda"), python="/opt/py/bin/python", timeout=12.5
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--devices", "cpu,tpu"], "argument --devices: unknown backend 'tpu'; use cpu, cuda, mps"),
        (["--timeout", "soon"], "argument --timeout: 'soon' is not a positive number of seconds"),
        (["--timeout", "nan"], "argument --timeout: 'nan' is not a positive number of seconds"),
        (["--mode", "off"], "argument --mode: invalid choice: 'off'"),
        (["--device", "cpu"], "unrecognized arguments: --device cpu"),
    ],
)  # fmt: skip
def test_a_bad_flag_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture, flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        smoke.parse_args(flags)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"smoke_test.py: error: {message}")
    assert err.endswith(" (see smoke_test.py --help)\n")


def test_the_script_holds_no_jinja_and_imports_only_the_standard_library() -> None:
    text = SMOKE_SCRIPT.read_text()
    assert "{{" not in text and "{%" not in text and "{#" not in text  # importable unrendered
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize(("mode", "code"), [("auto", 0), ("required", 2)])
def test_the_script_runs_and_explains_itself_where_torch_is_broken(
    tmp_path: Path, mode: str, code: int
) -> None:
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    proc = subprocess.run(
        [sys.executable, str(SMOKE_SCRIPT), "--mode", mode, "--devices", "cpu"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "torch is not importable by" in proc.stdout + proc.stderr
    assert "ImportError: no torch here" in proc.stdout + proc.stderr


# --- post_gen_project: running the project's smoke test -----------------------------------------


def test_the_hook_runs_the_projects_smoke_test_with_its_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = fake_run(monkeypatch, completed())
    chosen = hook_settings(mode="required", devices=("cpu", "cuda"), python="/py", timeout=7.0)
    assert post.smoke(tmp_path, chosen) == 0
    [call] = calls
    assert call["command"] == [
        "/py", "smoke_test.py", "--mode", "required", "--timeout", "7.0", "--python", "/py",
        "--devices", "cpu,cuda",
    ]  # fmt: skip
    assert call["cwd"] == tmp_path and call["stdin"] is subprocess.DEVNULL
    assert call["env"]["PYTHONDONTWRITEBYTECODE"] == "1"
    assert "capture_output" not in call and "stdout" not in call  # its lines stream through


def test_the_hook_asks_for_every_backend_by_naming_none() -> None:
    command = post.smoke_command(hook_settings(python="/py"))
    assert command == ["/py", "smoke_test.py", "--mode", "auto", "--timeout", "300.0",
                       "--python", "/py"]  # fmt: skip


@pytest.mark.parametrize(
    ("returncode", "code", "hint"), [(0, 0, False), (1, 1, True), (2, 1, False)],
    ids=["passed", "backend-failed", "could-not-run"],
)  # fmt: skip
def test_the_hook_fails_when_the_smoke_test_does_and_says_how_to_keep_the_project(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path,
    returncode: int, code: int, hint: bool,
) -> None:  # fmt: skip
    fake_run(monkeypatch, completed(code=returncode))
    assert post.smoke(tmp_path, hook_settings()) == code
    assert (post.KEEP_HINT in capsys.readouterr().err) is hint


def test_the_hook_names_an_interpreter_that_cannot_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_run(monkeypatch, FileNotFoundError(2, "No such file or directory"))
    with pytest.raises(post.SmokeError, match="cannot run the interpreter '/nope/python'"):
        post.smoke(tmp_path, hook_settings(python="/nope/python"))


# --- post_gen_project: nothing of the smoke run is left -----------------------------------------


def test_clean_up_removes_whatever_the_smoke_run_added(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "model.py").write_text("x")
    (tmp_path / "train.py").write_text("x")
    (tmp_path / "pkg" / "__pycache__").mkdir()  # a cache that came with the template
    before = post.snapshot(tmp_path)
    for new in ["runs/exp/events", "checkpoints/last.pt", ".pytest_cache/v/x", "pkg/extra.txt",
                "__pycache__/train.pyc", "pkg/__pycache__/model.pyc"]:  # fmt: skip
        (tmp_path / new).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / new).write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "pkg")
    post.clean_up(tmp_path, before)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "pkg", "pkg/model.py", "train.py"
    ]  # fmt: skip


def test_smoke_python_command_is_resolved_on_path() -> None:
    python = Path(sys.executable).name
    resolved = post.read_settings({}, {"SMOKE_PYTHON": python}).python
    assert Path(resolved).is_absolute() and Path(resolved).name == python


@pytest.mark.parametrize(
    ("version", "refused"), [("2.6.0", True), ("1.7.3", True), ("2.7.1", False), ("3.0.0", False)]
)
def test_cookiecutter_older_than_2_7_is_refused(version: str, refused: bool) -> None:
    errors = pre.cookiecutter_version_error(version)
    assert bool(errors) is refused
    if refused:
        assert "cookiecutter>=2.7" in errors[0]
