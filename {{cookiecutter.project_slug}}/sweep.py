"""Search train.py's flags with Optuna: each trial is a train.py run of its own.

    python sweep.py --study lr-bs --trials 20 --param lr=loguniform:1e-4:1e-1 \\
        --param batch_size=choice:32,64,128 --epochs 10      # any other flag goes to train.py
    python sweep.py --study lr-bs --trials 20 ...            # the same again: continues the study
    tensorboard --logdir sweeps/lr-bs/runs                   # every trial in the HParams tab

A parameter is NAME=uniform:LOW:HIGH, loguniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,C
(NAME is a train.py flag, e.g. lr or batch-size); --space FILE.yaml holds NAME: SPEC lines.
The study is kept in sweeps/<study>/study.db (SQLite), or in any Optuna storage (--storage,
e.g. a PostgreSQL server that several machines share); the trials' run folders go to
sweeps/<study>/runs/trial-NNNN. It optimizes the task's metric (task.BEST_METRIC) in its
direction; Optuna's median pruner stops a trial whose epochs fall behind (--no-pruning: never).
"""

import argparse
import contextlib
import importlib.util
import os
import shlex
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch

import {{ cookiecutter.package_name }}.engine as engine
from {{ cookiecutter.package_name }}.engine import cli
from {{ cookiecutter.package_name }}.engine.config import load_mapping
from {{ cookiecutter.package_name }}.task import task

# Why a failed trial failed, in the table: the sweep records it, except for this one.
ABANDONED = "left running by a stopped sweep"
KINDS = ("uniform", "loguniform", "int", "choice")
# The flags sweep.py sets for each trial, or that would make a trial something else than a run.
SET_BY_SWEEP = ("--out-dir", "--run-name", "--resume", "--smoke-test")
# Flags no --param may search: the ones above, and the files a trial reads (a trial that
# resumed another run's checkpoint would write into that run's folder).
NOT_SEARCHABLE = frozenset({"out_dir", "run_name", "resume", "smoke_test", "config"})
JOB_MEMORY = 2**30  # a trial's torch process on the CPU side: about 0.7 GB, and some room
TRAIN_SCRIPT = Path(__file__).with_name("train.py")


