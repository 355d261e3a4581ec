"""A run resumed part-way through an epoch by another number of processes: the samplers deal
out the rest of the epoch, the learning-rate schedule goes on and ends with the run.

Pure functions and samplers only; tests/engine/test_elastic.py runs the real thing under torchrun.
"""

import argparse
import itertools
import math

import pytest
import torch
from torch.utils.data import DistributedSampler

from {{ cookiecutter.package_name }}.engine import resume
from {{ cookiecutter.package_name }}.engine.checkpoint import TrainState
from {{ cookiecutter.package_name }}.engine.loader import (
    ResumableSampler,
    WeightedResumableSampler,
)
from {{ cookiecutter.package_name }}.engine.step import build_scheduler, lr_factor

SAMPLES, BATCH = 100, 8


def sampler_of(weighted: bool, processes: int = 1, rank: int = 0) -> ResumableSampler:
    """Epoch 3's sampler of process `rank` of `processes`: a seeded shuffle or weighted draw."""
    data = range(SAMPLES)
    if weighted:
        weights = torch.linspace(1, 2, SAMPLES)
        sampler = WeightedResumableSampler(data, weights, processes, rank, seed=7)
    else:
        sampler = ResumableSampler(data, processes, rank, shuffle=True, seed=7, drop_last=True)
    sampler.set_epoch(3)
    return sampler


def epoch_order(weighted: bool) -> list[int]:
    """Epoch 3's whole order, before any process takes its share."""
    return sampler_of(weighted).epoch_order()


def shares(consumed: int, processes: int, weighted: bool = False) -> list[list[int]]:
    """Each process's indices of epoch 3 after `consumed` samples, as its sampler yields them."""
    result = []
    for rank in range(processes):
        sampler = sampler_of(weighted, processes, rank)
        sampler.set_epoch(3, consumed=consumed)
        pairs = list(sampler)
        assert len(pairs) == len(sampler) and {epoch for epoch, _ in pairs} <= {3}
        result.append([index for _, index in pairs])
    return result


