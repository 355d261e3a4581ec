"""--batch-size auto: one rule fits the batch to the training set, says so, and sticks."""

import argparse
import json

import pytest

from {{ cookiecutter.package_name }}.engine.loader import (
    MIN_STEPS_PER_EPOCH,
    auto_batch_size,
    resolve_batch_size,
)

from ..helpers import TINY_RUN_FLAGS


@pytest.mark.parametrize(
    ("train_size", "processes", "accum_steps", "expected"),
    [
        (8_000, 1, 1, 128),  # a synthetic set of 8,000: 62 steps an epoch
        (4_000, 1, 1, 128),  # of 4,000: 31 steps
        (1_437, 1, 1, 32),  # a small folder (the digits benchmark): 44 steps, 22 at 64
        (8_000, 4, 1, 64),  # each of 4 processes trains on 2,000: 15 steps at 128, 31 at 64
        (1_437, 2, 1, 16),  # 718 a process: 22 steps at 32
        (1_437, 1, 2, 16),  # two micro-batches a step: 22 steps at 32
        (8_000, 1, 3, 64),  # 21 steps at 128 (62 micro-batches / 3), 42 at 64
        (200, 1, 1, 16),  # too small for any: the smallest candidate
        (10, 1, 1, 10),  # smaller than that: the whole set
    ],
)
def test_auto_batch_size_is_the_largest_with_enough_steps_per_process(
    train_size, processes, accum_steps, expected
):
    assert auto_batch_size(train_size, processes, accum_steps) == expected


def test_auto_picks_the_largest_candidate_at_exactly_the_minimum_steps():
    # 30 steps of 128 a process is enough (>=), one sample fewer is not.
    assert auto_batch_size(128 * MIN_STEPS_PER_EPOCH) == 128
    assert auto_batch_size(128 * MIN_STEPS_PER_EPOCH - 1) == 64


def test_auto_is_resolved_once_with_one_printed_line(capsys):
    args = argparse.Namespace(batch_size="auto", accum_steps=1)
    resolve_batch_size(args, 1_437)
    assert args.batch_size == 32
    assert capsys.readouterr().out == (
        "batch size 32 (auto: 1,437 training images, 1 process(es) x 1 accumulated: 44 optimizer "
        "steps an epoch; the largest of 128/64/32/16 giving at least 30); --batch-size N to choose\n"
    )


def test_an_explicit_batch_size_wins_silently(train_script, capsys):
    args = train_script.parse_args(["--batch-size", "64"])
    assert args.batch_size == 64 and train_script.parse_args([]).batch_size == "auto"
    resolve_batch_size(args, 1_437)
    assert args.batch_size == 64 and capsys.readouterr().out == ""


def without_batch_size(flags: list[str]) -> list[str]:
    index = flags.index("--batch-size")
    return flags[:index] + flags[index + 2 :]


def test_a_run_and_its_resume_use_the_resolved_batch_size(train_script, tmp_path, capsys):
    # 960 images: auto gives 32 (30 steps), which no other flag here would give.
    flags = [*without_batch_size(TINY_RUN_FLAGS), "--synthetic-size", "960", "--max-steps", "1",
             "--out-dir", str(tmp_path), "--run-name", "auto"]  # fmt: skip
    result = train_script.train(train_script.parse_args(flags))
    assert "batch size 32 (auto: 960 training images" in capsys.readouterr().out
    assert json.loads((result.run_dir / "args.json").read_text())["batch_size"] == 32
    last = result.run_dir / "checkpoints" / "last.pt"
    resumed = train_script.parse_args(["--resume", str(last), "--max-steps", "2"])
    assert resumed.batch_size == 32
    # The first start's command line again (a requeued job): auto means the run's 32.
    again = train_script.parse_args([*flags, "--batch-size", "auto", "--resume", str(last)])
    assert again.batch_size == 32
    train_script.train(resumed)
    out = capsys.readouterr().out
    assert "(auto:" not in out and "effective batch: 32 x 1" in out  # nothing left to resolve
