"""Smoke-train the project on every backend this machine has; print one line per backend.

    python smoke_test.py                        # cpu, cuda, mps: each that torch can use
    python smoke_test.py --devices cpu,cuda --mode required --timeout 600 --python .venv/bin/python

Runs `python train.py --smoke-test --device <backend>` (two optimizer steps on tiny synthetic
data in a temporary folder) in its own process per backend, with a time limit, and judges its
exit status and its last output line (JSON). Exit status: 0 when every backend that ran passed
(or, in auto mode, when torch or a dependency is missing: it says how to install), 1 when a
backend failed (with --mode required, also an asked-for backend that is unavailable), 2 when it
could not run (a bad flag, a broken interpreter; with --mode required, torch or a dependency
missing). The generator runs this file once after it writes the project (its smoke_test
answer is the mode). It imports neither torch nor the package: any Python 3 can run it and say
what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent
BACKENDS = ("cpu", "cuda", "mps")
MODES = ("auto", "required")
DEFAULT_TIMEOUT = 300.0
TAIL_LINES = 20
BACKEND_FAILED = 1  # exit status: a backend failed its smoke run
CANNOT_RUN = 2  # exit status: bad flags, or (required) nothing to run it with

# Runs in the chosen interpreter: one start (importing torch costs seconds) finds every
# backend. A backend maps to null when usable, else to the reason it is not.
DISCOVER = r"""
import importlib.util
import json
import sys
try:
    import torch
except Exception as exc:
    print(json.dumps({"torch": None, "error": f"{type(exc).__name__}: {exc}"}))
    raise SystemExit(0)

# What train.py imports besides torch (the project's dependencies), looked up, not imported.
NEEDS = ("torchvision", "numpy", "PIL", "tqdm", "prefetch_generator", "torchinfo", "tensorboard",
         "yaml", *(("tomli",) if sys.version_info < (3, 11) else ()))
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
    """A problem that stops the smoke test before any backend runs; one sentence for the user."""


