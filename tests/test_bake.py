"""Bake the template with a matrix of answers and check what comes out, down to the
baked project's own lint and test suite."""

import ast
import importlib.util
import json
import py_compile
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

import template_tasks

try:
    import tomllib
except ImportError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_DIR = REPO / "{{cookiecutter.project_slug}}"
WORKFLOW = ".github/workflows/ci.yml"
PRE_COMMIT = ".pre-commit-config.yaml"

# Every task of the template, read from its folder's manifest: every task list below is
# derived from these, so a new task folder is baked and checked without editing this file.
TASKS = template_tasks.read_tasks()
DEFAULT_TASK = json.loads((REPO / "cookiecutter.json").read_text())["task"][0]

# id -> answers; each bake is shared by every test below (session scope: baking and running
# a project's suite costs seconds, and the answers are what varies). "defaults" has every
# optional file on, "short-model-everything-off" every one off; then one bake per task with
# the answers its manifest names.
MATRIX = {
    "defaults": {},
    "custom-names": {
        "project_name": "Road Signs",
        "package_name": "signs",
        "model_name": "tiny_resnet_v2",
        "license": "BSD-3-Clause",
        "python_requires": "3.12",
    },
    "short-model-everything-off": {
        "project_name": "Leaf Disease",
        "model_name": "net",
        "license": "none",
        "github_actions": False,
        "pre_commit": False,
    },
    **{f"task-{name}": {**task.test_bake, "task": name} for name, task in TASKS.items()},
}
DEFAULT_MODEL = {name: task.model_name for name, task in TASKS.items()}