def build_parser() -> argparse.ArgumentParser:
    """The sweep's own flags; every other flag is train.py's, given to each trial."""
    epilog = "Every other flag is train.py's (python train.py --help), given to each trial."
    parser = cli.ArgumentParser(description=__doc__.splitlines()[0], epilog=epilog)
    add = parser.add_argument
    add("--study", type=cli.folder_name, required=True, help="the study's name (and folder)")
    add("--trials", type=cli.positive_int, required=True,
        help="finished trials wanted (complete or pruned), counting earlier runs'")  # fmt: skip
    add("--param", action="append", default=[], metavar="NAME=SPEC",
        help="a flag to search, e.g. lr=loguniform:1e-4:1e-1 or batch_size=choice:32,64")  # fmt: skip
    add("--space", type=Path, help="YAML/TOML file of NAME: SPEC entries (beside --param)")
    add("--storage", help="an Optuna storage URL (default: sqlite:///sweeps/<study>/study.db)")
    add("--jobs", type=jobs, default=1, help="trials at once (one per GPU)")
    add("--no-pruning", action="store_true", help="run every trial to its end")
    add("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --jobs' processes
    return parser


def jobs(text: str) -> int:
    """--jobs: 1 to as many sweep processes as this machine's cores and memory hold at once."""
    cores = os.cpu_count() or 1
    memory = total_memory()
    limit = min(cores, max(1, memory // JOB_MEMORY)) if memory else cores
    held = f"its {cores} cores" + (f" and {memory / 2**30:.0f} GiB of memory" if memory else "")
    value = cli.positive_int(text)
    if value > limit:
        raise argparse.ArgumentTypeError(
            f"{text} is out of range; expected 1 to {limit}: each job is a torch process of "
            f"about 1 GiB, and this machine has {held}"
        )
    return value


def total_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not tell)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name
        return None


def load_train_script():
    """train.py as a module (its parser and its train()); the trials run in this process."""
    spec = importlib.util.spec_from_file_location("train_script", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_optuna():
    """The optuna module, or one sentence naming the extra that brings it."""
    try:
        import optuna
    except ImportError:
        raise engine.UserError(
            'sweep.py needs the optuna package, which is not installed; pip install -e ".[sweep]"'
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep prints its own lines
    return optuna


# ------------------------------------------------------------------- Search space
def parse_space(
    specs: dict[str, str], parser: argparse.ArgumentParser
) -> dict[str, tuple[str, str, list]]:
    """NAME -> SPEC text as (flag, kind, values), each value checked as train.py's flag takes it."""
    flags = {action.dest: action for action in parser._actions if action.option_strings}
    space = {}
    for name, spec in specs.items():
        name = str(name)  # a --space file's key may be read as a number
        dest = name.replace("-", "_")
        if dest in NOT_SEARCHABLE:
            flag = "--" + name.replace("_", "-")
            raise engine.UserError(
                f"--param {name}: a sweep cannot search {flag} (each trial is a new run in a "
                f"folder of its own that the sweep picks); drop --param {name}"
            )
        action = flags.get(dest)
        if action is None or action.nargs == 0 or action.default is argparse.SUPPRESS:
            raise engine.UserError(
                f"--param {name}: train.py has no flag --{name.replace('_', '-')} that takes a "
                "value; name one of train.py --help's flags (e.g. lr=loguniform:1e-4:1e-1)"
            )
        kind, _, rest = str(spec).partition(":")
        values = rest.split("," if kind == "choice" else ":")
        if kind not in KINDS or (kind != "choice" and len(values) != 2) or "" in values:
            raise engine.UserError(
                f"--param {name}={spec} is not a search spec; write uniform:LOW:HIGH, "
                "loguniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,C"
            )
        flag = action.option_strings[0]
        try:
            for value in values:
                cli.parse_stored_value(action, value)
            if kind != "choice":
                values = bounds(kind, values)
                if kind != "int":  # a value between the bounds, as a float: refused by an int flag
                    cli.parse_stored_value(action, str(sum(values) / 2))
        except argparse.ArgumentTypeError as error:
            raise engine.UserError(
                f"--param {name}={spec}: {flag} refuses it ({error}); give values {flag} takes"
            ) from None
        except ValueError as error:
            raise engine.UserError(f"--param {name}={spec}: {error}") from None
        space[name] = (flag, kind, values)
    return space


def bounds(kind: str, values: list[str]) -> list:
    """LOW, HIGH as numbers of their kind; a ValueError says what is wrong with them."""
    try:
        low, high = (int(value) if kind == "int" else float(value) for value in values)
    except ValueError:
        whole = "whole " if kind == "int" else ""
        raise ValueError(f"{kind}:LOW:HIGH takes two {whole}numbers") from None
    if not low < high:
        raise ValueError("LOW must be below HIGH")
    if kind == "loguniform" and low <= 0:
        raise ValueError("loguniform:LOW:HIGH needs LOW above 0 (a log scale)")
    return [low, high]


def distributions(space: dict[str, tuple[str, str, list]], optuna) -> dict:
    """The search space as Optuna's distributions, by parameter name."""
    made = {}
    for name, (_, kind, values) in space.items():
        if kind == "choice":
            made[name] = optuna.distributions.CategoricalDistribution(values)
        elif kind == "int":
            made[name] = optuna.distributions.IntDistribution(*values)
        else:
            made[name] = optuna.distributions.FloatDistribution(*values, log=kind == "loguniform")
    return made


def trial_flags(trial, space: dict[str, tuple[str, str, list]]) -> list[str]:
    """The trial's train.py flags for the search space, each value drawn by Optuna."""
    flags = []
    for name, (flag, _, _) in space.items():
        flags += [flag, str(trial.params[name])]
    return flags


def require_same_kinds(study, search: dict, optuna) -> None:
    """Refuse a parameter searched otherwise than in the study's earlier trials (a choice that
    was a range, other choices): Optuna keeps each parameter's kind for a whole study."""
    for trial in study.get_trials(deepcopy=False):
        for name, before in trial.distributions.items():
            if name not in search:
                continue
            try:
                optuna.distributions.check_distribution_compatibility(before, search[name])
            except ValueError:
                raise engine.UserError(
                    f"--param {name} searches another kind of values than the earlier trials "
                    f"of study {study.study_name} ({before}); search it as they did, or name a "
                    "new --study"
                ) from None


# ------------------------------------------------------------------------- Trials
def owner() -> str:
    """Who runs a trial: this machine and process (kept in the trial, for a later sweep)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def process_start(pid: int) -> str | None:
    """When process `pid` started, as the machine's boot id and the process's start tick
    (Linux), so that a pid handed out again after a reboot is told apart; None elsewhere."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{boot}/{stat.rpartition(')')[2].split()[19]}"  # field 22: start time since boot


def is_abandoned(trial) -> bool:
    """A RUNNING trial whose process is gone: a killed sweep's, on this machine (another
    machine's trials are that machine's business: its next sweep fails them). A live process
    of that pid is another one when it started at another time (after a reboot)."""
    host, _, pid = trial.user_attrs.get("owner", "").rpartition(":")
    if host != socket.gethostname():
        return not host  # no owner: not a sweep.py trial at all
    try:
        os.kill(int(pid), 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        pass
    started = trial.user_attrs.get("owner_started")
    return started is not None and process_start(int(pid)) != started


def fail_abandoned(study, optuna) -> None:
    """Tell FAIL each RUNNING trial a killed sweep left: its budget goes to a new trial."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if is_abandoned(trial):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            print(f"trial {trial.number}: {ABANDONED}, marked failed")


def run_trial(trial, flags: list[str], train_script, optuna) -> int:
    """Train one trial's run and tell Optuna how it ended; the stop signal's exit code or 0."""
    states = optuna.trial.TrialState
    pruned = []

    def keep_going(epoch: int, value: float) -> bool:
        trial.report(value, epoch)
        if trial.should_prune():  # never under --no-pruning (Optuna's NopPruner)
            pruned.append(epoch)
        return not pruned

    try:
        train_args = train_script.parse_args(flags)
        train_script.seed_everything(train_args.seed, train_args.deterministic)
        result = train_script.train(train_args, keep_going)
    except engine.UserError as error:  # diverged, or a flag value this data cannot take
        study_tell(trial, states.FAIL, reason=cli.user_message(error))
        print(f"trial {trial.number} failed: {cli.user_message(error)}", file=sys.stderr)
        return 0
    except BaseException as error:
        study_tell(trial, states.FAIL, reason=f"stopped by {type(error).__name__}")
        raise
    if result.stopped_by is not None:  # Ctrl-C: the trial's run is saved, the sweep ends
        study_tell(trial, states.FAIL, reason=f"stopped by {result.stopped_by.name}")
        return result.stopped_by.exit_code
    if pruned:
        study_tell(trial, states.PRUNED)
    elif result.best_metric is None:
        study_tell(trial, states.FAIL, reason="its run ended before any validation")
    else:
        study_tell(trial, states.COMPLETE, result.best_metric)
    return 0


def study_tell(trial, state, value: float | None = None, reason: str | None = None) -> None:
    """Tell the trial's end to its study; a failed one keeps its `reason` for the table."""
    if reason is not None:
        trial.set_user_attr("failed", reason)
    trial.study.tell(trial, value, state=state)


def run_trials(study, space, base_flags, sweep_dir: Path, train_script, args, optuna) -> int:
    """Ask, train and tell until --trials trials are finished (or running in another process)."""
    states = optuna.trial.TrialState
    counted = (states.COMPLETE, states.PRUNED, states.RUNNING)
    for _ in range(args.trials):  # failed trials count here, so a broken flag cannot loop
        if len(study.get_trials(deepcopy=False, states=counted)) >= args.trials:
            return 0
        trial = study.ask(distributions(space, optuna))
        trial.set_user_attr("owner", owner())
        trial.set_user_attr("owner_started", process_start(os.getpid()))
        try:
            run_name = f"trial-{trial.number:04d}"
            run_flags = ["--out-dir", str(sweep_dir / "runs"), "--run-name", run_name]
            flags = [*base_flags, *trial_flags(trial, space)]
            trial.set_user_attr("flags", flags)
            trial.set_user_attr("run_dir", str(sweep_dir / "runs" / run_name))
        except BaseException:
            study_tell(trial, states.FAIL)
            raise
        print(f"trial {trial.number}: {shlex.join(flags)}", flush=True)
        code = run_trial(trial, [*flags, *run_flags], train_script, optuna)
        if code:
            return code
    return 0


# --------------------------------------------------------------------------- Study
def make_sweep_dir(study: str) -> Path:
    """sweeps/<study>/, where the trials' run folders go (and the study by default)."""
    sweep_dir = Path("sweeps") / study
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise engine.UserError(
            f"cannot create {sweep_dir} ({error.strerror}); run sweep.py in a writable folder"
        ) from None
    return sweep_dir


def open_study(storage: str, args: argparse.Namespace, sweep_dir: Path, space: dict, optuna):
    """The study (new, or an earlier sweep's to continue), checked against this sweep's space
    and folder; the first sweep process also fails the trials a killed sweep left running."""
    direction = "maximize" if task.HIGHER_IS_BETTER else "minimize"
    pruner = optuna.pruners.NopPruner() if args.no_pruning else optuna.pruners.MedianPruner()
    study = optuna.create_study(storage=storage, study_name=args.study, direction=direction,
                                pruner=pruner, load_if_exists=True)  # fmt: skip
    require_same_kinds(study, distributions(space, optuna), optuna)
    if not args.worker:
        require_recorded_trial_folders(study, storage, sweep_dir / "runs")
        fail_abandoned(study, optuna)
    return study


def require_recorded_trial_folders(study, storage: str, runs: Path) -> None:
    """Refuse a storage that does not record the trials whose run folders are here (an
    emptied or replaced study.db): its new trial 0 would collide with the old one's folder."""
    recorded = {f"trial-{trial.number:04d}" for trial in study.get_trials(deepcopy=False)}
    unknown = sorted(path.name for path in runs.glob("trial-*") if path.name not in recorded)
    if unknown:
        raise engine.UserError(
            f"{runs} holds {unknown[0]}, a trial that the study's storage {storage} does not "
            f"record (emptied or replaced?); give --storage the database of those trials, or "
            f"move {runs.parent} aside to start the study anew"
        )


@contextlib.contextmanager
def storage_errors(storage: str, optuna):
    """The study's database errors as one sentence (a damaged or read-only file, a URL of no
    database); they come at any read or write of the study, not only when it is opened."""
    from sqlalchemy import exc  # Optuna's own database layer

    try:
        yield
    except (exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as error:
        cause = error.__cause__ if isinstance(error.__cause__, exc.SQLAlchemyError) else error
        if isinstance(cause, exc.NoSuchModuleError):
            problem = "names a database that no installed driver serves"
            fix = "give a sqlite:///PATH URL, or install that database's driver"
        elif isinstance(cause, exc.ArgumentError):
            problem = "is not a database URL"
            fix = "give one such as sqlite:///study.db or postgresql://user@host/name"
        elif isinstance(cause, exc.OperationalError):
            problem = f"cannot be opened or written ({cause.orig})"
            fix = "give --storage a database this process can write"
        elif isinstance(cause, exc.DatabaseError):
            problem = f"is not a readable study database ({cause.orig})"
            fix = "give --storage the one holding this study, or start anew with another --study"
        else:
            raise
        raise engine.UserError(f"the study's storage {storage} {problem}; {fix}") from None


# -------------------------------------------------------------------------- --jobs
def start_workers(argv: list[str], jobs: int) -> list[subprocess.Popen]:
    """jobs - 1 more sweep processes on the same study: a GPU each (round robin over the
    GPUs), or a share of the CPU's threads each (this process keeps one share)."""
    if jobs == 1:
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")  # the GPUs this sweep may use
    gpus = (
        visible.split(",")
        if visible
        else [str(index) for index in range(torch.cuda.device_count())]
    )
    threads = max(1, (os.cpu_count() or 1) // jobs)
    torch.set_num_threads(threads)
    workers = []
    for index in range(1, jobs):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if len(gpus) > 1:  # this process keeps the first GPU (cuda:0)
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        command = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker"]
        workers.append(subprocess.Popen(command, env=env))
    return workers


def wait_for(workers: list[subprocess.Popen]) -> int:
    """The workers' end; the first error code. A Ctrl-C in the terminal reaches every process of
    the sweep: each worker stops its trial as train.py stops, so this one waits for them."""
    codes = []
    for worker in workers:
        while worker.returncode is None:
            with contextlib.suppress(KeyboardInterrupt):
                worker.wait()
        codes.append(worker.returncode)
    return next((code for code in codes if code), 0)


# --------------------------------------------------------------------------- Report
def report(study, sweep_dir: Path, optuna) -> None:
    """A table of the trials, why the failed ones failed, then the best one's command line."""
    rows = [("trial", "state", task.BEST_METRIC, "run folder", "flags")]
    failed = []
    for trial in study.get_trials(deepcopy=False):
        value = "" if trial.value is None else f"{trial.value:.4g}"
        params = " ".join(f"{name}={value}" for name, value in trial.params.items())
        if trial.state == optuna.trial.TrialState.FAIL:
            failed.append(trial.user_attrs.get("failed", ABANDONED))
            params += f"  (failed: {failed[-1]})"
        rows.append((str(trial.number), trial.state.name, value,
                     trial.user_attrs.get("run_dir", ""), params))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for row in rows:
        cells = "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        print(f"{cells}  {row[4]}")
    if failed:
        reasons = "; ".join(f"{count} {reason}" for reason, count in Counter(failed).items())
        print(f"{len(failed)} trial(s) failed: {reasons}")
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        print(f"best: trial {best.number}, {task.BEST_METRIC} {best.value:.4g}")
        print(f"  python train.py {shlex.join(best.user_attrs.get('flags', []))}")
    print(f"compare the runs (HParams tab): tensorboard --logdir {sweep_dir / 'runs'}")


# ----------------------------------------------------------------------------- Main
def main(argv: list[str] | None = None) -> int:
    """Check every flag, open (or continue) the study, run the trials, show the table."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args, base_flags = build_parser().parse_known_args(argv)
    optuna = require_optuna()
    specs = dict(load_mapping(args.space)) if args.space else {}
    for param in args.param:
        name, equals, spec = param.partition("=")
        if not equals:
            raise engine.UserError(
                f"--param {param} has no '='; write NAME=SPEC, e.g. lr=uniform:0:1"
            )
        specs[name] = spec
    if not specs:
        raise engine.UserError("nothing to search; give --param NAME=SPEC (or --space FILE)")
    taken = [flag for flag in base_flags if flag.split("=")[0] in SET_BY_SWEEP]
    if taken:
        raise engine.UserError(
            f"sweep.py sets {taken[0].split('=')[0]} itself (each trial runs in "
            f"sweeps/{args.study}/runs/trial-NNNN); drop it"
        )
    train_script = load_train_script()
    train_parser = train_script.build_parser()
    space = parse_space(specs, train_parser)
    train_parser.prog = "train.py"  # its errors name train.py's flags and train.py --help
    engine.parse_args_with_config(train_parser, base_flags)  # a bad one stops before any trial
    sweep_dir = make_sweep_dir(args.study)
    storage = args.storage or f"sqlite:///{sweep_dir / 'study.db'}"
    with storage_errors(storage, optuna):
        study = open_study(storage, args, sweep_dir, space, optuna)
        workers = [] if args.worker else start_workers([*argv, "--jobs", "1"], args.jobs)
        code = run_trials(study, space, base_flags, sweep_dir, train_script, args, optuna)
        code = wait_for(workers) or code
        if not args.worker:
            report(study, sweep_dir, optuna)
    if code and not args.worker:  # its stopped trials are failed ones: new trials replace them
        print("sweep stopped; the same command again continues the study", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(engine.run_cli(main, prog="sweep.py"))