@dataclass(frozen=True)
class Settings:
    """How to run the smoke test."""

    mode: str  # auto or required
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser without abbreviations (`--device cpu` is no `--devices cpu`), whose error
    is one line that points to --help, not argparse's usage block."""

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def error(self, message: str):
        self.exit(CANNOT_RUN, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def device_list(text: str) -> tuple[str, ...]:
    """Read --devices: comma-separated backends, any case, blanks and repeats dropped."""
    devices = [d.strip().lower() for d in text.split(",")]
    devices = list(dict.fromkeys(d for d in devices if d))
    unknown = [d for d in devices if d not in BACKENDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend {unknown[0]!r}; use cpu, cuda, mps")
    return tuple(devices)


def seconds(text: str) -> float:
    """Read --timeout: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def parse_args(argv: list[str] | None = None) -> Settings:
    """The command line as Settings."""
    parser = ArgumentParser(
        prog="smoke_test.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the examples' lines
    )
    parser.add_argument(
        "--devices",
        type=device_list,
        default=(),
        help="comma-separated backends to run, e.g. cpu,cuda (default: every "
        "backend; those torch cannot use are reported as unavailable)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="auto",
        help="auto: a missing torch is reported and skipped; required: it fails, "
        "and so does an asked-for backend that is unavailable (default: auto)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        help="seconds each backend may take (default: %(default)g)",
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="the interpreter that trains (default: the one running this file)",
    )
    args = parser.parse_args(argv)
    # Resolve a bare command now: the subprocesses run in the project folder, not the caller's.
    python = shutil.which(args.python) or args.python
    return Settings(args.mode, args.devices, python, args.timeout)


def smoke_env() -> dict[str, str]:
    """Environment of the smoke subprocesses: no bytecode caches in the project."""
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def tail(stdout: str | bytes | None, stderr: str | bytes | None, lines: int = TAIL_LINES) -> str:
    """The last lines of a subprocess's output (stdout, then stderr where tracebacks go)."""
    text = ""
    for part in (stdout, stderr):  # TimeoutExpired carries bytes even with text=True
        part = part.decode(errors="replace") if isinstance(part, bytes) else part or ""
        text += part if part.endswith("\n") or not part else part + "\n"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def parse_discovery(stdout: str) -> tuple[str | None, dict[str, str | None]]:
    """Read DISCOVER's JSON line: (torch version or None, backend -> reason or None)."""
    report = json.loads(stdout.strip().splitlines()[-1])
    if report["torch"] is None and "missing" in report:  # torch is there, but not all else
        return None, {"missing": report["missing"]}
    if report["torch"] is None:
        return None, {"torch": report["error"]}
    return report["torch"], report["devices"]


def discover(settings: Settings) -> tuple[str | None, dict[str, str | None]]:
    """Ask the interpreter, in one subprocess, which backends it can use."""
    try:
        proc = subprocess.run(
            [settings.python, "-c", DISCOVER],
            capture_output=True,
            text=True,
            timeout=settings.timeout,
            env=smoke_env(),
            stdin=subprocess.DEVNULL,
        )
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
            command,
            cwd=project,
            capture_output=True,
            text=True,
            timeout=settings.timeout,
            env=smoke_env(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        why = f"timed out after {settings.timeout:g} s"
        return Outcome(device, "FAILED", why, tail(exc.stdout, exc.stderr))
    took = time.perf_counter() - start
    if proc.returncode != 0:
        why = f"exit status {proc.returncode} after {took:.1f} s"
        return Outcome(device, "FAILED", why, tail(proc.stdout, proc.stderr))
    try:
        result = parse_result(proc.stdout, device)
    except ValueError as exc:
        return Outcome(device, "FAILED", str(exc), tail(proc.stdout, proc.stderr))
    loss = f"loss {result['loss_first']:.4g} -> {result['loss_last']:.4g}"
    return Outcome(device, "ok", f"{loss}  {took:.1f} s")


def format_line(outcome: Outcome) -> str:
    """One aligned report line, e.g. 'cpu   ok           loss 2.31 -> 2.27  4.1 s'."""
    return f"{outcome.device:<5} {outcome.status:<12} {outcome.detail}".rstrip()


def later_hint(project: Path) -> str:
    """The commands that install the project and run its smoke test by hand."""
    return f"cd {project.name} && pip install -e . && python train.py --smoke-test"


def report_missing_torch(project: Path, settings: Settings, found: dict[str, str | None]) -> int:
    """Say that torch or a dependency is missing: a skip in auto mode, an error in required."""
    if "missing" in found:
        why = f"{settings.python} lacks the project's dependencies {found['missing']}"
    else:
        why = f"torch is not importable by {settings.python} ({found['torch']})"
    if settings.mode == "required":
        print(
            f"ERROR: smoke_test=required but {why}; install it and run: {later_hint(project)}",
            file=sys.stderr,
        )
        return CANNOT_RUN
    print(f"Skipped: {why}. To smoke-test later, run:\n    {later_hint(project)}")
    return 0


def smoke(project: Path, settings: Settings) -> int:
    """Run the smoke test on every usable backend; print one line each; 0 when all pass."""
    print(f"Smoke test (python: {settings.python})", flush=True)
    try:
        version, found = discover(settings)
    except SmokeError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return CANNOT_RUN
    if version is None:
        return report_missing_torch(project, settings, found)
    failed = []
    for device in settings.devices or BACKENDS:
        reason = found.get(device, "unknown")
        if reason is None:
            outcome = run_backend(project, device, settings)
        elif device in settings.devices and settings.mode == "required":
            outcome = Outcome(device, "FAILED", f"asked for but {reason}")
        else:
            outcome = Outcome(device, "unavailable", f"({reason})")
        print(format_line(outcome), flush=True)
        if outcome.status == "FAILED":
            failed.append(device)
            for line in outcome.tail.splitlines():  # the output that explains the failure
                print(f"    | {line}", flush=True)
    if failed:
        print(f"ERROR: the smoke test failed on {', '.join(failed)}.", file=sys.stderr)
        return BACKEND_FAILED
    return 0


def main(argv: list[str] | None = None) -> int:
    """Read the flags, then smoke-test this project."""
    return smoke(PROJECT, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
