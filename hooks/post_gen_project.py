"""Trim the project to the answers, write its CI matrix, smoke-train it, print the next steps.

Cookiecutter renders this file with Jinja and runs it inside the new project folder; a
non-zero exit makes it delete the project (unless --keep-project-on-failure is given).
The smoke step runs `python train.py --smoke-test --device <backend>` once per backend the
interpreter can use. Environment overrides (for CI): SMOKE_TEST (auto/required/off),
SMOKE_DEVICES (e.g. cpu,cuda), SMOKE_PYTHON (interpreter), SMOKE_TIMEOUT (seconds per backend).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Condition = Callable[[dict[str, Any]], bool]


def is_image_to_image(answers: dict[str, Any]) -> bool:
    return answers.get("task") == "image_to_image"


# Where the two tasks differ. A file whose two versions differ at a few lines (train.py,
# README.md) holds both behind small Jinja if-blocks on cookiecutter.task. A file whose
# versions share little (data.py, the model module, evaluation, test.py, most tests) would be
# two programs interleaved by Jinja, so the image-to-image version is a file of its own at the
# same relative path under TASK_OVERLAY: for that task the hook moves those files over the
# classification ones; for classification it deletes the folder. The classification tree
# stays the plain default, and each task's files read as ordinary Python.
TASK_OVERLAY = "_image_to_image"
PACKAGE = "{package}"  # stands for the package folder in the rows below
CLASSIFICATION_ONLY = [
    f"{PACKAGE}/losses/classification.py",
    f"{PACKAGE}/layers/residual_block.py",
]

# (condition on the answers, project paths it removes); later options add rows here.
# `is False`: the pre-gen hook has already refused anything that is not a JSON boolean.
EXCLUSIONS: list[tuple[Condition, list[str]]] = [
    (lambda answers: answers.get("license") == "none", ["LICENSE"]),
    (lambda answers: answers.get("github_actions") is False, [".github"]),
    (lambda answers: answers.get("pre_commit") is False, [".pre-commit-config.yaml"]),
    (is_image_to_image, CLASSIFICATION_ONLY),
]
# (condition on the answers, folder whose files replace the project's at the same paths);
# the folder itself is always removed.
OVERLAYS: list[tuple[Condition, str]] = [
    (is_image_to_image, TASK_OVERLAY),
]
# The GitHub workflow is copied without rendering (its expressions are GitHub's): this hook writes
# its Python matrix, the floor the project declares and the newest Python it supports.
WORKFLOW = Path(".github/workflows/ci.yml")
MATRIX_LINE = re.compile(r"^(?P<indent>\s*)python: \[.*\]$", re.MULTILINE)
NEWEST_PYTHON = "3.12"
MODES = ("auto", "required", "off")
BACKENDS = ("cpu", "cuda", "mps")
DEFAULT_TIMEOUT = 300.0
TAIL_LINES = 20
CACHE_NAMES = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
KEEP_HINT = "rerun with --keep-project-on-failure to keep the project and debug it"

# Runs in SMOKE_PYTHON: one interpreter start (importing torch costs seconds) finds every
# backend. A backend maps to null when usable, else to the reason it is not.
DISCOVER = r"""
import importlib.util
import json
try:
    import torch
except Exception as exc:
    print(json.dumps({"torch": None, "error": f"{type(exc).__name__}: {exc}"}))
    raise SystemExit(0)

# What train.py imports besides torch (the project's dependencies), looked up, not imported.
NEEDS = ("torchvision", "numpy", "PIL", "tqdm", "prefetch_generator", "torchinfo", "tensorboard")
missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
if missing:
    print(json.dumps({"torch": None, "missing": ", ".join(missing)}))
    raise SystemExit(0)

def mps_reason():
    if not torch.backends.mps.is_built():
        return "not built"
    if not torch.backends.mps.is_available():
        return "no device"
    try:  # macOS CI runners report MPS available, then fail to allocate on it
        (torch.ones(1, device="mps") + 1).cpu()
    except Exception as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:100]
    return None

