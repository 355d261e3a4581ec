"""Experiment trackers behind one interface: train.py logs each value once to `Trackers`,
which hands it to every tracker of --tracker (TensorBoard, MLflow, W&B, a CSV file).

TensorBoard also gets what only it shows (images, graphs, HParams) through
`Trackers.tensorboard`. A resumed run continues each tracker's run (MLflow and W&B run ids are
kept in the checkpoint) from the checkpoint's step on. A tracker that fails, at the start (an
MLflow server that takes no connection within seconds) or mid-run (its server gone), is dropped
with one warning: the training goes on.
"""

import argparse
import contextlib
import csv
import importlib.util
import io
import logging
import os
import socket
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams
from tqdm import tqdm

from .checkpoint import TrainState
from .devices import is_main_process
from .files import first_line, write_text_atomic
from .resume import resumed_checkpoint
from .runs import save_text

TRACKERS = ("tensorboard", "mlflow", "wandb", "csv")
# The trackers that need an optional package: its import name and the project's extra.
NEEDS_EXTRA = {"mlflow": "mlflow", "wandb": "wandb"}
# MLflow's experiment and W&B's project, unless MLFLOW_EXPERIMENT_NAME / WANDB_PROJECT say.
PROJECT = __name__.split(".")[0]
# A tracking server takes a connection in far less; MLflow's own retries wait minutes.
CONNECT_SECONDS = 5


def tracker_names(text: str) -> str:
    """--tracker: a comma-separated list of TRACKERS whose packages are installed."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in TRACKERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown tracker {unknown[0] if unknown else repr(text)}; give a comma-separated "
            f"list of {', '.join(TRACKERS)} (e.g. --tracker tensorboard,mlflow)"
        )
    for name in names:
        if name in NEEDS_EXTRA and importlib.util.find_spec(NEEDS_EXTRA[name]) is None:
            raise argparse.ArgumentTypeError(
                f"--tracker {name} needs the {NEEDS_EXTRA[name]} package, which is not "
                f'installed; pip install -e ".[{name}]"'
            )
    return ",".join(dict.fromkeys(names))  # a string: saved in args.json and checked on resume


class CsvTracker:
    """<run>/metrics.csv, one row per logged value: step, tag, value, wall_time (seconds)."""

    run_id = None
    FIELDS = ("step", "tag", "value", "wall_time")
    # Bytes that are not UTF-8 (a damaged file) are read and set aside unchanged.
    ENCODING = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.path = run_dir / "metrics.csv"
        self.location = str(self.path)
        if resume_step is not None and self.path.exists():
            self.keep_rows_through(resume_step)
        is_new = not self.path.exists()
        self.stream = open(self.path, "a", **self.ENCODING)  # noqa: SIM115 (open until close())
        self.rows = csv.writer(self.stream)
        if is_new:
            self.rows.writerow(self.FIELDS)

    def keep_rows_through(self, step: int) -> None:
        """Drop the rows a stopped run logged after its checkpoint, so none comes twice; lines
        that are no such row (a damaged or cut file) go to metrics.bad-rows.csv."""
        with open(self.path, **self.ENCODING) as file:
            lines = file.readlines()
        if lines and lines[0].rstrip("\r\n") == ",".join(self.FIELDS):
            lines = lines[1:]
        rows = [self.parsed(line) for line in lines]
        self.set_aside(
            [line for line, row in zip(lines, rows, strict=True) if row is None and line.strip()]
        )
        kept = io.StringIO()
        kept_rows = [row for row in rows if row is not None and int(row[0]) <= step]
        csv.writer(kept).writerows([self.FIELDS, *kept_rows])
        write_text_atomic(self.path, kept.getvalue())

    @classmethod
    def parsed(cls, line: str) -> list[str] | None:
        """The fields of a row as this tracker writes it, or None for a line that is not one."""
        try:
            (row,) = csv.reader([line])
            step, tag, value, wall_time = row
            int(step), float(value), float(wall_time)
        except (csv.Error, ValueError):  # not CSV, not 4 fields, or not numbers where they go
            return None
        return row if tag.isprintable() and tag else None

    def set_aside(self, lines: list[str]) -> None:
        """Append lines that are no row to metrics.bad-rows.csv (kept as they were), in one
        line's notice."""
        if not lines:
            return
        aside = self.path.with_name("metrics.bad-rows.csv")
        with open(aside, "a", **self.ENCODING) as file:
            file.writelines(line if line.endswith(("\n", "\r")) else f"{line}\n" for line in lines)
        tqdm.write(
            f"warning: {len(lines)} line(s) of {self.path} are no step,tag,value,wall_time row; "
            f"they are set aside in {aside.name} beside it and the run logs on",
            file=sys.stderr,
        )

    def scalars(self, values: dict[str, float], step: int) -> None:
        now = round(time.time(), 3)
        self.rows.writerows([step, tag, value, now] for tag, value in values.items())
        self.stream.flush()  # readable while the run goes on, and nothing lost by a kill

    def params(self, params: dict) -> None:
        pass  # args.json beside it holds them

    def file(self, path: Path) -> None:
        pass  # the files are in the same run folder

    def close(self, failed: bool) -> None:
        self.stream.close()


