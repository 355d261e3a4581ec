"""Bake-level tests of the hooks: refusals leave nothing behind, answers stay inert, and the
smoke step really trains (CPU here; CUDA and MPS where the machine has them)."""

from __future__ import annotations

import ast
import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from jinja2.utils import htmlsafe_json_dumps

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = REPO / "{{cookiecutter.project_slug}}"
KEEP_HINT = "rerun with --keep-project-on-failure to keep the project and debug it"
LEFTOVERS = {"runs", "checkpoints", "__pycache__", ".pytest_cache", ".ruff_cache", "PWNED"}

needs_template = pytest.mark.skipif(
    not TEMPLATE_DIR.is_dir(),
    reason="the template folder {{cookiecutter.project_slug}}/ is missing",
)
needs_project = pytest.mark.skipif(
    not (TEMPLATE_DIR / "train.py").is_file(),
    reason="the generated project is not written yet ({{cookiecutter.project_slug}}/train.py)",
)
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed"
)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep SMOKE_* from the caller's shell out, and cookiecutter's replay files in tmp."""
    for name in ("SMOKE_TEST", "SMOKE_DEVICES", "SMOKE_PYTHON", "SMOKE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "cc" / "config.yaml"
    config.parent.mkdir()
    config.write_text(f"cookiecutters_dir: {tmp_path / 'cc'}\nreplay_dir: {tmp_path / 'cc'}\n")
    monkeypatch.setenv("COOKIECUTTER_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)  # a hook that ran code in an answer would litter here
    (tmp_path / "out").mkdir()


def bake(template: Path = REPO, **answers: str) -> Path:
    """Bake with the Python API into ./out; smoke step off unless asked for."""
    project = cookiecutter(
        str(template), no_input=True, output_dir="out",
        extra_context={"smoke_test": "off", **answers},
    )  # fmt: skip
    return Path(project)


@functools.cache
def default_answers() -> dict:
    """The answers cookiecutter renders from cookiecutter.json with --no-input."""
    return dict(prompt_for_config(generate_context(REPO / "cookiecutter.json"), no_input=True))


def bake_replay(tmp_path: Path, **answers: object) -> Path:
    """Bake from a replay file: answers reach the template raw, as typed at the prompts."""
    replay = tmp_path / "cc" / "answers.json"
    context = {**default_answers(), "smoke_test": "off", **answers}
    replay.write_text(json.dumps({"cookiecutter": context}))
    return Path(cookiecutter(str(REPO), replay=str(replay), output_dir="out"))


def assert_nothing_written(tmp_path: Path) -> None:
    """Only our own scaffolding is left: an empty out/ and cookiecutter's config folder."""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cc", "out"]
    assert list((tmp_path / "out").iterdir()) == []


# --- refusals: one sentence, exit 1, nothing on disk ------------------------------------------

REFUSED = [
    ({"project_slug": "Image Classifier"}, "ERROR: project_slug 'Image Classifier' is not a"),
    ({"project_slug": "../escape"}, "ERROR: project_slug '../escape' is not a folder name"),
    ({"project_name": "2 Fast"}, "ERROR: project_slug '2-fast' is not a folder name"),
    ({"package_name": "torch"}, "ERROR: package_name 'torch' shadows the torch library; pick"),
    ({"package_name": "tests"}, "ERROR: package_name 'tests' shadows the tests library"),
    ({"package_name": "json"}, "ERROR: package_name 'json' shadows the standard-library module"),
    ({"package_name": "import"}, "ERROR: package_name 'import' is a Python keyword"),
    ({"package_name": "Image-Net"}, "ERROR: package_name 'Image-Net' is not a lower_with_under"),
    ({"model_name": "layers"}, "ERROR: model_name 'layers' clashes with the package's layers"),
    ({"model_name": "image_classifier"}, "ERROR: model_name 'image_classifier' is the package"),
    ({"model_name": "ResNet"}, "ERROR: model_name 'ResNet' is not a lower_with_under name"),
    ({"author_email": "me at home"}, "ERROR: author_email 'me at home' is not an email address"),
    ({"version": "1.0-beta"}, "ERROR: version '1.0-beta' is not a canonical PEP 440 version"),
    ({"description": "two\nlines"}, "ERROR: description 'two\\nlines' must be one line"),
    ({"author_name": ""}, "ERROR: author_name '' must be one line of printable text"),
    # Rendered once by cookiecutter (--no-input), the answer still holds Jinja: never stored.
    ({"description": "{{ '{{' }} 7*7 }}"}, "ERROR: description '{{ 7*7 }}' still holds Jinja"),
]