def load_post_gen_hook() -> ModuleType:
    """The post-gen hook, imported unrendered: its tables say what each answer removes or adds."""
    spec = importlib.util.spec_from_file_location(
        "post_gen_tables", REPO / "hooks" / "post_gen_project.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


POST_GEN = load_post_gen_hook()


def template_files(answers: dict) -> set[str]:
    """Every file of the template tree, its names rendered for `answers`."""
    names = {
        "{{cookiecutter.package_name}}": answers["package_name"],
        "{{cookiecutter.model_name}}": answers["model_name"],
    }
    files = set()
    for path in TEMPLATE_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(TEMPLATE_DIR).as_posix()
            for placeholder, name in names.items():
                relative = relative.replace(placeholder, name)
            files.add(relative)
    return files


def expected_files(answers: dict) -> set[str]:
    """The file set the template tree and the post-gen hook's tables promise for `answers`
    (the answers the project recorded): the shared tree, the chosen task's folder moved in,
    and what the exclusion rows name removed."""
    files = template_files(answers)
    task_files = {path for path in files if path.startswith(f"{POST_GEN.TASKS}/")}
    chosen = f"{POST_GEN.TASKS}/{answers['task']}/"
    files -= task_files
    files |= {
        path.removeprefix(chosen)
        for path in task_files
        if path.startswith(chosen) and path.removeprefix(chosen) not in template_tasks.TEMPLATE_ONLY
    }
    for applies, removed in POST_GEN.EXCLUSIONS:
        if applies(answers):
            for entry in removed:
                files = {
                    path for path in files if path != entry and not path.startswith(f"{entry}/")
                }
    return files


@pytest.fixture(scope="session")
def bake_of(tmp_path_factory) -> Callable[[str], tuple[Path, dict]]:
    """Bake a MATRIX entry once per session, whichever tests ask for it."""
    made: dict[str, tuple[Path, dict]] = {}

    def bake(key: str) -> tuple[Path, dict]:
        if key not in made:
            answers = {**MATRIX[key], "smoke_test": "off"}
            out_dir = tmp_path_factory.mktemp(f"bake-{key}")
            project = cookiecutter(
                str(REPO), no_input=True, extra_context=answers, output_dir=str(out_dir)
            )
            made[key] = (Path(project), answers)
        return made[key]

    return bake


def model_name(answers: dict) -> str:
    return answers.get("model_name", DEFAULT_MODEL[answers.get("task", DEFAULT_TASK)])


@pytest.fixture(scope="session", params=list(MATRIX), ids=list(MATRIX))
def baked(request, bake_of) -> tuple[Path, dict]:
    return bake_of(request.param)


@pytest.fixture(scope="session")
def everything_on(bake_of) -> Path:
    """The defaults bake: every optional file is there."""
    project, _ = bake_of("defaults")
    assert (project / WORKFLOW).is_file() and (project / PRE_COMMIT).is_file()
    return project


def project_files(project: Path) -> set[str]:
    return {
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and ".pytest_cache" not in path.parts
    }


def test_file_set_is_exact(baked):
    project, _ = baked
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert project_files(project) == expected_files(recorded)


def task_folder_files(task: str, answers: dict) -> set[str]:
    """The project paths one task's folder adds, its names rendered for `answers`."""
    folder = f"{POST_GEN.TASKS}/{task}/"
    return {
        path.removeprefix(folder)
        for path in template_files(answers)
        if path.startswith(folder) and path.removeprefix(folder) not in template_tasks.TEMPLATE_ONLY
    }


def test_a_bake_has_no_file_that_only_another_task_has(baked):
    # e.g. an image_to_image bake has no losses/classification.py nor layers/residual_block.py.
    project, _ = baked
    answers = json.loads((project / ".cookiecutter.json").read_text())
    every_task = [task_folder_files(task, answers) for task in TASKS]
    only_others = set().union(*every_task) - task_folder_files(answers["task"], answers)
    assert only_others and not only_others & project_files(project)


def test_every_task_bakes_byte_identical_scripts_and_engine(tmp_path):
    # The scripts, engine/ and the machinery's tests are one program for every task: what
    # differs is the task's.
    baked = {}
    for task in TASKS:
        project = bake_names(tmp_path / task, task, "proj", "net")
        baked[task] = {
            name: (project / name).read_bytes()
            for name in project_files(project)
            if name in ("train.py", "test.py", "predict.py", "export.py", "sweep.py")
            or name.startswith(("proj/engine/", "tests/engine/"))
            or name in ("tests/conftest.py", "tests/helpers.py")
        }
    first_task, first = next(iter(baked.items()))
    assert "proj/engine/__init__.py" in first and "tests/engine/test_export.py" in first
    for task, files in baked.items():
        assert files.keys() == first.keys(), (task, first_task)
        assert [name for name in files if files[name] != first[name]] == [], (task, first_task)


def test_train_py_stays_a_recipe_a_reader_takes_in(tmp_path):
    # DESIGN.md's targets: train.py under ~350 lines, train() under 80, and the loop's function
    # with at most 6 parameters (the seed's main loop words stay visible in it).
    project = bake_names(tmp_path, DEFAULT_TASK, "proj", "net")
    source = (project / "train.py").read_text()
    functions = {
        node.name: node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)
    }
    assert len(source.splitlines()) <= 350
    assert functions["train"].end_lineno - functions["train"].lineno + 1 <= 80
    assert len(functions["train_one_epoch"].args.args) <= 6
    loop = ast.unparse(functions["train_one_epoch"])
    assert all(call in loop for call in ("zero_grad(", "backward(", ".step("))


# The task answer, however Jinja spells it: cookiecutter.task, cookiecutter["task"], ...
TASK_ANSWER = re.compile(r"cookiecutter\s*(\.\s*task\b|\[\s*['\"]task['\"]\s*\])")


def test_no_shared_template_file_nor_hook_mentions_the_task_answer():
    # What differs between tasks lives in the task folders (the README's task parts too); the
    # shared tree and the hooks are the same for every task.
    shared = [
        path
        for path in TEMPLATE_DIR.rglob("*")
        if path.is_file() and path.relative_to(TEMPLATE_DIR).parts[0] != POST_GEN.TASKS
    ]
    hooks = [path for path in (REPO / "hooks").rglob("*") if path.is_file()]
    assert len(shared) > 20 and hooks
    mentions = [
        path.relative_to(REPO).as_posix()
        for path in shared + hooks
        if "__pycache__" not in path.parts and TASK_ANSWER.search(path.read_text())
    ]
    assert mentions == []


MACRO_CALL = re.compile(r"\{\{ task\.(\w+)\(\) \}\}")
MACRO_DEFINITION = re.compile(r"\{% macro (\w+)\(\) %\}")


def test_every_task_folder_writes_each_part_the_readme_asks_for():
    # The generated README's task-specific parts are macros of the task folder's readme.md.
    called = set(MACRO_CALL.findall((TEMPLATE_DIR / "README.md").read_text()))
    assert called
    for name in TASKS:
        parts = TEMPLATE_DIR / POST_GEN.TASKS / name / template_tasks.README_PARTS
        defined = MACRO_DEFINITION.findall(parts.read_text())
        assert sorted(defined) == sorted(called), f"{parts}: {defined}, the README: {called}"