if torch.cuda.is_available():
    cuda = None
else:
    cuda = "no device" if torch.backends.cuda.is_built() else "not built"
devices = {"cpu": None, "cuda": cuda, "mps": mps_reason()}
print(json.dumps({"torch": torch.__version__, "devices": devices}))
"""


class SmokeError(Exception):
    """A problem that stops the smoke step; its text is one sentence for the user."""


@dataclass(frozen=True)
class Settings:
    """How to run the smoke step: the answer, overridden by SMOKE_* environment variables."""

    mode: str
    devices: tuple[str, ...]  # empty: every backend
    python: str
    timeout: float


@dataclass(frozen=True)
class Outcome:
    """What happened on one backend."""

    device: str
    status: str  # ok, unavailable or FAILED
    detail: str
    tail: str = ""


def remove_excluded(project: Path, answers: dict[str, Any]) -> list[str]:
    """Delete the files and folders that the answers exclude; return their paths."""
    removed = []
    for applies, paths in EXCLUSIONS:
        if not applies(answers):
            continue
        for relative in paths:
            relative = relative.replace(PACKAGE, str(answers.get("package_name")))
            path = project / relative
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
            removed.append(relative)
    return removed


def apply_overlays(project: Path, answers: dict[str, Any]) -> list[str]:
    """Move each applying overlay's files over the project's; remove every overlay folder."""
    moved = []
    for applies, folder in OVERLAYS:
        source = project / folder
        if applies(answers) and source.is_dir():
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                relative = path.relative_to(source)
                (project / relative).parent.mkdir(parents=True, exist_ok=True)
                path.replace(project / relative)
                moved.append(relative.as_posix())
        shutil.rmtree(source, ignore_errors=True)
    return moved


def ci_pythons(answers: dict[str, Any]) -> list[str]:
    """The Pythons CI tests: the declared floor (python_requires) and the newest, once each."""
    return list(dict.fromkeys([str(answers.get("python_requires", NEWEST_PYTHON)), NEWEST_PYTHON]))


def write_ci_matrix(project: Path, answers: dict[str, Any]) -> None:
    """Write the workflow's Python matrix line (no workflow, e.g. github_actions=no: nothing)."""
    path = project / WORKFLOW
    if not path.is_file():
        return
    versions = ", ".join(f'"{version}"' for version in ci_pythons(answers))
    text, count = MATRIX_LINE.subn(rf"\g<indent>python: [{versions}]", path.read_text(), count=1)
    if count != 1:
        raise SmokeError(f"{WORKFLOW} has no 'python: [...]' matrix line to write.")
    path.write_text(text)


def next_steps(project: Path, answers: dict[str, Any]) -> str:
    """What to type after generation: install, train, evaluate (and pre-commit, if chosen)."""
    steps = [f"cd {project.name}", 'pip install -e ".[dev]"']
    if answers.get("pre_commit") is True:
        steps.append("git init && pre-commit install   # no git init inside an existing repository")
    steps += ["python train.py", "python test.py --checkpoint runs/<run>/checkpoints/best.pt"]
    return "Next steps:\n" + "".join(f"    {step}\n" for step in steps)


