"""DataLoaders whose order and augmentation are functions of (seed, epoch), for any task.

Shared by every data set in data.py: a seeded shuffle (or weighted draw) that a resumed run can
start part-way, per-sample seeding of random augmentation (per-batch for a batch transform),
torchrun sharding, and workers that leave stop signals to the main process.
"""

import argparse
import math
import os
import signal
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, default_collate

from ..errors import UserError
from .devices import is_main_process, rank, world_size
from .loop import StopRequest

# One core feeds each training process (torchrun starts LOCAL_WORLD_SIZE of them on a machine);
# the others decode and augment. More than 8 workers a process rarely helps; each costs memory.
_CORES_PER_PROCESS = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))
DEFAULT_NUM_WORKERS = min(8, max(0, _CORES_PER_PROCESS - 1))

# --batch-size auto: the largest of these that still gives each process MIN_STEPS_PER_EPOCH
# optimizer steps an epoch. A small folder (1,437 digits) gets 32 and 44 steps: at 128 it had
# 11, too few updates to learn in 15 epochs (0.83 val accuracy vs 1.00). 30 keeps the
# synthetic sets of 8,000 and 4,000 images at 128 (62 and 31 steps).
AUTO_BATCH_SIZES = (128, 64, 32, 16)
MIN_STEPS_PER_EPOCH = 30


class ResumableSampler(DistributedSampler):
    """A seeded shuffle per epoch that can start part-way; it yields (epoch, index) pairs.

    The epoch's order is a function of (seed, epoch) alone, as DistributedSampler makes it,
    and the same whatever the process count. `set_epoch(epoch, consumed=n)` says that the
    run has trained on the first n samples of that order (all processes together); the rest
    is dealt out over the processes of this run, every num_replicas-th sample to each, all of
    them the same count (the tail that does not divide is dropped). A run resumed part-way
    through an epoch, by as many processes as before or by another number, so trains on each
    of the epoch's remaining samples once. With consumed=0 and one order per process count,
    this is DistributedSampler's own split. The epoch travels with each index so that the
    workers, which hold their own copy of the data set, know it (see EpochSeeded).
    """

    def set_epoch(self, epoch: int, consumed: int = 0) -> None:
        super().set_epoch(epoch)
        self.consumed = consumed

    def __iter__(self):
        start = getattr(self, "consumed", 0) + self.rank
        share = self.epoch_order()[start :: self.num_replicas][: len(self)]
        return iter([(self.epoch, index) for index in share])

    def __len__(self) -> int:
        """Samples this process trains on in what is left of the epoch."""
        left = len(self.dataset) - getattr(self, "consumed", 0)
        return max(0, left) // self.num_replicas

    def finished(self, consumed: int, batch_size: int) -> bool:
        """Whether `consumed` samples of the epoch leave each process less than a batch."""
        return (len(self.dataset) - consumed) // self.num_replicas < batch_size

    def epoch_order(self) -> list[int]:
        """Every index of the current epoch, in training order (the same for any process count)."""
        if not self.shuffle:
            return list(range(len(self.dataset)))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.dataset), generator=generator).tolist()