@needs_template
@pytest.mark.parametrize(("answers", "message"), REFUSED, ids=[m[7:40] for _, m in REFUSED])
def test_bad_answer_refused_and_nothing_written(
    tmp_path: Path, capfd: pytest.CaptureFixture, answers: dict, message: str
) -> None:
    with pytest.raises(FailedHookException):
        bake(**answers)
    err = capfd.readouterr().err
    assert message in err
    assert "Traceback" not in err.split("ERROR:")[1]  # the sentence, not a stack
    assert_nothing_written(tmp_path)


@needs_template
def test_project_slug_with_a_path_separator_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FailedHookException):
        bake(project_slug="nested/project")
    # Cookiecutter makes out/nested/project before the hook runs and deletes only the leaf.
    assert [p for p in (tmp_path / "out").rglob("*") if not p.is_dir()] == []
    assert not (tmp_path / "out" / "nested" / "project").exists()


@needs_template
def test_bad_choice_on_the_command_line_is_refused_by_cookiecutter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="GPL provided for choice variable license"):
        bake(license="GPL")
    assert_nothing_written(tmp_path)


@needs_template
def test_bad_yes_no_on_the_command_line_is_refused_by_cookiecutter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="maybe provided for variable github_actions could not"):
        bake(github_actions="maybe")
    assert_nothing_written(tmp_path)


@needs_template
@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"license": "GPL"}, "ERROR: license 'GPL' is not one of MIT, BSD-3-Clause"),
        ({"pre_commit": "yes"}, "ERROR: pre_commit 'yes' is not true or false; pick another"),
        ({"smoke_test": "sometimes"}, "ERROR: smoke_test 'sometimes' is not one of auto"),
        ({"python_requires": "3.8"}, "ERROR: python_requires '3.8' is not one of 3.10"),
    ],
)
def test_bad_choice_in_a_replay_file_is_refused_by_the_hook(
    tmp_path: Path, capfd: pytest.CaptureFixture, answers: dict, message: str
) -> None:
    with pytest.raises(FailedHookException):
        bake_replay(tmp_path, **answers)
    assert message in capfd.readouterr().err
    assert_nothing_written(tmp_path)


# --- answers holding quotes, backslashes, Jinja and code are inert ----------------------------

PAYLOADS = {
    "quotes": 'It\'s "quoted" and `ticked`',
    "triple-single": "'''); __import__('os').system('touch PWNED'); ('''",
    "triple-double": '"""); __import__("os").system("touch PWNED"); ("""',
    "backslashes": "C:\\new\\table \\' \\\" ends with \\",
    "code": "__import__('os').system('touch PWNED')",
    "html": "</script><!-- & --> <b>",
}
# Jinja in answers is refused (the hook tests), and --no-input renders it first: see below.
CLI_PAYLOADS = PAYLOADS
SAFE_NAMES = {"project_slug": "inert-project", "package_name": "inert_project"}


def used_in_template(field: str) -> bool:
    """Whether any file of the generated project shows this answer."""
    pattern = re.compile(rf"cookiecutter\.{field}\b")
    files = (p for p in TEMPLATE_DIR.rglob("*") if p.is_file())
    return any(pattern.search(p.read_text(errors="ignore")) for p in files)


def assert_inert(tmp_path: Path, project: Path, texts: dict[str, str]) -> None:
    """No code ran, no code was planted, and each text appears verbatim where it is used."""
    assert not list(tmp_path.rglob("PWNED"))
    for path in project.rglob("*.py"):  # answers may only ever land inside string literals
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert "__import__" not in names, path
    rendered = "\n".join(p.read_text() for p in project.rglob("*") if p.is_file())
    for field, text in texts.items():
        if used_in_template(field):  # verbatim, or escaped by Jinja's tojson (TOML, JSON)
            assert text in rendered or htmlsafe_json_dumps(text)[1:-1] in rendered, field
    pyproject = project / "pyproject.toml"
    if pyproject.exists() and sys.version_info >= (3, 11):
        import tomllib

        meta = tomllib.loads(pyproject.read_text())["project"]
        assert meta["description"] == texts["description"]
        assert [a["name"] for a in meta["authors"]] == [texts["author_name"]]


@needs_project
@pytest.mark.parametrize("payload", PAYLOADS.values(), ids=PAYLOADS.keys())
def test_free_text_from_a_replay_is_inert(tmp_path: Path, payload: str) -> None:
    texts = {"project_name": payload, "description": payload, "author_name": payload}
    project = bake_replay(tmp_path, **SAFE_NAMES, **texts)
    assert_inert(tmp_path, project, texts)


@needs_project
@pytest.mark.parametrize("payload", CLI_PAYLOADS.values(), ids=CLI_PAYLOADS.keys())
def test_free_text_from_the_command_line_is_inert(tmp_path: Path, payload: str) -> None:
    texts = {"project_name": payload, "description": payload, "author_name": payload}
    project = bake(**SAFE_NAMES, **texts)
    assert_inert(tmp_path, project, texts)