def read_settings(answers: dict[str, Any], environ: Mapping[str, str]) -> Settings:
    """Combine the smoke_test answer with the SMOKE_* environment overrides."""
    mode = environ.get("SMOKE_TEST") or answers.get("smoke_test") or "auto"
    if mode not in MODES:
        raise SmokeError(f"SMOKE_TEST={mode!r} is not one of auto, required, off.")
    devices = [d.strip().lower() for d in environ.get("SMOKE_DEVICES", "").split(",")]
    devices = list(dict.fromkeys(d for d in devices if d))  # drop blanks and repeats
    unknown = [d for d in devices if d not in BACKENDS]
    if unknown:
        raise SmokeError(f"SMOKE_DEVICES names unknown backend {unknown[0]!r}; use cpu, cuda, mps.")
    try:
        timeout = float(environ.get("SMOKE_TIMEOUT") or DEFAULT_TIMEOUT)
    except ValueError:
        timeout = -1.0
    if not timeout > 0:
        raise SmokeError(f"SMOKE_TIMEOUT={environ['SMOKE_TIMEOUT']!r} is not a number of seconds.")
    python = environ.get("SMOKE_PYTHON") or sys.executable
    # Resolve a bare command now: the subprocesses run in the project folder, not the caller's.
    return Settings(mode, tuple(devices), shutil.which(python) or python, timeout)


def smoke_env() -> dict[str, str]:
    """Environment of the smoke subprocesses: no bytecode caches in the new project."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def parse_discovery(stdout: str) -> tuple[str | None, dict[str, str | None]]:
    """Read DISCOVER's JSON line: (torch version or None, backend -> reason or None)."""
    report = json.loads(stdout.strip().splitlines()[-1])
    if report["torch"] is None and "missing" in report:  # torch is there, but not all else
        return None, {"missing": report["missing"]}
    if report["torch"] is None:
        return None, {"torch": report["error"]}
    return report["torch"], report["devices"]


