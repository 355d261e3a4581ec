"""Render the terminal output of a generation with its smoke step to docs/generation.svg.

Runs, in a temporary folder, exactly the command the picture shows (the template reached
through a link named like a clone of this repository), with the smoke step required, and
renders what it printed with rich. A documentation tool, not a test:

    pip install rich && python docs/terminal_capture.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "generation.svg"
TEMPLATE = "cookiecutter-pytorch-training"
ARGS = ["--no-input", "smoke_test=required"]


def generate(folder: Path) -> tuple[str, int, float]:
    """Run the generation in `folder`; return its output, exit status and wall time."""
    (folder / TEMPLATE).symlink_to(REPO, target_is_directory=True)
    config = folder / "cookiecutter.yaml"  # replay files stay in the temporary folder
    config.write_text(f"cookiecutters_dir: {folder}\nreplay_dir: {folder}\n")
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}
    for name in ("SMOKE_TEST", "SMOKE_DEVICES", "SMOKE_PYTHON", "SMOKE_TIMEOUT"):
        env.pop(name, None)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cookiecutter", TEMPLATE, *ARGS], cwd=folder, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900,
    )  # fmt: skip
    return proc.stdout, proc.returncode, time.perf_counter() - start


def main() -> int:
    """Generate, then write the SVG (and refuse to when the generation failed)."""
    with tempfile.TemporaryDirectory() as tmp:
        output, status, seconds = generate(Path(tmp))
        listing = sorted(p.name for p in (Path(tmp) / "image-classifier").iterdir())
    # The interpreter's own path says nothing to a reader; show the usual venv name instead.
    output = output.replace(sys.prefix, ".venv")
    if status != 0:
        print(output, file=sys.stderr)
        print(f"ERROR: the generation failed (exit status {status}); no picture written.")
        return 1
    console = Console(record=True, width=96, force_terminal=True, color_system="truecolor")
    console.print(Text(f"$ cookiecutter {TEMPLATE} {' '.join(ARGS)}", style="bold green"))
    for line in output.rstrip("\n").splitlines():
        style = "green" if " ok " in line else "yellow" if "unavailable" in line else ""
        console.print(Text(line, style=style))
    console.print(Text(f"# done in {seconds:.1f} s; image-classifier/ holds:", style="dim"))
    for names in ([n for n in listing if n.startswith(".")], [n for n in listing if n[0] != "."]):
        console.print(Text("  " + "  ".join(names), style="dim"))
    console.print()  # the frame clips the last row's underscores: keep it empty
    svg = console.export_svg(title="cookiecutter: generation with its smoke step")
    OUT.write_text(svg)
    print(f"wrote {OUT.relative_to(REPO)} ({seconds:.1f} s generation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