class MlflowTracker:
    """An MLflow run, to MLFLOW_TRACKING_URI or else the SQLite file mlflow.db beside the run
    folders (runs/mlflow.db), its artifacts in runs/mlartifacts."""

    def __init__(self, run_dir: Path, run_id: str | None) -> None:
        from mlflow.tracking import MlflowClient

        uri = mlflow_uri(run_dir)
        self.location = without_password(uri)
        check_reachable(uri)
        self.client = MlflowClient(uri)
        with mlflow_errors_unlogged():
            self.run_id = self.open_run(run_dir, run_id)

    def open_run(self, run_dir: Path, run_id: str | None) -> str:
        """A new run's id, or `run_id` marked running again, its logged steps read."""
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:  # beside the database (MLflow's own default is ./mlruns in the working folder)
            uri_given = "MLFLOW_TRACKING_URI" in os.environ
            artifacts = None if uri_given else (run_dir.resolve().parent / "mlartifacts").as_uri()
            experiment_id = self.client.create_experiment(name, artifact_location=artifacts)
        self.logged_through: dict[str, int] = {}
        if run_id is None:
            run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        else:  # steps a crashed process logged after its checkpoint are in already
            self.client.update_run(run_id, status="RUNNING")
            for key in self.client.get_run(run_id).data.metrics:
                history = self.client.get_metric_history(run_id, key)
                self.logged_through[key] = max(metric.step for metric in history)
        return run_id

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(tag, value, now, step)
            for tag, value in values.items()
            if step > self.logged_through.get(tag, -1)
        ]
        with mlflow_errors_unlogged():
            self.client.log_batch(self.run_id, metrics=metrics)

    def params(self, params: dict) -> None:
        from mlflow.entities import Param

        entries = [Param(name, str(value)) for name, value in params.items()]
        with mlflow_errors_unlogged():
            for start in range(0, len(entries), 100):  # MLflow takes 100 params a call
                self.client.log_batch(self.run_id, params=entries[start : start + 100])

    def file(self, path: Path) -> None:
        with mlflow_errors_unlogged():
            self.client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool) -> None:
        with mlflow_errors_unlogged():
            self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")


def mlflow_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI, or else the SQLite file mlflow.db in --out-dir."""
    out_dir = run_dir.resolve().parent  # --out-dir, also when a resume names another
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out_dir / 'mlflow.db'}"


def without_password(uri: str) -> str:
    """`uri` with the password it may hold as ***: it is shown in the run's output."""
    url = urllib.parse.urlsplit(uri)
    if url.password is None:
        return uri
    return url._replace(netloc=url.netloc.replace(f":{url.password}@", ":***@", 1)).geturl()


