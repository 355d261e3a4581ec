"""smoke_test.py, the all-backend check the generator ran: rerun here as a user or CI runs it."""

import os
import re
import subprocess
import sys

from ..helpers import PROJECT_ROOT


def run_smoke_test(*flags: str) -> subprocess.CompletedProcess:
    """Run `python smoke_test.py FLAGS` in the project folder; no bytecode caches left there."""
    return subprocess.run(
        [sys.executable, "smoke_test.py", *flags], cwd=PROJECT_ROOT, capture_output=True,
        text=True, timeout=600, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip


def project_files() -> set[str]:
    return {path.relative_to(PROJECT_ROOT).as_posix() for path in PROJECT_ROOT.rglob("*")}


def test_smoke_test_trains_on_the_cpu_prints_its_line_and_leaves_nothing():
    before = project_files()
    finished = run_smoke_test("--devices", "cpu")
    assert finished.returncode == 0, finished.stdout + finished.stderr
    lines = finished.stdout.splitlines()
    assert lines[0] == f"Smoke test (python: {sys.executable})"
    assert re.fullmatch(r"cpu   ok           loss \S+ -> \S+  [\d.]+ s", lines[1]), lines
    assert project_files() == before


def test_a_bad_flag_is_one_line_and_exit_2():
    finished = run_smoke_test("--devices", "tpu")
    assert finished.returncode == 2
    assert finished.stderr == (
        "smoke_test.py: error: argument --devices: unknown backend 'tpu'; use cpu, cuda, mps "
        "(see smoke_test.py --help)\n"
    )