# GitHub Actions' own expressions, which the workflow keeps (it is copied without rendering).
GITHUB_EXPRESSION = re.compile(r"\$\{\{ [A-Za-z_][\w.-]* \}\}")


def test_no_template_syntax_is_left(baked):
    project, _ = baked
    for name in project_files(project):
        text = (project / name).read_text()
        if name.startswith(".github/"):
            text = GITHUB_EXPRESSION.sub("", text)
        for syntax in ("{{", "{%"):
            assert syntax not in text, (name, syntax)
        # A variable left unrendered; the file name .cookiecutter.json is fine.
        assert not re.search(r"(?<![.\w])cookiecutter\.\w", text), name


def public_answers(answers: dict) -> dict:
    """What cookiecutter renders for these answers, without its private (_-prefixed) keys."""
    context = generate_context(REPO / "cookiecutter.json", extra_context=answers)
    rendered = prompt_for_config(context, no_input=True)
    return {key: value for key, value in rendered.items() if not key.startswith("_")}


def test_answers_are_recorded_without_private_keys(baked):
    project, answers = baked
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert recorded == public_answers(answers)
    assert recorded["github_actions"] is answers.get("github_actions", True)  # JSON booleans


def test_dev_extra_has_what_ci_and_pre_commit_need(baked):
    project, answers = baked
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    specs = pyproject["project"]["optional-dependencies"]["dev"]
    dev = {re.split(r"[<>=!~ \[]", spec)[0] for spec in specs}
    wanted = {"pytest", "ruff", "torchmetrics"}  # torchmetrics: the metric tests' reference
    wanted |= {"pre-commit"} if answers.get("pre_commit", True) else set()
    assert dev == wanted


def other_task_words(task: str) -> set[str]:
    """Words only the other tasks' files use (their manifests say which): none may be left in
    a bake of `task`, nor the task folders' name."""
    others = [other for name, other in TASKS.items() if name != task]
    return {template_tasks.TASKS, *(word for other in others for word in other.own_words)}


def test_no_file_or_word_of_the_other_task_is_left(baked):
    project, answers = baked
    words = other_task_words(answers.get("task", DEFAULT_TASK))
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
    assert f"class {model_class}(" in model_file.read_text()  # nn.Module or a shared body


def bake_names(out_dir: Path, task: str, package: str, model: str) -> Path:
    """Bake one task with these package and model names, smoke step off."""
    answers = {"package_name": package, "model_name": model, "task": task, "smoke_test": "off"}
    return Path(
        cookiecutter(str(REPO), no_input=True, extra_context=answers, output_dir=str(out_dir))
    )


def assert_compiles_and_ruff_clean(project: Path) -> None:
    for path in project.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")
    for command in (("check", "."), ("format", "--check", ".")):
        result = run(project, sys.executable, "-m", "ruff", *command)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("task", list(TASKS))
def test_names_at_the_length_limits_stay_lint_and_format_clean(tmp_path, task):
    # The package name is only in imports, written one name a line (ruff's magic trailing
    # comma); the model's class name sits inside code lines, hence its shorter limit.
    pre = load_pre_gen_hook()
    package = "plant_disease_classifier_scans_v2" + "x" * (pre.MAX_PACKAGE_NAME - 33)
    model = "m" * pre.MAX_MODEL_NAME  # no underscore: the longest class name
    assert_compiles_and_ruff_clean(bake_names(tmp_path, task, package, model))