@needs_project
def test_jinja_on_the_command_line_is_rendered_by_cookiecutter_not_by_the_hooks(
    tmp_path: Path,
) -> None:
    # With --no-input, cookiecutter itself renders every answer as a template (before any hook).
    project = bake(**SAFE_NAMES, description="{{ 7*7 }}")
    assert_inert(tmp_path, project, {"description": "49", "author_name": "Your Name"})


@needs_template
@pytest.mark.parametrize("field", ["project_name", "description", "author_name"])
def test_jinja_in_a_replayed_answer_is_refused_and_never_stored(
    tmp_path: Path, capfd: pytest.CaptureFixture, field: str
) -> None:
    # A replay (or .cookiecutter.json fed back) is not rendered before the hooks: the payload
    # reaches them verbatim and would be stored, to run when the answers are next rendered.
    with pytest.raises(FailedHookException):
        bake_replay(tmp_path, **SAFE_NAMES, **{field: "{{ 7*7 }} {% raw %}"})
    assert f"ERROR: {field} '{{{{ 7*7 }}}} {{% raw %}}' still holds Jinja" in capfd.readouterr().err
    assert_nothing_written(tmp_path)


@needs_template
@pytest.mark.parametrize("slug", ["", "."])
def test_a_slug_naming_no_folder_gets_a_sentence_and_nothing_is_written(
    tmp_path: Path, slug: str
) -> None:
    code, output = run_cli(tmp_path, f"project_slug={slug}", "smoke_test=off")
    assert code == 1
    assert output.strip() == (
        f"ERROR: project_slug {slug!r} is not a folder name of lowercase letters, digits, - and _ "
        "that starts with a letter; pick another, e.g. 'image-classifier'."
    )
    assert_nothing_written(tmp_path)


@needs_template
def test_generation_ends_with_the_next_steps(capfd: pytest.CaptureFixture) -> None:
    bake(project_name="Road Signs")
    out = capfd.readouterr().out
    assert out.endswith(
        'Next steps:\n    cd road-signs\n    pip install -e ".[dev]"\n'
        "    git init && pre-commit install   # no git init inside an existing repository\n"
        "    python train.py\n"
        "    python test.py --checkpoint runs/<run>/checkpoints/best.pt\n"
    )


@needs_template
def test_a_misspelt_answer_key_on_the_command_line_is_warned_about(tmp_path: Path) -> None:
    code, output = run_cli(tmp_path, "modle_name=tiny", "smoke_test=off", "github_actions=no")
    assert code == 0, output
    warning = "WARNING: modle_name is not an answer of this template (ignored); did you mean "
    assert f"{warning}model_name?" in output


