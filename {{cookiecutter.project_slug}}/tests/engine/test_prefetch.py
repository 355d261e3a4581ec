"""The prefetch thread: errors arrive at once, an early exit leaves nothing running."""

import gc
import multiprocessing
import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from {{ cookiecutter.package_name }}.engine.loop import BackgroundLoader

from ..helpers import TINY_RUN_FLAGS


class BrokenAt(Dataset):
    """Sample i is the tensor [i]; reading sample `broken` raises."""

    def __init__(self, size: int, broken: int) -> None:
        self.size, self.broken = size, broken

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == self.broken:
            raise ValueError(f"sample {index} is broken")
        return torch.tensor([index])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_loading_error_reaches_the_loop_at_the_batch_it_broke(num_workers):
    loader = DataLoader(BrokenAt(40, broken=9), batch_size=2, num_workers=num_workers)
    received = []
    with pytest.raises(ValueError, match="sample 9 is broken"), BackgroundLoader(loader) as batches:
        for batch in batches:
            received.append(batch)
    assert len(received) == 4  # batches 0-3 arrived; batch 4 (samples 8, 9) raised


def wait_until(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    return condition()


def test_leaving_the_loop_early_stops_the_thread_and_the_workers():
    loader = DataLoader(BrokenAt(400, broken=-1), batch_size=2, num_workers=2)
    threads_before = set(threading.enumerate())
    children_before = set(multiprocessing.active_children())
    with BackgroundLoader(loader) as batches:
        for index, _ in enumerate(batches):
            if index == 2:
                break  # the thread is blocked on a full queue, the workers are loading ahead
    assert not batches.is_alive()
    assert wait_until(lambda: set(multiprocessing.active_children()) <= children_before), (
        "workers left behind"
    )
    assert wait_until(lambda: set(threading.enumerate()) <= threads_before), "threads left"


def test_no_prefetch_thread_trains_the_same_weights_without_the_thread(
    train_script, tmp_path, monkeypatch
):
    flags = [*TINY_RUN_FLAGS, "--max-steps", "3", "--out-dir", str(tmp_path)]
    train_script.main([*flags, "--run-name", "thread"])

    def no_thread(loader):
        raise AssertionError("--no-prefetch-thread started the prefetch thread")

    monkeypatch.setattr(train_script.engine, "BackgroundLoader", no_thread)
    train_script.main([*flags, "--run-name", "direct", "--no-prefetch-thread"])
    thread, direct = (
        torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"]
        for name in ("thread", "direct")
    )
    for name, tensor in thread.items():
        assert torch.equal(direct[name], tensor), name