def check_reachable(uri: str) -> None:
    """ConnectionError, at once, when an http(s) tracking server (or the proxy the requests go
    through) takes no connection within CONNECT_SECONDS: MLflow itself retries for minutes."""
    url = urllib.parse.urlsplit(uri)
    if url.scheme not in ("http", "https") or not url.hostname:
        return
    import requests  # MLflow's HTTP client: its proxy settings are the ones that apply

    proxy = requests.utils.select_proxy(uri, requests.utils.get_environ_proxies(uri))
    target = urllib.parse.urlsplit(proxy) if proxy else url
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((target.hostname, port), timeout=CONNECT_SECONDS).close()
    except OSError as error:  # refused, timed out, an unknown host name
        raise ConnectionError(f"cannot connect: {error.strerror or error}") from None


@contextlib.contextmanager
def mlflow_errors_unlogged() -> Iterator[None]:
    """MLflow logs a failed database call with its traceback (some 90 lines), then raises it:
    the raise is the tracker's one warning line, so the log is left out."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class WandbTracker:
    """A W&B run in <run>/wandb (offline too: WANDB_MODE=offline, then `wandb sync`)."""

    def __init__(self, run_dir: Path, run_id: str | None) -> None:
        import wandb

        project = os.environ.get("WANDB_PROJECT", PROJECT)
        resume = "allow" if run_id else None
        self.run = wandb.init(
            project=project, name=run_dir.name, dir=run_dir, id=run_id, resume=resume
        )
        self.run_id = self.run.id
        self.location = None  # W&B's own settings say where

    def scalars(self, values: dict[str, float], step: int) -> None:
        if step >= self.run.step:  # a resumed run's server has the steps before its own
            self.run.log(values, step=step)

    def params(self, params: dict) -> None:
        self.run.config.update(params, allow_val_change=True)

    def file(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, failed: bool) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class SilentWriter:
    """Stands in for SummaryWriter on ranks other than 0 under torchrun: takes every call
    (add_scalar, add_image, close, ...) and writes nothing, so the loop has one code path."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None

    def __enter__(self) -> "SilentWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def log_hparams(writer: SummaryWriter, args: dict, metric_tags: tuple[str, ...]) -> None:
    """Every flag as a hyper-parameter in TensorBoard's HParams tab, in this run's own folder.

    SummaryWriter.add_hparams would write to a new sub-folder, a second run in TensorBoard's
    eyes; writing the plugin's summaries here instead ties the flags to this run's scalars, so
    the dashboard shows the latest values of `metric_tags` beside each run's flags.
    """
    values = {
        name: value if isinstance(value, bool | int | float | str) else str(value)
        for name, value in args.items()
    }
    experiment, session_start, session_end = hparams(values, dict.fromkeys(metric_tags, 0.0))
    for summary in (experiment, session_start, session_end):
        writer.file_writer.add_summary(summary)


