"""Load the next batches in a background thread (prefetch_generator), and stop it cleanly."""

import contextlib
import queue
import threading
from collections.abc import Iterable

from prefetch_generator import BackgroundGenerator


class BackgroundLoader(BackgroundGenerator):
    """BackgroundGenerator over a DataLoader that can be closed when the loop breaks early.

    prefetch_generator already hands an exception raised while loading to the consumer at
    its next `next()`; on top of that, close() stops the thread and releases the DataLoader
    iterator (and its workers) instead of leaving them blocked on a full queue.
    """

    def __init__(self, iterable: Iterable, max_prefetch: int = 2) -> None:
        self._closing = threading.Event()
        super().__init__(iter(iterable), max_prefetch=max_prefetch)

    def run(self) -> None:
        try:
            for item in self.generator:
                if self._closing.is_set():
                    break
                self.queue.put((True, item))
        except Exception as error:
            self.queue.put((False, error))
        finally:
            self.queue.put((False, StopIteration))

    def close(self) -> None:
        """Stop the background thread and drop the iterator; safe to call more than once."""
        self._closing.set()
        while self.is_alive():
            # Make room, so that a put() blocked on a full queue returns and sees the flag.
            with contextlib.suppress(queue.Empty):
                self.queue.get(timeout=0.05)
        self.generator = None

    def __enter__(self) -> "BackgroundLoader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