def load_pre_gen_hook():
    spec = importlib.util.spec_from_file_location(
        "pre_gen_rules", REPO / "hooks/pre_gen_project.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Model names that are identifiers of the scripts, their imports or the tests (each once
# crashed train.py or test.py, or failed ruff), and package names that sort after "tests"
# (imports of both in one file once failed ruff's I001). Scripts and tests reach the model
# module only through a fixed alias, so none of these can collide.
NATURAL_MODEL_NAMES = [
    "model", "train", "torch", "math", "device", "summary", "state", "checkpoint",
    "evaluation", "loader", "architecture", "nn", "path", "data_loader", "conv_norm_act",
]  # fmt: skip
LATE_PACKAGE_NAMES = ["vision", "zoe_net", "tests2"]
NAME_ROWS = [
    (LATE_PACKAGE_NAMES[i % len(LATE_PACKAGE_NAMES)], model)
    for i, model in enumerate(NATURAL_MODEL_NAMES)
]


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize(("package", "model"), NAME_ROWS, ids=[m for _, m in NAME_ROWS])
def test_natural_names_give_a_clean_project(tmp_path, task, package, model):
    assert_compiles_and_ruff_clean(bake_names(tmp_path, task, package, model))


def tiny_run_flags(project: Path) -> list[str]:
    """The baked project's own TINY_RUN_FLAGS (tests/helpers.py, with the task's own from
    tests/task/task_cases.py where it unpacks them)."""
    return listed_strings(project / "tests", "helpers.py", "TINY_RUN_FLAGS")


def listed_strings(folder: Path, module: str, name: str) -> list[str]:
    """The list of strings assigned to `name` in `folder/module`, following `*other.NAME`."""
    tree = ast.parse((folder / module).read_text())
    [value] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.AnnAssign | ast.Assign)
        and ast.unparse(node.target if isinstance(node, ast.AnnAssign) else node.targets[0]) == name
    ]
    items: list[str] = []
    for element in value.elts:
        if isinstance(element, ast.Starred):  # *task_cases.TINY_RUN_FLAGS
            other, attribute = ast.unparse(element.value).split(".")
            items += listed_strings(folder, f"task/{other}.py", attribute)
        else:
            items.append(ast.literal_eval(element))
    return items


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "model"), [(name, task.natural_model_name) for name, task in TASKS.items()]
)
def test_a_natural_model_name_trains_and_tests(tmp_path, task, model):
    project = bake_names(tmp_path, task, "vision", model)
    flags = [*tiny_run_flags(project), "--epochs", "1", "--out-dir", "runs", "--run-name", "tiny"]
    trained = run(project, sys.executable, "train.py", *flags)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    best = "runs/tiny/checkpoints/best.pt"
    tested = run(project, sys.executable, "test.py", "--checkpoint", best, "--device", "cpu")
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-3000:]
    assert json.loads(tested.stdout.strip().splitlines()[-1])["samples"] > 0


def run(project: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=900)


def test_ruff_check_is_clean(baked):
    project, _ = baked
    result = run(project, sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


# Each task's own suite runs once, on its task bake: the other bakes differ only in names
# and optional files, which the fast lane checks (file set, compile, ruff) and the natural-name
# test above trains.
TASK_BAKES = [f"task-{name}" for name in TASKS]
# The shared machinery tests (tests/engine/, byte-identical in every bake) whose outcome rests
# on no task: signals between torchrun's processes, an elastic run's agents, the prefetch
# thread, the batch-size search, mixed precision, faults, timers and the sampler's arithmetic.
# They run on the default task's bake; every other bake runs the rest of tests/engine/ (resume,
# DDP, the elastic 2 -> 1 resume, EMA, top-k, export, config, sweep, trackers: what a task's
# data, model, loss and metrics could break), tests/images/ and tests/task/ (CI's time budget).
TASK_FREE_ENGINE_TESTS = (
    "test_elastic.py::test_sigusr1_stops_python_train_py_at_the_next_step_with_exit_code_138",
    "test_elastic.py::test_sigusr1_on_one_process_stops_every_process_at_the_same_step_and_saves",
    "test_elastic.py::test_a_stop_agreed_during_validation_ends_it_on_every_process_and_saves",
    "test_elastic.py::test_workers_whose_torchrun_agent_is_killed_stop_together_and_save",
    "test_elastic.py::test_an_elastic_run_that_loses_a_process_then_gains_one_trains_each_sample",
    "test_prefetch.py", "test_batch_size.py", "test_precision.py", "test_faults.py",
    "test_timing.py", "test_resharding.py",
)  # fmt: skip


def own_tests(project: Path, task: str, *folders: str) -> subprocess.CompletedProcess:
    """The baked project's own tests (under `folders`, default all), less the task-free
    machinery tests off the default task."""
    deselected = [] if task == DEFAULT_TASK else TASK_FREE_ENGINE_TESTS
    options = [f"--deselect=tests/engine/{test}" for test in deselected]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options]
    return run(project, *command, *folders)