class WeightedResumableSampler(ResumableSampler):
    """ResumableSampler's epochs, drawn with replacement in proportion to `weights`.

    Each epoch draws as many samples as the data set has from a torch.Generator seeded with
    seed + epoch, as DistributedSampler seeds its shuffle: the draw is a function of
    (seed, epoch) alone, so it is split over the processes, and resumed part-way, as the
    plain shuffle is.
    """

    def __init__(
        self, dataset: Dataset, weights: torch.Tensor, num_replicas: int = 1, rank: int = 0,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(dataset, num_replicas, rank, shuffle=True, seed=seed, drop_last=True)
        if weights.shape != (len(dataset),):
            raise ValueError(f"need one weight per sample ({len(dataset)}), got {weights.shape}")
        self.weights = weights.double()

    def epoch_order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        draw = torch.multinomial(self.weights, len(self.dataset), True, generator=generator)
        return draw.tolist()


class EvaluationShard(Sampler):
    """Every `num_replicas`-th sample from `rank` on, in order, as (0, index) pairs.

    Unlike DistributedSampler it never pads the shards to equal length: a padded sample would
    be counted twice, and metrics summed over the ranks would differ from a single process's.
    """

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0) -> None:
        self.indices = range(rank, len(dataset), num_replicas)

    def __iter__(self):
        return ((0, index) for index in self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochSeeded(Dataset):
    """Draws each sample's random augmentation from its own seed: a function of (seed, epoch,
    index). Which worker loads a sample, and whether the run was stopped and resumed in
    between, then changes nothing: resumed runs see the same crops and flips.

    With --num-workers 0 samples load in a background thread of the main process; the
    global RNG is restored after each sample, but a model that draws random numbers itself
    (dropout) races with that thread, so exact resumes there need worker processes.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        sample_seed = np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(sample_seed))
            return self.dataset[index]

    def __getitems__(self, keys: list[tuple[int, int]]) -> "SeededSamples":
        """A batch's samples (the DataLoader asks for them together) with the batch's own seed."""
        epoch = keys[0][0]
        indices = [index for _, index in keys]
        # The key 1 keeps batch seeds apart from sample seeds (a batch of one sample).
        entropy = [self.seed, epoch, 1, *indices]
        batch_seed = np.random.SeedSequence(entropy).generate_state(1)[0]
        return SeededSamples([self[key] for key in keys], int(batch_seed))


class SeededSamples(list):
    """The samples of one batch, and the seed of its batch-level augmentation."""

    def __init__(self, samples: list, seed: int) -> None:
        super().__init__(samples)
        self.seed = seed


class SeededCollate:
    """default_collate, then a random batch transform (MixUp, CutMix) drawn from the batch's
    seed: a function of (seed, epoch, the batch's indices), whichever worker collates it."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, samples: SeededSamples):
        batch = default_collate(samples)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(samples.seed)
            return self.transform(*batch)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int,
    seed: int,
    pin_memory: bool = False,
    rank: int = 0,
    world_size: int = 1,
    sample_weights: torch.Tensor | None = None,
    batch_transform: Callable | None = None,
) -> DataLoader:
    """A DataLoader over this process's share of `dataset` (all of it with one process).

    Training order and augmentation are functions of (seed, epoch): call
    `loader.sampler.set_epoch(epoch)` before each epoch. Every rank gets as many training
    batches as the others (the tail that does not divide is dropped), so they step together.
    For training only: `sample_weights` draws each epoch with replacement in proportion to
    them (instead of a shuffle), and `batch_transform(inputs, targets)` changes each
    collated batch (MixUp, CutMix), seeded per batch.
    """
    shard = {"num_replicas": world_size, "rank": rank}
    if train and sample_weights is not None:
        sampler = WeightedResumableSampler(dataset, sample_weights, **shard, seed=seed)
    elif train:
        sampler = ResumableSampler(dataset, **shard, shuffle=True, seed=seed, drop_last=True)
    else:
        sampler = EvaluationShard(dataset, **shard)
    collate = SeededCollate(batch_transform) if train and batch_transform is not None else None
    return DataLoader(
        EpochSeeded(dataset, seed),
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=train,  # equal micro-batches keep gradient accumulation exact
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        worker_init_fn=ignore_stop_signals,
    )


def ignore_stop_signals(worker_id: int) -> None:
    """In a DataLoader worker: leave Ctrl-C, SIGTERM and SIGUSR1 to the main process.

    A terminal's Ctrl-C and a scheduler's SIGTERM or SIGUSR1 can reach the whole process
    group. A worker killed by one (SIGUSR1's default action, too) would crash the main process
    ("DataLoader worker is killed by signal") before it could finish its step and save; the
    main process stops the workers itself.
    """
    for signum in StopRequest.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def build_loaders(
    train_set: Dataset,
    val_set: Dataset,
    device: torch.device,
    args: argparse.Namespace,
    sample_weights: torch.Tensor | None = None,
    batch_transform: Callable | None = None,
) -> tuple[DataLoader, DataLoader]:
    """The training and validation loaders of this process (its share under torchrun); the
    task's `sample_weights` and `batch_transform` go to the training loader alone."""
    pin = device.type == "cuda"  # page-locked memory makes host-to-GPU copies asynchronous
    shard = {"rank": rank(), "world_size": world_size()}
    common = {"num_workers": args.num_workers, "seed": args.seed, "pin_memory": pin, **shard}
    train_extras = {"sample_weights": sample_weights, "batch_transform": batch_transform}
    train_loader = build_loader(train_set, args.batch_size, True, **common, **train_extras)
    val_loader = build_loader(val_set, args.batch_size, False, **common)
    if len(train_loader) == 0:  # the loader drops a partial batch
        raise UserError(
            f"--batch-size {args.batch_size} exceeds the {len(train_loader.sampler)} training "
            f"samples of each of the {world_size()} process(es); lower it"
        )
    return train_loader, val_loader


def optimizer_steps(samples: int, processes: int, batch_size: int, accum_steps: int) -> int:
    """The optimizer steps `samples` of an epoch's order make: dealt out over `processes`, in
    whole batches (the loader drops the rest), accum_steps micro-batches a step (the last
    group may be short)."""
    return math.ceil(max(samples, 0) // processes // batch_size / accum_steps)


def auto_batch_size(train_size: int, processes: int = 1, accum_steps: int = 1) -> int:
    """The largest of AUTO_BATCH_SIZES giving each process MIN_STEPS_PER_EPOCH optimizer steps.

    Each process trains on train_size // processes samples (the loader drops the rest), and an
    optimizer step takes accum_steps micro-batches. Too small a set for every candidate gets
    the smallest one (or its whole share, if that is smaller still).
    """
    for size in AUTO_BATCH_SIZES:
        if optimizer_steps(train_size, processes, size, accum_steps) >= MIN_STEPS_PER_EPOCH:
            return size
    return max(1, min(AUTO_BATCH_SIZES[-1], train_size // processes))


def resolve_batch_size(args: argparse.Namespace, train_size: int) -> None:
    """Replace --batch-size auto by auto_batch_size() for this training set, and say so.

    Done once, before the loaders: the loader, the schedule and the checkpoint's args (so a
    resumed run) all see the number, never "auto". An explicit --batch-size is left alone.
    """
    if args.batch_size != "auto":
        return
    processes = world_size()
    args.batch_size = auto_batch_size(train_size, processes, args.accum_steps)
    if is_main_process():
        print(auto_batch_size_line(args.batch_size, train_size, processes, args.accum_steps))


def auto_batch_size_line(size: int, train_size: int, processes: int, accum_steps: int) -> str:
    """The one line that says which batch size "auto" chose, and why."""
    steps = optimizer_steps(train_size, processes, size, accum_steps)
    candidates = "/".join(map(str, AUTO_BATCH_SIZES))
    return (
        f"batch size {size} (auto: {train_size:,} training images, {processes} process(es) x "
        f"{accum_steps} accumulated: {steps} optimizer steps an epoch; the largest of "
        f"{candidates} giving at least {MIN_STEPS_PER_EPOCH}); --batch-size N to choose"
    )
