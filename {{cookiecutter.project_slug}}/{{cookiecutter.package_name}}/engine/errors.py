"""How a script ends: a user's error as one sentence instead of a traceback, and no worker left."""

import multiprocessing
import signal
import sys
from collections.abc import Callable, Sequence

from ..errors import DivergedError, UserError

__all__ = ["DivergedError", "UserError", "run_cli", "stop_worker_processes", "user_message"]

# How long a killed worker process may take to be reaped before the script exits anyway.
WORKER_REAP_SECONDS = 5.0


def run_cli(main: Callable[[Sequence[str] | None], int | None], prog: str) -> int:
    """Run `main`, turning a UserError into `prog: error: <message>` and exit code 2 (as argparse).

    With --debug on the command line the full traceback is shown instead.
    """
    try:
        return main(None) or 0
    except UserError as error:
        if "--debug" in sys.argv[1:]:
            raise
        print(f"{prog}: error: {user_message(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: the user asked to stop at once
        print(f"{prog}: stopped at once by Ctrl-C; nothing more was saved", file=sys.stderr)
        return 130
    finally:
        stop_worker_processes()


def stop_worker_processes() -> None:
    """Kill the DataLoader worker processes still alive, however the script ends.

    Workers ignore SIGTERM (engine/loader.py leaves stop signals to the main process), and
    after an error the traceback keeps their DataLoader alive, so nothing shuts them down:
    the interpreter's exit would send them SIGTERM and then wait for them forever. They hold
    nothing worth saving (a resumed run loads its batches again).
    """
    workers = [child for child in multiprocessing.active_children() if child.daemon]
    if not workers:  # DataLoader workers are daemonic; any other child is left alone
        return
    if hasattr(signal, "SIGCHLD"):  # torch's handler would raise "worker killed" for each
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join(WORKER_REAP_SECONDS)


def user_message(error: UserError) -> str:
    """The sentence of a UserError, also when a DataLoader worker raised it.

    A worker's exception reaches the main process re-raised with the worker's traceback as its
    message; the sentence is the last line, after the exception's class name.
    """
    text = str(error).strip()
    if "Traceback" not in text:
        return text
    return text.splitlines()[-1].split("UserError: ", 1)[-1]