@pytest.mark.slow
@pytest.mark.parametrize("key", TASK_BAKES)
def test_the_baked_projects_own_tests_pass(bake_of, key):
    project, answers = bake_of(key)
    result = own_tests(project, answers["task"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]


# --- the optional CI workflow and pre-commit config (the defaults bake has both) --------------


def workflow_steps(project: Path) -> list[dict]:
    """The steps of the workflow's only job."""
    workflow = yaml.safe_load((project / WORKFLOW).read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert {"push", "pull_request"} <= set(triggers)
    [job] = workflow["jobs"].values()
    return job["steps"]


def step_index(steps: list[dict], pattern: str) -> int:
    """Index of the one step whose `run` command matches the pattern."""
    found = [i for i, step in enumerate(steps) if re.search(pattern, step.get("run", ""))]
    assert len(found) == 1, (pattern, found)
    return found[0]


def test_workflow_is_copied_verbatim_with_its_expressions(everything_on):
    text = (everything_on / WORKFLOW).read_text()
    template = (TEMPLATE_DIR / WORKFLOW).read_text()
    # Verbatim but for the Python matrix line, which the post-gen hook writes.
    assert text == template.replace('python: ["3.12"]', 'python: ["3.10", "3.12"]')
    expressions = GITHUB_EXPRESSION.findall(text)
    assert "${{ matrix.python }}" in expressions and "${{ github.ref }}" in expressions
    assert text.count("{{") == text.count("}}") == len(expressions)


def test_workflow_tests_the_declared_python_floor_and_the_newest(baked):
    project, answers = baked
    if not (project / WORKFLOW).is_file():
        pytest.skip("github_actions is off in this bake")
    workflow = yaml.safe_load((project / WORKFLOW).read_text())
    [job] = workflow["jobs"].values()
    floor = answers.get("python_requires", "3.10")
    assert job["strategy"]["matrix"]["python"] == list(dict.fromkeys([floor, "3.12"]))
    requires = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert requires["requires-python"] == f">={floor}"


def test_readme_has_no_empty_code_block_and_git_init_before_pre_commit(baked):
    project, answers = baked
    readme = (project / "README.md").read_text()
    assert not re.search(r"```bash\n\s*```", readme)
    if answers.get("pre_commit", True):
        assert readme.index("\ngit init ") < readme.index("\npre-commit install ")


def test_workflow_sets_up_cached_pip_then_cpu_torch_then_lints_and_tests(everything_on):
    steps = workflow_steps(everything_on)
    [setup] = [step for step in steps if step.get("uses", "").startswith("actions/setup-python@")]
    assert setup["with"]["cache"] == "pip"
    assert setup["with"]["cache-dependency-path"] == "pyproject.toml"
    cpu_torch = step_index(
        steps, r"pip install torch torchvision --index-url https://download\.pytorch\.org/whl/cpu$"
    )
    install = step_index(steps, r'pip install -e "\.\[dev,export\]"$')
    lint = step_index(steps, r"^ruff check \.$")
    format_check = step_index(steps, r"^ruff format --check \.$")
    test = step_index(steps, r"^python -m pytest$")
    # CPU torch before the project, or pip would pull the CUDA build to satisfy torch>=2.11.
    assert steps.index(setup) < cpu_torch < install < lint < format_check < test


def test_pre_commit_runs_ruff_pinned_like_the_dev_extra(everything_on):
    config = yaml.safe_load((everything_on / PRE_COMMIT).read_text())
    [repo] = config["repos"]
    assert repo["repo"] == "https://github.com/astral-sh/ruff-pre-commit"
    assert [hook["id"] for hook in repo["hooks"]] == ["ruff", "ruff-format"]
    assert "--fix" in repo["hooks"][0]["args"]
    dev = tomllib.loads((everything_on / "pyproject.toml").read_text())["project"]
    [ruff] = [spec for spec in dev["optional-dependencies"]["dev"] if spec.startswith("ruff")]
    assert ruff == f"ruff=={repo['rev'].removeprefix('v')}"


# --- adding a task: its folder and one cookiecutter.json row --------------------------------


def copy_template(destination: Path) -> Path:
    """A copy of the template repository's files that cookiecutter reads."""
    destination.mkdir()
    names = ["cookiecutter.json", "local_extensions.py", "template_tasks.py", "hooks"]
    for name in [*names, TEMPLATE_DIR.name]:
        source = REPO / name
        if source.is_dir():
            caches = shutil.ignore_patterns("__pycache__")
            shutil.copytree(source, destination / name, ignore=caches)
        else:
            shutil.copy2(source, destination / name)
    return destination


def add_task_folder(template: Path, folder: Path, name: str, prompt: str) -> None:
    """`folder` copied into a template copy as the task `name`, with its cookiecutter.json
    choice row: what a task author adds."""
    tasks = template / TEMPLATE_DIR.name / template_tasks.TASKS
    shutil.copytree(folder, tasks / name, ignore=shutil.ignore_patterns("__pycache__"))
    manifest = json.loads((tasks / name / template_tasks.MANIFEST).read_text())
    manifest["prompt"] = prompt
    (tasks / name / template_tasks.MANIFEST).write_text(json.dumps(manifest))
    config = json.loads((template / "cookiecutter.json").read_text())
    config["task"].append(name)
    config["__prompts__"]["task"][name] = prompt
    (template / "cookiecutter.json").write_text(json.dumps(config))


def bake_template_copy(template: Path, out_dir: Path, *answers: str) -> Path:
    """The project a template copy bakes with these answers (smoke step off)."""
    # In a process of its own, away from this folder: this one has imported the repository's
    # template_tasks, and `python -m` puts the working folder first on the import path.
    command = [sys.executable, "-m", "cookiecutter", "--no-input", str(template)]
    command += ["-o", str(out_dir), *answers, "smoke_test=off"]
    baked = subprocess.run(
        command, cwd=template.parent, capture_output=True, text=True, timeout=300
    )
    assert baked.returncode == 0, baked.stderr[-3000:]
    [project] = out_dir.iterdir()
    return project


def test_a_task_folder_copied_under_a_new_name_bakes_with_only_its_choice_row_added(tmp_path):
    # The promise to a task author: the folder and one cookiecutter.json row; the hooks, the
    # defaults and every list about the tasks follow from the folder.
    template = copy_template(tmp_path / "template")
    [source, *_] = [name for name in TASKS if name != DEFAULT_TASK] or [DEFAULT_TASK]
    tasks = template / TEMPLATE_DIR.name / template_tasks.TASKS
    add_task_folder(template, tasks / source, "copied_task", "copied_task: a copy")
    project = bake_template_copy(template, tmp_path / "out", "task=copied_task")
    assert project.name == TASKS[source].project_name.lower().replace(" ", "-")
    recorded = json.loads((project / ".cookiecutter.json").read_text())
    assert recorded["task"] == "copied_task"
    original = expected_files({**recorded, "task": source})
    assert project_files(project) == original
    assert_compiles_and_ruff_clean(project)


# --- a task with no image: the test-only vector task ------------------------------------------
VECTOR_TASK = REPO / "tests" / "vector_task"  # a small MLP on synthetic vectors
SHARED_PROGRAM = ("train.py", "test.py", "predict.py", "export.py", "sweep.py")


@pytest.fixture(scope="module")
def vector_project(tmp_path_factory) -> Path:
    """The vector task baked through the hooks like any task folder (package proj, model net)."""
    root = tmp_path_factory.mktemp("vector")
    template = copy_template(root / "template")
    add_task_folder(template, VECTOR_TASK, "vector", "vector: a vector in, a class out")
    answers = ("task=vector", "package_name=proj", "model_name=net")
    return bake_template_copy(template, root / "out", *answers)


def test_a_task_with_no_image_bakes_clean_with_the_shared_program_unchanged(
    vector_project, tmp_path
):
    assert_compiles_and_ruff_clean(vector_project)
    other = bake_names(tmp_path, DEFAULT_TASK, "proj", "net")
    shared = [
        name
        for name in project_files(other)
        if name in SHARED_PROGRAM or name.startswith(("proj/engine/", "tests/engine/"))
    ]
    assert "proj/engine/task_base.py" in shared
    for name in shared:
        assert (vector_project / name).read_bytes() == (other / name).read_bytes(), name


@pytest.mark.slow
def test_a_task_with_no_image_passes_the_shared_machinery_tests(vector_project):
    # tests/images/ is for tasks whose inputs are images (it writes image folders)
    result = own_tests(vector_project, "vector", "tests/engine", "tests/task")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
