"""A baked project can be updated and reproduced: cruft create/check/update/diff round trip,
`cookiecutter --replay`, and the answers the project records in .cookiecutter.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_FOLDER = "{{cookiecutter.project_slug}}"
GIT_IDENTITY = ("-c", "user.name=Template Test", "-c", "user.email=test@example.com")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Subprocess environment: cookiecutter's config and replay files kept inside tmp_path."""
    config = tmp_path / "cc" / "config.yaml"
    config.parent.mkdir()
    config.write_text(f"cookiecutters_dir: {tmp_path / 'cc'}\nreplay_dir: {tmp_path / 'cc'}\n")
    drop = {"SMOKE_TEST", "SMOKE_DEVICES", "SMOKE_PYTHON", "SMOKE_TIMEOUT"}
    return {
        **{key: value for key, value in os.environ.items() if key not in drop},
        "COOKIECUTTER_CONFIG": str(config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,  # no signing or hooks from the caller's git config
    }


def run(cwd: Path, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def git(cwd: Path, env: dict[str, str], *args: str) -> None:
    result = run(cwd, env, "git", *GIT_IDENTITY, *args)
    assert result.returncode == 0, result.stderr


def cruft(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return run(cwd, env, sys.executable, "-m", "cruft", *args)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (git's own folder aside) and its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def test_cruft_create_check_update_round_trip(tmp_path: Path, env: dict[str, str]) -> None:
    # The template as a git repository of its own, so a change to it is a new commit.
    template = tmp_path / "template"
    template.mkdir()
    for name in ("cookiecutter.json", "local_extensions.py", "template_tasks.py"):
        shutil.copy(REPO / name, template)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("hooks", TEMPLATE_FOLDER):
        shutil.copytree(REPO / folder, template / folder, ignore=ignore)
    git(template, env, "init", "-q")
    git(template, env, "add", "-A")
    git(template, env, "commit", "-q", "-m", "template v1")

    answers = json.dumps({"smoke_test": "off", "project_name": "Road Signs", "pre_commit": False})
    created = cruft(
        tmp_path, env, "create", str(template), "--no-input", "--extra-context", answers,
        "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    project = tmp_path / "out" / "road-signs"
    assert (project / ".cruft.json").is_file() and (project / ".github").is_dir()
    assert not (project / ".pre-commit-config.yaml").exists()  # the answer holds on update
    git(project, env, "init", "-q")
    git(project, env, "add", "-A")
    git(project, env, "commit", "-q", "-m", "baked")

    readme = template / TEMPLATE_FOLDER / "README.md"
    readme.write_text(readme.read_text() + "\nUpdated for {{ cookiecutter.project_name }}.\n")
    git(template, env, "commit", "-q", "-a", "-m", "template v2")

    stale = cruft(project, env, "check")
    assert stale.returncode == 1 and "out of date" in stale.stdout, stale.stdout + stale.stderr
    updated = cruft(project, env, "update", "-y")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert (project / "README.md").read_text().endswith("\nUpdated for Road Signs.\n")
    assert not list(project.rglob("*.rej")) and not (project / ".pre-commit-config.yaml").exists()
    fresh = cruft(project, env, "check")
    assert fresh.returncode == 0 and "up to date" in fresh.stdout, fresh.stdout + fresh.stderr
    # Nothing differs from a fresh render at the new commit, .cookiecutter.json included.
    diff = cruft(project, env, "diff", "--exit-code")
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_replay_reproduces_a_bake(tmp_path: Path, env: dict[str, str]) -> None:
    cli = (sys.executable, "-m", "cookiecutter", str(REPO))
    first = run(
        tmp_path, env, *cli, "--no-input", "-o", "first", "project_name=Road Signs",
        "model_name=tiny_net", "license=none", "github_actions=no", "smoke_test=off",
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "cc" / f"{REPO.name}.json").is_file()  # the replay file
    again = run(tmp_path, env, *cli, "--replay", "-o", "again")
    assert again.returncode == 0, again.stderr
    baked = tree(tmp_path / "first" / "road-signs")
    assert "tiny_net" in json.loads(baked[".cookiecutter.json"])["model_name"]
    assert tree(tmp_path / "again" / "road-signs") == baked


def test_recorded_answers_regenerate_the_same_project(tmp_path: Path, env: dict[str, str]) -> None:
    def bake(answers: dict, out: str) -> Path:
        project = cookiecutter(
            str(REPO), no_input=True, extra_context=answers, output_dir=str(tmp_path / out),
            config_file=env["COOKIECUTTER_CONFIG"],
        )  # fmt: skip
        return Path(project)

    first = bake({"project_name": "Leaf Disease", "pre_commit": False, "smoke_test": "off"}, "a")
    recorded = json.loads((first / ".cookiecutter.json").read_text())
    assert recorded["pre_commit"] is False and recorded["project_slug"] == "leaf-disease"
    assert tree(bake(recorded, "b")) == tree(first)