@needs_project
def test_code_as_project_name_is_refused_through_its_slug(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    with pytest.raises(FailedHookException):
        bake(project_name=PAYLOADS["code"])
    assert "ERROR: project_slug" in capfd.readouterr().err
    assert_nothing_written(tmp_path)


# --- exclusions and the smoke_test switch -----------------------------------------------------


@pytest.mark.skipif(
    not (TEMPLATE_DIR / "LICENSE").exists(), reason="the template has no LICENSE file yet"
)
@pytest.mark.parametrize(("license_", "present"), [("MIT", True), ("none", False)])
def test_license_file_follows_the_answer(license_: str, present: bool) -> None:
    assert (bake(license=license_) / "LICENSE").exists() is present


@needs_project
def test_smoke_test_env_overrides_the_answer(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("SMOKE_TEST", "off")
    bake(smoke_test="required")
    assert "Smoke test" not in capfd.readouterr().out


@needs_project
def test_bad_smoke_env_fails_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("SMOKE_DEVICES", "cpu,tpu")
    with pytest.raises(FailedHookException):
        bake(smoke_test="auto")
    assert "ERROR: SMOKE_DEVICES names unknown backend 'tpu'" in capfd.readouterr().err
    assert_nothing_written(tmp_path)


# --- the real smoke step (subprocess CLI, as CI runs it) --------------------------------------


def run_cli(tmp_path: Path, *answers: str, template: Path = REPO, **env: str) -> tuple[int, str]:
    """Run `python -m cookiecutter <template> --no-input -o out <answers>`; (code, output)."""
    command = [sys.executable, "-m", "cookiecutter", str(template), "--no-input", "-o", "out"]
    proc = subprocess.run(
        [*command, *answers], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, **env}, timeout=900,
    )  # fmt: skip
    return proc.returncode, proc.stdout + proc.stderr


def files_of(project: Path) -> set[str]:
    """Every path in a project, relative to it."""
    return {p.relative_to(project).as_posix() for p in project.rglob("*")}


@functools.cache
def backends() -> dict[str, str | None]:
    """What this machine's torch can use (the smoke test's own discovery, one subprocess)."""
    spec = importlib.util.spec_from_file_location("smoke_script", TEMPLATE_DIR / "smoke_test.py")
    assert spec and spec.loader
    smoke = importlib.util.module_from_spec(spec)
    sys.modules["smoke_script"] = smoke  # its dataclasses look their module up there
    spec.loader.exec_module(smoke)
    return smoke.discover(smoke.Settings("auto", (), sys.executable, 300.0))[1]


@pytest.mark.slow
@needs_project
@needs_torch
def test_required_smoke_step_trains_on_cpu_and_leaves_nothing(tmp_path: Path) -> None:
    code, output = run_cli(tmp_path, "smoke_test=required")
    assert code == 0, output
    assert f"Smoke test (python: {sys.executable})" in output
    assert re.search(r"^cpu +ok +loss \S+ -> \S+  [\d.]+ s$", output, re.MULTILINE), output
    project = tmp_path / "out" / "image-classifier"
    baked = files_of(project)
    assert not {Path(p).name for p in baked} & LEFTOVERS
    assert not [p for p in baked if p.endswith((".pt", ".pth", ".pyc"))]
    shutil.rmtree(project)  # same answers, no smoke step: exactly the same files
    assert run_cli(tmp_path, "smoke_test=off")[0] == 0
    assert files_of(project) == baked


@pytest.fixture(scope="module")
def python_without_torch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare virtual environment (no pip, no torch): a fresh machine's python."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.mark.slow
@needs_project
def test_auto_without_torch_explains_how_to_smoke_test_later(
    tmp_path: Path, python_without_torch: Path
) -> None:
    code, output = run_cli(tmp_path, "smoke_test=auto", SMOKE_PYTHON=str(python_without_torch))
    assert code == 0, output
    assert f"torch is not importable by {python_without_torch}" in output
    assert "cd image-classifier && pip install -e . && python train.py --smoke-test" in output
    assert (tmp_path / "out" / "image-classifier" / "train.py").exists()


@pytest.mark.slow
@needs_project
def test_auto_with_torch_but_not_the_projects_dependencies_keeps_the_project_and_says_why(
    tmp_path: Path, python_without_torch: Path
) -> None:
    # A machine with torch and nothing else the project needs: a stand-in torch module.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "torch.py").write_text("__version__ = '0.0-fake'\n")
    code, output = run_cli(
        tmp_path, "smoke_test=auto", SMOKE_PYTHON=str(python_without_torch), PYTHONPATH=str(fake)
    )
    assert code == 0, output
    assert f"{python_without_torch} lacks the project's dependencies torchvision, numpy" in output
    assert "cd image-classifier && pip install -e . && python train.py --smoke-test" in output
    assert (tmp_path / "out" / "image-classifier" / "train.py").exists()


@pytest.mark.slow
@needs_project
def test_required_without_torch_fails_and_writes_nothing(
    tmp_path: Path, python_without_torch: Path
) -> None:
    code, output = run_cli(tmp_path, "smoke_test=required", SMOKE_PYTHON=str(python_without_torch))
    assert code != 0
    assert "ERROR: smoke_test=required but torch is not importable" in output
    assert "pip install -e . && python train.py --smoke-test" in output
    assert_nothing_written(tmp_path)


@pytest.mark.slow
@needs_project
@needs_torch
def test_failing_smoke_step_fails_generation_and_shows_why(tmp_path: Path) -> None:
    broken = tmp_path / "template"
    shutil.copytree(REPO, broken, ignore=shutil.ignore_patterns(".venv", ".git", "*cache*"))
    train = broken / "{{cookiecutter.project_slug}}" / "train.py"
    guard = 'if __name__ == "__main__":'
    assert guard in train.read_text()
    train.write_text(train.read_text().replace(guard, f'{guard}\n    raise RuntimeError("boom")\n'))
    code, output = run_cli(tmp_path, "smoke_test=auto", template=broken, SMOKE_DEVICES="cpu")
    assert code != 0
    assert re.search(r"^cpu +FAILED +exit status 1 after", output, re.MULTILINE), output
    assert "RuntimeError: boom" in output and KEEP_HINT in output
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
@needs_project
@needs_torch
@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_accelerator_smoke_step(tmp_path: Path, device: str) -> None:
    if backends()[device] is not None:
        pytest.skip(f"{device} is unavailable here ({backends()[device]})")
    code, output = run_cli(tmp_path, "smoke_test=required", SMOKE_DEVICES=f"cpu,{device}")
    assert code == 0, output
    assert re.search(rf"^{device} +ok +loss \S+ -> \S+", output, re.MULTILINE), output
    assert re.search(r"^cpu +ok +loss ", output, re.MULTILINE), output