def trained(share: list[int]) -> list[int]:
    """What a process trains on of its share: whole batches (the loader drops the rest)."""
    return share[: len(share) // BATCH * BATCH]


def in_training_order(all_shares: list[list[int]]) -> list[int]:
    """The processes' trained batches, batch by batch, interleaved as one order."""
    per_rank = [trained(share) for share in all_shares]
    return [index for row in zip(*per_rank, strict=True) for index in row]


@pytest.mark.parametrize("weighted", [False, True], ids=["shuffle", "weighted"])
def test_the_epochs_order_is_the_same_for_any_process_count(weighted):
    orders = [in_training_order(shares(0, processes, weighted)) for processes in (1, 2, 3)]
    shortest = min(map(len, orders))
    assert orders[0][:shortest] == orders[1][:shortest] == orders[2][:shortest]


@pytest.mark.parametrize("weighted", [False, True], ids=["shuffle", "weighted"])
@pytest.mark.parametrize("before, after", [(2, 1), (2, 3), (1, 2), (3, 2)])
def test_the_rest_of_an_epoch_is_dealt_out_once_to_another_process_count(before, after, weighted):
    # Two optimizer steps by `before` processes, then the rest by `after` of them.
    consumed = 2 * BATCH * before
    order = epoch_order(weighted)
    resumed = in_training_order(shares(consumed, after, weighted))
    # Positions, not indices (a weighted draw repeats indices): the next ones in the order,
    # each once, until less than one batch per process is left.
    assert resumed == order[consumed : consumed + len(resumed)]
    assert SAMPLES - consumed - len(resumed) < BATCH * after


def test_an_unchanged_process_count_resumes_exactly_as_distributed_sampler_splits():
    # What a resume with the same count trained on before this issue: each rank's
    # DistributedSampler share, less the batches it had done. Bitwise resumes rest on it.
    for processes, steps_done in itertools.product((1, 2, 3), (0, 1, 3)):
        resumed = shares(steps_done * BATCH * processes, processes)
        for rank in range(processes):
            plain = DistributedSampler(range(SAMPLES), processes, rank, seed=7, drop_last=True)
            plain.set_epoch(3)
            assert resumed[rank] == list(plain)[steps_done * BATCH :]


def test_an_epoch_is_finished_when_less_than_a_batch_per_process_is_left():
    sampler = ResumableSampler(range(SAMPLES), 3, 0, shuffle=True, seed=7, drop_last=True)
    assert not sampler.finished(SAMPLES - 3 * BATCH, BATCH)
    assert sampler.finished(SAMPLES - 3 * BATCH + 3, BATCH)
    assert sampler.finished(SAMPLES + 5, BATCH)


def schedule_args(**changes) -> argparse.Namespace:
    values = {"batch_size": BATCH, "accum_steps": 1, "epochs": 4, "warmup_steps": 2,
              "scheduler": "cosine", **changes}  # fmt: skip
    return argparse.Namespace(**values)


def factor_after_resume(monkeypatch, state: TrainState, args, processes: int):
    """The schedule's factor per step as restore_training refits it for `processes`, and the
    run's last step."""
    monkeypatch.setattr(resume, "world_size", lambda: processes)
    anchor = tuple(resume.schedule_anchor(args, state, SAMPLES))
    total = state.global_step + resume.optimizer_steps_left(args, state, SAMPLES)
    warmup = min(args.warmup_steps, total // 4)
    return lambda step: lr_factor(step, args.scheduler, warmup, total, anchor), total


@pytest.mark.parametrize("before, after", [(1, 2), (2, 1), (2, 3)])
@pytest.mark.parametrize("samples_in_epoch", [0, 48])
def test_the_schedule_goes_on_from_its_rate_and_ends_with_the_run(
    monkeypatch, before, after, samples_in_epoch
):
    args = schedule_args()
    per_epoch = SAMPLES // before // BATCH  # optimizer steps an epoch with `before` processes
    done = samples_in_epoch // (BATCH * before)
    state = TrainState(epoch=1, global_step=per_epoch + done, world_size=before,
                       samples_in_epoch=samples_in_epoch)  # fmt: skip
    total_before = per_epoch * args.epochs
    warmup = min(args.warmup_steps, total_before // 4)
    rate_before = lr_factor(state.global_step, "cosine", warmup, total_before)
    factor, total = factor_after_resume(monkeypatch, state, args, after)
    # The same rate at the step of the change (up to rounding), and 0 at the run's last step,
    # not before it: with the old schedule 1 -> 2 processes ran out of steps halfway through.
    assert factor(state.global_step) == pytest.approx(rate_before, rel=1e-12)
    assert factor(total) == pytest.approx(0.0, abs=1e-12) and factor(total - 1) > 0
    rates = [factor(step) for step in range(state.global_step, total + 1)]
    assert rates == sorted(rates, reverse=True)  # still decaying, never back up


def test_without_a_change_of_process_count_the_schedule_is_bitwise_the_same():
    # The anchor a run gets by default: the schedule a run built before this issue.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, "cosine", 5, 40)
    for step in range(41):
        if step < 5:
            expected = (step + 1) / 6
        else:
            expected = 0.5 * (1.0 + math.cos(math.pi * min((step - 5) / 35, 1.0)))
        assert scheduler.lr_lambdas[0](step) == expected


def test_processes_that_found_different_checkpoints_are_refused(monkeypatch, tmp_path):
    # Two machines, each with --out-dir on its own disk: --resume auto found a last.pt on
    # this one and none on the other.
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"weights")
    monkeypatch.setattr(resume, "is_distributed", lambda: True)
    monkeypatch.setattr(resume, "world_size", lambda: 2)

    def gather(every, found):
        every[:] = [found, None]  # what the other process found: nothing

    monkeypatch.setattr(resume.dist, "all_gather_object", gather)
    with pytest.raises(resume.UserError, match="found different checkpoints.*shares"):
        resume.require_one_checkpoint_for_all(checkpoint)
    monkeypatch.setattr(resume.dist, "all_gather_object", lambda every, found: None)
    resume.require_one_checkpoint_for_all(checkpoint)  # [None, None]: the same (no) checkpoint
