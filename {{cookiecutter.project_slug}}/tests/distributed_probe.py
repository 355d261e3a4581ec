"""Run under torchrun by test_distributed.py: several tiny trainings in one process group.

    torchrun --standalone --nproc_per_node=2 -m tests.distributed_probe SPEC.json

SPEC.json is {"runs": [[name, [flags...]], ...], "report": path}. After each run every rank
contributes a fingerprint of its final weights, and the run's model is evaluated on the
sharded validation split; rank 0 writes all of it to `report` as JSON. A run given as
[name, [flags...], record_dir] has its samples recorded (tests/sample_recorder.py).
"""

import contextlib
import json
import sys

import torch
import torch.distributed as dist

from {{ cookiecutter.package_name }}.engine.devices import (
    process_group,
    rank,
    world_size,
)
from {{ cookiecutter.package_name }}.engine.loader import build_loader
from {{ cookiecutter.package_name }}.task import task

# Relative (the probe runs as -m tests.distributed_probe), so its place among the imports
# does not depend on how the package name sorts against "tests".
from .helpers import load_script
from .sample_recorder import recording


def weights_fingerprint(model: torch.nn.Module) -> list[float]:
    """Each parameter's sum and sum of squares: equal weights give equal lists."""
    return [
        value for p in model.parameters() for value in (p.sum().item(), p.square().sum().item())
    ]


def gathered_ema_fingerprints(ema: torch.nn.Module | None) -> list | None:
    """Every rank's fingerprint of its --ema average (None without --ema)."""
    if ema is None:
        return None
    fingerprints = [None] * world_size()
    dist.all_gather_object(fingerprints, weights_fingerprint(ema.module))
    return fingerprints


def sharded_validation(train, args, model) -> dict[str, float]:
    """evaluate() on this rank's shard of the validation split, summed over the ranks."""
    data = train.task.build_data(args)
    loader = build_loader(data.val, args.batch_size, False, 0, args.seed,
                          rank=rank(), world_size=world_size())  # fmt: skip
    return task.evaluate(model, loader, torch.device("cpu"))


def main(spec_path: str) -> None:
    with open(spec_path) as file:
        spec = json.load(file)
    train = load_script("train")
    report = {}
    with process_group(torch.device("cpu")):
        for name, flags, *record_dir in spec["runs"]:
            args = train.parse_args(flags)
            train.seed_everything(args.seed, args.deterministic)  # as train.main() does
            with recording(*record_dir) if record_dir else contextlib.nullcontext():
                result = train.train(args)
            fingerprints = [None] * world_size()
            dist.all_gather_object(fingerprints, weights_fingerprint(result.model))
            report[name] = {
                "run_dir": str(result.run_dir),
                "losses": result.losses,
                "fingerprints": fingerprints,
                "ema_fingerprints": gathered_ema_fingerprints(result.ema),
                "validation": sharded_validation(train, args, result.model),
                "world_size": world_size(),
            }
        if rank() == 0:
            with open(spec["report"], "w") as file:
                json.dump(report, file)


if __name__ == "__main__":
    main(sys.argv[1])
