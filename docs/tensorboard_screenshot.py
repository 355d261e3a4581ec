"""Screenshot TensorBoard after a real run of a baked project: docs/tensorboard-*.png.

Bakes the template in a temporary folder, trains the baked project twice for a few minutes on
the CPU (two learning rates, so the HParams table has two rows), serves the runs with
TensorBoard on localhost and photographs its Time Series and HParams dashboards with headless
Chromium. A documentation tool, not a test; it needs the template's test extra and Chromium:

    pip install -e ".[test]" && python docs/tensorboard_screenshot.py
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
TRAIN = ["--epochs", "3", "--synthetic-size", "2000", "--log-every", "3", "--log-graph"]
RUNS = {"lr0.003": ["--lr", "0.003"], "lr0.01": ["--lr", "0.01"]}  # run name: its own flags
# TensorBoard's own viewer settings (its localStorage): no settings pane, raw curves, no clipping.
SETTINGS = {"timeSeriesSettingsPaneOpened": False, "scalarSmoothing": 0, "ignoreOutliers": False}
# png name: (page, window width x height); forceSVG draws charts without WebGL (headless has none).
SHOTS = {
    "tensorboard-scalars.png": ("?forceSVG=true&tagFilter=%5E(train%7Cperf%7Cval)%2F#timeseries",
                                "1400,1450"),
    "tensorboard-hparams.png": ("#hparams", "2050,330"),
}  # fmt: skip
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


def run(cmd: list[str], cwd: Path) -> None:
    """Run `cmd`, showing only the last lines of its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        sys.exit(f"ERROR: {' '.join(cmd)} failed:\n" + "\n".join(proc.stdout.splitlines()[-20:]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_settings(chromium: str, profile: Path, port: int) -> None:
    """Store SETTINGS in the browser profile's localStorage for http://127.0.0.1:<port>.

    localStorage belongs to the origin, so a throwaway page served on the port TensorBoard
    will use (before it starts) writes what TensorBoard reads on load.
    """
    page = f"<script>localStorage.setItem('_tb_global_settings', '{json.dumps(SETTINGS)}')</script>"

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(page.encode())

        def log_message(self, *args: object) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", port), Page) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        run([chromium, *CHROMIUM, f"--user-data-dir={profile}", "--dump-dom",
             f"http://127.0.0.1:{port}/"], cwd=profile)  # fmt: skip
        server.shutdown()


def wait_for_runs(port: int, timeout: float = 120) -> None:
    """Wait until TensorBoard answers and lists every run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as r:
                if set(RUNS) <= set(json.load(r)):
                    time.sleep(5)  # let it finish reading the event files
                    return
        except OSError:
            pass
        time.sleep(1)
    sys.exit(f"ERROR: TensorBoard on port {port} did not list the runs in {timeout:.0f} s")


def main() -> int:
    """Bake, train, serve, photograph; the PNGs go to docs/."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("ERROR: Chromium not found on PATH (apt install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        run([sys.executable, "-m", "cookiecutter", str(REPO), "--no-input", "smoke_test=off",
             "-o", str(folder)], cwd=folder)  # fmt: skip
        project = folder / "image-classifier"
        for name, flags in RUNS.items():
            print(f"training: python train.py {' '.join(TRAIN + flags)} --run-name {name}")
            run([sys.executable, "train.py", *TRAIN, *flags, "--run-name", name], cwd=project)
        port, profile = free_port(), folder / "chromium-profile"
        profile.mkdir()
        seed_settings(chromium, profile, port)
        tensorboard = subprocess.Popen(
            [sys.executable, "-m", "tensorboard.main", "--logdir", "runs", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )  # fmt: skip
        try:
            wait_for_runs(port)
            for png, (page, size) in SHOTS.items():
                run([chromium, *CHROMIUM, f"--user-data-dir={profile}",
                     "--virtual-time-budget=20000", f"--window-size={size}",
                     f"--screenshot={DOCS / png}", f"http://127.0.0.1:{port}/{page}"],
                    cwd=folder)  # fmt: skip
                Image.open(DOCS / png).save(DOCS / png, optimize=True)
                print(f"wrote docs/{png} ({(DOCS / png).stat().st_size // 1024} KB)")
        finally:
            tensorboard.terminate()
            tensorboard.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
