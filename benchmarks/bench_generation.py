"""Time generation and the smoke step; print one JSON line per measurement.

    python benchmarks/bench_generation.py [--repeats 5] [--smoke-repeats 3]

1. generation without the smoke step (`smoke_test=off`), through the CLI as a user runs it:
   median of --repeats bakes; target under 2 s.
2. per backend, the smoke step (`python train.py --smoke-test --device <backend>`) beside a
   bare `python -c "import torch, torchvision"`, interleaved in the same run so machine noise
   hits both alike; target: smoke <= import + 3 s (the import is a floor no smoke step beats).
3. one full `smoke_test=required` generation (discovery + every backend), for the total.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATION_TARGET_S = 2.0
SMOKE_OVERHEAD_TARGET_S = 3.0


def timed(command: list[str], **kwargs: object) -> float:
    """Run a command to completion (it must succeed) and return its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(command)}\n{proc.stdout}{proc.stderr}")
    return seconds


def bake(out: Path, env: dict[str, str], *answers: str) -> float:
    """Generate the default project into `out` with the cookiecutter CLI; return seconds."""
    command = [sys.executable, "-m", "cookiecutter", str(REPO), "--no-input", "-o", str(out)]
    return timed([*command, *answers], env=env)


def summary(samples: list[float]) -> dict[str, float]:
    """Median, min and max of a list of timings, rounded for reading."""
    return {
        "median_s": round(statistics.median(samples), 3),
        "min_s": round(min(samples), 3),
        "max_s": round(max(samples), 3),
    }


def emit(record: dict[str, object]) -> None:
    """Print one JSON line."""
    print(json.dumps(record), flush=True)


def backends(python: str) -> dict[str, str | None]:
    """The project smoke test's own device discovery: backend -> None if usable, else why not."""
    script = REPO / "{{cookiecutter.project_slug}}" / "smoke_test.py"
    spec = importlib.util.spec_from_file_location("smoke_script", script)
    assert spec and spec.loader
    smoke = importlib.util.module_from_spec(spec)
    sys.modules["smoke_script"] = smoke  # its dataclasses look their module up there
    spec.loader.exec_module(smoke)
    version, found = smoke.discover(smoke.Settings("auto", (), python, 600.0))
    if version is None:
        sys.exit(f"torch is not importable by {python}: {found['torch']}")
    return found


def main() -> None:
    """Run the three measurements against the repository this file sits in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="bakes for the generation time")
    parser.add_argument("--smoke-repeats", type=int, default=3, help="smoke/import pairs")
    parser.add_argument("--python", default=sys.executable, help="interpreter with torch")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "config.yaml"  # keep cookiecutter's replay files out of $HOME
        config.write_text(f"cookiecutters_dir: {root}\nreplay_dir: {root}\n")
        env = {**os.environ, "COOKIECUTTER_CONFIG": str(config), "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("SMOKE_TEST", None)

        runs = [bake(root / f"off{i}", env, "smoke_test=off") for i in range(args.repeats)]
        stats = summary(runs)
        emit({
            "bench": "generation", "smoke_test": "off", "repeats": args.repeats, **stats,
            "target_s": GENERATION_TARGET_S, "ok": stats["median_s"] < GENERATION_TARGET_S,
        })  # fmt: skip

        project = root / "off0" / "image-classifier"
        bare = [args.python, "-c", "import torch, torchvision"]
        found = backends(args.python)
        for device in [name for name, reason in found.items() if reason is None]:
            smoke = [args.python, "train.py", "--smoke-test", "--device", device]
            smoke_s, import_s = [], []
            for _ in range(args.smoke_repeats):  # interleaved: both see the same machine state
                smoke_s.append(timed(smoke, cwd=project, env=env))
                import_s.append(timed(bare, cwd=project, env=env))
            smoke_m, import_m = statistics.median(smoke_s), statistics.median(import_s)
            emit({
                "bench": "smoke_step", "device": device, "repeats": args.smoke_repeats,
                "smoke_median_s": round(smoke_m, 3), "import_median_s": round(import_m, 3),
                "difference_s": round(smoke_m - import_m, 3), "ratio": round(smoke_m / import_m, 2),
                "target_difference_s": SMOKE_OVERHEAD_TARGET_S,
                "ok": smoke_m - import_m <= SMOKE_OVERHEAD_TARGET_S,
            })  # fmt: skip
        skipped = {name: reason for name, reason in found.items() if reason is not None}

        env["SMOKE_PYTHON"] = args.python
        total = bake(root / "full", env, "smoke_test=required")
        emit({
            "bench": "generation", "smoke_test": "required", "seconds": round(total, 3),
            "backends": [name for name, reason in found.items() if reason is None],
            "unavailable": skipped,
        })  # fmt: skip


if __name__ == "__main__":
    main()
