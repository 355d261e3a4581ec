"""Bake the template with a matrix of answers and check what comes out, down to the
baked project's own lint and test suite."""

import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

REPO = Path(__file__).resolve().parents[1]

# id -> answers; each bake is shared by every test below (session scope: baking and running
# a project's suite costs seconds, and the answers are what varies).
MATRIX = {
    "defaults": {},
    "custom-names": {
        "project_name": "Road Signs",
        "package_name": "signs",
        "model_name": "tiny_resnet_v2",
        "license": "BSD-3-Clause",
        "python_requires": "3.12",
    },
    "short-model-no-license": {
        "project_name": "Leaf Disease",
        "model_name": "net",
        "license": "none",
    },
    "image-to-image": {
        "project_name": "Photo Restorer",
        "task": "image_to_image",
    },
}
DEFAULT_MODEL = {"classification": "small_resnet", "image_to_image": "small_unet"}


def expected_files(
    package: str, model: str, license_file: bool, task: str = "classification"
) -> set[str]:
    """The exact file set of a bake (what the post-gen hook removes is absent)."""
    files = {
        ".gitignore", "README.md", "pyproject.toml", "train.py", "test.py",
        f"{package}/__init__.py", f"{package}/data.py", f"{package}/{model}.py",
        f"{package}/layers/__init__.py", f"{package}/layers/conv_norm_act.py",
        f"{package}/layers/norm.py", f"{package}/layers/residual_block.py",
        f"{package}/losses/__init__.py", f"{package}/losses/classification.py",
        f"{package}/ops/__init__.py", f"{package}/ops/metrics.py", f"{package}/ops/image.py",
        *(f"{package}/engine/{name}.py" for name in (
            "__init__", "checkpoint", "cli", "device", "distributed", "errors", "evaluation",
            "graphs", "interrupt", "optim", "precision", "prefetch", "reporting", "resume",
            "run_dir", "timing",
        )),
        *(f"tests/{name}.py" for name in (
            "__init__", "conftest", "distributed_probe", "test_bad_inputs", "test_checkpoint",
            "test_cli", "test_data", "test_distributed", "test_interrupt", "test_layers",
            "test_losses", "test_model", "test_ops", "test_precision", "test_tensorboard",
            "test_training",
        )),
    }  # fmt: skip
    if task == "image_to_image":
        files -= {f"{package}/{name}.py" for name in (
            "losses/classification", "layers/residual_block",
        )}  # fmt: skip
        files |= {f"{package}/{name}.py" for name in (
            "layers/double_conv", "layers/down_block", "layers/up_block", "losses/perceptual",
            "losses/pixel", "losses/restoration", "ops/corruption",
        )}  # fmt: skip
    return files | {"LICENSE"} if license_file else files


def model_name(answers: dict) -> str:
    return answers.get("model_name", DEFAULT_MODEL[answers.get("task", "classification")])


@pytest.fixture(scope="session", params=list(MATRIX), ids=list(MATRIX))
def baked(request, tmp_path_factory) -> tuple[Path, dict]:
    answers = {**MATRIX[request.param], "smoke_test": "off"}
    out_dir = tmp_path_factory.mktemp(f"bake-{request.param}")
    project = Path(
        cookiecutter(str(REPO), no_input=True, extra_context=answers, output_dir=str(out_dir))
    )
    return project, answers


def project_files(project: Path) -> set[str]:
    return {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".pytest_cache" not in path.parts
    }


def test_file_set_is_exact(baked):
    project, answers = baked
    package = answers.get("package_name", project.name.replace("-", "_"))
    license_file = answers.get("license") != "none"
    task = answers.get("task", "classification")
    assert project_files(project) == expected_files(
        package, model_name(answers), license_file, task
    )


def test_no_template_syntax_is_left(baked):
    project, _ = baked
    for name in project_files(project):
        text = (project / name).read_text()
        assert "{{" not in text and "{%" not in text and "cookiecutter." not in text, name


# Words only the other task's files use: none may be left in a bake.
OTHER_TASK_WORDS = {
    "classification": ("_image_to_image", "perceptual", "psnr", "RestorationLoss"),
    "image_to_image": ("_image_to_image", "ClassificationLoss", "label_smoothing", "topk", "hflip"),
}


def test_no_file_or_word_of_the_other_task_is_left(baked):
    project, answers = baked
    words = OTHER_TASK_WORDS[answers.get("task", "classification")]
    for name in project_files(project):
        text = (project / name).read_text()
        assert not [word for word in words if word in name or word in text], name


def test_every_python_file_compiles(baked):
    project, _ = baked
    for path in project.rglob("*.py"):
        py_compile.compile(str(path), doraise=True, cfile=str(path) + "c-check")
        Path(str(path) + "c-check").unlink()


def test_answers_reach_the_project(baked):
    project, answers = baked
    pyproject = (project / "pyproject.toml").read_text()
    assert f'requires-python = ">={answers.get("python_requires", "3.10")}"' in pyproject
    model_class = model_name(answers).title().replace("_", "")
    package = answers.get("package_name", project.name.replace("-", "_"))
    model_file = project / package / f"{model_name(answers)}.py"
    assert f"class {model_class}(nn.Module):" in model_file.read_text()


def run(project: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=900)


def test_ruff_check_is_clean(baked):
    project, _ = baked
    result = run(project, sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_baked_projects_own_tests_pass(baked):
    project, _ = baked
    result = run(project, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