class Trackers:
    """The run's trackers, fanned out to: each value is logged once, here, and reaches all.

    Under torchrun only rank 0 tracks; the other ranks get one with no trackers at all.
    """

    def __init__(
        self,
        run_dir: Path,
        tensorboard: SummaryWriter | SilentWriter,
        others: dict,
        log_checkpoint: Path | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.tensorboard = tensorboard  # images, graphs and HParams go to it alone
        self.others = others  # name -> CsvTracker / MlflowTracker / WandbTracker
        self.run_ids = {name: tracker.run_id for name, tracker in others.items() if tracker.run_id}
        self.log_checkpoint = log_checkpoint  # --log-checkpoints: best.pt, sent at the end

    def add_scalars(self, values: dict[str, float], step: int) -> None:
        """Values of one step (tag -> number), to every tracker."""
        for tag, value in values.items():
            self.tensorboard.add_scalar(tag, value, step)
        self._each("scalars", values, step)

    def log_params(self, params: dict, metric_tags: tuple[str, ...]) -> None:
        """The flags: TensorBoard's HParams (beside `metric_tags`), the others' params and
        args.json."""
        if isinstance(self.tensorboard, SummaryWriter):  # not a SilentWriter
            log_hparams(self.tensorboard, params, metric_tags)
        self._each("params", params)
        self._each("file", self.run_dir / "args.json")

    def log_text(self, tag: str, text: str, file_name: str) -> None:
        """A text (the model summary): saved in the run folder as `file_name`, in
        TensorBoard's Text tab as `tag`, sent to the others as a file."""
        path = self.run_dir / file_name
        save_text(path, text + "\n")
        self.tensorboard.add_text(tag, f"```\n{text}\n```")
        self._each("file", path)

    def close(self, failed: bool = False) -> None:
        """Send best.pt if asked, mark each run finished (or failed), close the files."""
        if self.log_checkpoint is not None and self.log_checkpoint.exists() and not failed:
            self._each("file", self.log_checkpoint)
        self.tensorboard.close()
        self._each("close", failed)
        self.others = {}

    def _each(self, method: str, *arguments: object) -> None:
        # A tracker whose call fails (a server gone, a full disk) is dropped with one line.
        for name, tracker in list(self.others.items()):
            try:
                getattr(tracker, method)(*arguments)
            except Exception as error:
                del self.others[name]
                warn_failed(name, error, tracker.location)

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, exc_type: type | None, *exc_info: object) -> None:
        self.close(failed=exc_type is not None)


def open_trackers(
    args: argparse.Namespace, run_dir: Path, is_new_run: bool, state: TrainState
) -> Trackers:
    """The trackers of --tracker for this run: new ones, or a resumed run's, continued.

    A resumed run drops what was logged after its checkpoint (TensorBoard's purge_step, the
    CSV file's later rows) or skips steps already there (MLflow, W&B), so no step comes twice;
    a run that --resume auto starts again drops all that an earlier attempt logged.
    """
    if not is_main_process():
        return Trackers(run_dir, SilentWriter(), {})
    names = args.tracker.split(",")
    resume_step = None if is_new_run else state.global_step
    if is_new_run and getattr(args, "auto_start", False):
        resume_step = -1  # drop all an attempt killed before its first checkpoint logged
    saved = resumed_checkpoint(args).tracker_runs if not is_new_run else {}
    writer = SilentWriter()
    if "tensorboard" in names:
        purge = None if resume_step is None else resume_step + 1
        writer = SummaryWriter(run_dir, purge_step=purge)
    openers = {
        "csv": lambda: CsvTracker(run_dir, resume_step),
        "mlflow": lambda: MlflowTracker(run_dir, saved.get("mlflow")),
        "wandb": lambda: WandbTracker(run_dir, saved.get("wandb")),
    }
    locations = {"csv": run_dir / "metrics.csv", "mlflow": without_password(mlflow_uri(run_dir))}
    others = {}
    for name in names:
        if name in openers:
            try:  # an unreachable server at the start: the run goes on, as it would mid-way
                others[name] = openers[name]()
            except Exception as error:
                warn_failed(name, error, locations.get(name))
    best = run_dir / "checkpoints" / "best.pt" if args.log_checkpoints else None
    trackers = Trackers(run_dir, writer, others, best)
    # A run resumed without one of its trackers keeps that run's id for a later resume.
    trackers.run_ids = {**saved, **trackers.run_ids}
    return trackers


def warn_failed(name: str, error: Exception, location: object = None) -> None:
    """The one line a failing tracker gets before the run goes on without it: where it
    logs, and the first cause of the failure (the reason, under the library's wrappers)."""
    while error.__cause__ is not None:
        error = error.__cause__
    at = "" if location is None else f" at {location}"
    tqdm.write(
        f"warning: the {name} tracker{at} failed ({first_line(error)}); the run goes on without it",
        file=sys.stderr,
    )