def discover(settings: Settings) -> tuple[str | None, dict[str, str | None]]:
    """Ask SMOKE_PYTHON, in one subprocess, which backends it can use."""
    try:
        proc = subprocess.run(
            [settings.python, "-c", DISCOVER], capture_output=True, text=True,
            timeout=settings.timeout, env=smoke_env(), stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as exc:
        raise SmokeError(f"cannot run the interpreter {settings.python!r} ({exc}).") from exc
    except subprocess.TimeoutExpired as exc:
        raise SmokeError(f"finding the backends took over {settings.timeout:g} s.") from exc
    if proc.returncode != 0:
        last = tail(proc.stdout, proc.stderr, 1) or "no output"
        raise SmokeError(f"finding the backends failed (exit {proc.returncode}: {last}).")
    try:
        return parse_discovery(proc.stdout)
    except (IndexError, ValueError, KeyError, TypeError) as exc:
        last = tail(proc.stdout, proc.stderr, 1) or "no output"
        raise SmokeError(f"finding the backends gave no readable report ({last}).") from exc


def tail(stdout: str | bytes | None, stderr: str | bytes | None, lines: int = TAIL_LINES) -> str:
    """The last lines of a subprocess's output (stdout, then stderr where tracebacks go)."""
    text = ""
    for part in (stdout, stderr):  # TimeoutExpired carries bytes even with text=True
        part = part.decode(errors="replace") if isinstance(part, bytes) else part or ""
        text += part if part.endswith("\n") or not part else part + "\n"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def parse_result(stdout: str, device: str) -> dict[str, Any]:
    """Read train.py's last stdout line: the JSON result of a healthy smoke run."""
    lines = stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
        losses = [float(result["loss_first"]), float(result["loss_last"])]
    except (IndexError, ValueError, TypeError, KeyError) as exc:
        raise ValueError("its last output line is not the smoke-test JSON result") from exc
    if not all(math.isfinite(loss) for loss in losses):
        raise ValueError(f"its losses are not finite: {losses}")
    if str(result.get("device", "")).split(":")[0] != device:
        raise ValueError(f"it ran on {result.get('device')!r} instead of {device!r}")
    return result


def run_backend(project: Path, device: str, settings: Settings) -> Outcome:
    """Run train.py's smoke test on one backend and judge its exit status and result line."""
    command = [settings.python, "train.py", "--smoke-test", "--device", device]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            command, cwd=project, capture_output=True, text=True, timeout=settings.timeout,
            env=smoke_env(), stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        why = f"timed out after {settings.timeout:g} s"
        return Outcome(device, "FAILED", why, tail(exc.stdout, exc.stderr))
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        why = f"exit status {proc.returncode} after {seconds:.1f} s"
        return Outcome(device, "FAILED", why, tail(proc.stdout, proc.stderr))
    try:
        result = parse_result(proc.stdout, device)
    except ValueError as exc:
        return Outcome(device, "FAILED", str(exc), tail(proc.stdout, proc.stderr))
    loss = f"loss {result['loss_first']:.4g} -> {result['loss_last']:.4g}"
    return Outcome(device, "ok", f"{loss}  {seconds:.1f} s")


def format_line(outcome: Outcome) -> str:
    """One aligned report line, e.g. 'cpu   ok           loss 2.31 -> 2.27  4.1 s'."""
    return f"{outcome.device:<5} {outcome.status:<12} {outcome.detail}".rstrip()


def snapshot(project: Path) -> set[Path]:
    """Every path in the project, so that whatever the smoke run adds can be removed."""
    found = set()
    for root, dirs, files in os.walk(project):
        found.update(Path(root, name) for name in (*dirs, *files))
    return found


def clean_up(project: Path, keep: set[Path]) -> None:
    """Remove everything not in `keep` (runs/, checkpoints) and every cache folder."""
    for root, dirs, files in os.walk(project):
        for name in (*dirs, *files):
            path = Path(root, name)
            if path in keep and name not in CACHE_NAMES:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        dirs[:] = [d for d in dirs if Path(root, d).is_dir()]  # skip what was just removed


def later_hint(project: Path) -> str:
    """The commands that run the smoke step by hand."""
    return f"cd {project.name} && pip install -e . && python train.py --smoke-test"


def smoke(project: Path, settings: Settings) -> int:
    """Run the smoke step on every usable backend; print one line each; 0 when all pass."""
    print(f"Smoke test (python: {settings.python})", flush=True)
    version, backends = discover(settings)
    if version is None:
        if "missing" in backends:
            why = f"{settings.python} lacks the project's dependencies {backends['missing']}"
        else:
            why = f"torch is not importable by {settings.python} ({backends['torch']})"
        if settings.mode == "required":
            print(f"ERROR: smoke_test=required but {why}; install it and run: "
                  f"{later_hint(project)}", file=sys.stderr)  # fmt: skip
            return 1
        print(f"Skipped: {why}. To smoke-test later, run:\n    {later_hint(project)}")
        return 0
    failed = []
    for device in settings.devices or BACKENDS:
        reason = backends.get(device, "unknown")
        if reason is None:
            outcome = run_backend(project, device, settings)
        else:
            outcome = Outcome(device, "unavailable", f"({reason})")
            if device in settings.devices and settings.mode == "required":
                outcome = Outcome(device, "FAILED", f"asked for by SMOKE_DEVICES but {reason}")
        print(format_line(outcome), flush=True)
        if outcome.status == "FAILED":
            failed.append(device)
            for line in outcome.tail.splitlines():  # the output that explains the failure
                print(f"    | {line}", flush=True)
    if failed:
        print(f"ERROR: the smoke step failed on {', '.join(failed)}; {KEEP_HINT}.", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    """Trim the project, then run the smoke step unless it is off."""
    # tojson writes ' < > & as \u escapes, so no answer can close this '''-quoted raw literal.
    answers = json.loads(r'''{{ cookiecutter | tojson }}''')  # fmt: skip
    project = Path.cwd()
    remove_excluded(project, answers)
    apply_overlays(project, answers)
    before = snapshot(project)
    try:
        write_ci_matrix(project, answers)
        settings = read_settings(answers, os.environ)
        code = 0 if settings.mode == "off" else smoke(project, settings)
        if code == 0:
            print(next_steps(project, answers), end="")
        return code
    except SmokeError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        clean_up(project, before)  # whatever happened, leave only the generated files


if __name__ == "__main__":
    sys.exit(main())
