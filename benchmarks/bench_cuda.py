"""CUDA: the data pipeline vs compute alone, and AMP / channels_last / compile vs fp32 eager.

    python benchmarks/bench_cuda.py [--project DIR] [--steps 200]

1. Data pipeline: the generated loop over the default pipeline (synthetic data, the default
   --num-workers, pinned memory) vs the same loop over batches already on the GPU; target:
   pipeline samples/s >= 0.90 of compute-only, and the compute efficiency the loop reports
   within +-0.05 of that ratio. The same with --no-prefetch-thread, and the candidate the
   project does not ship yet: the seed's
   "data_prefetcher", which copies the next batch on a side CUDA stream while this one
   computes (StreamPrefetcher below); it goes into the project only if it beats the default.
2. Precision and layout: the project's model at width 64 (ResNet-style) at 32 px and 128 px,
   fp32 eager vs bf16, bf16 + channels_last, and bf16 + channels_last + torch.compile.

Without a CUDA device it prints one line saying so and exits 0. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench_loop import bake, generated_epoch, load_train_script, models

BATCH = 128


def timed_epoch(train, model, batches, device, flags: list[str], scratch: Path) -> float:
    """Samples/s of one pass of the generated loop over `batches` (all queued work included)."""
    import torch
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    args = train.parse_args(["--device", "cuda", "--log-every", "20", *flags])
    torch.cuda.synchronize()
    start = time.perf_counter()
    with SummaryWriter(scratch) as writer, contextlib.redirect_stderr(io.StringIO()):
        generated_epoch(train, model, batches, nn.CrossEntropyLoss(), device, writer, args)
    torch.cuda.synchronize()
    return len(batches) * BATCH / (time.perf_counter() - start)


def reported_efficiency(scratch: Path) -> float:
    """Mean compute efficiency the loop logged, leaving out its first (warm-up) report."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(scratch), size_guidance={"scalars": 0})
    events.Reload()
    values = [event.value for event in events.Scalars("perf/compute_efficiency")]
    return statistics.mean(values[1:] or values)


class StreamPrefetcher:
    """The seed's data_prefetcher: the next batch's host-to-device copy runs on a side stream,
    overlapping the current step's kernels; the compute stream waits for it before use."""

    def __init__(self, loader, device) -> None:
        import torch

        self.loader, self.device = loader, device
        self.copy_stream = torch.cuda.Stream(device)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        import torch

        batches = iter(self.loader)
        upcoming = self._copy_next(batches)
        while upcoming is not None:
            compute_stream = torch.cuda.current_stream(self.device)
            compute_stream.wait_stream(self.copy_stream)
            for tensor in upcoming:  # memory the copy stream allocated is now used here
                tensor.record_stream(compute_stream)
            current, upcoming = upcoming, self._copy_next(batches)
            yield current

    def _copy_next(self, batches):
        import torch

        batch = next(batches, None)
        if batch is None:
            return None
        with torch.cuda.stream(self.copy_stream):
            return tuple(tensor.to(self.device, non_blocking=True) for tensor in batch)


def data_pipeline(train, factory, device, steps: int, image_size: int, scratch: Path) -> None:
    """Benchmark 1: the default pipeline (and the stream prefetcher) vs batches on the GPU."""
    import torch

    args = train.parse_args(["--dataset", "synthetic", "--image-size", str(image_size),
                             "--synthetic-size", str(BATCH * steps)])  # fmt: skip
    data = train.task.build_data(args)
    workers = train.engine.DEFAULT_NUM_WORKERS
    loader = train.engine.build_loader(data.train, BATCH, True, workers, seed=0, pin_memory=True)
    loader.sampler.set_epoch(0)
    on_gpu = [(images.to(device), targets.to(device)) for images, targets in loader]
    model = factory().to(device)
    timed_epoch(train, model, on_gpu[:20], device, [], scratch / f"warmup{image_size}")
    compute_only = timed_epoch(train, model, on_gpu, device, [], scratch / f"compute{image_size}")
    record = {"bench": "cuda_data_pipeline", "image_size": image_size, "batch": BATCH,
              "num_workers": workers, "compute_only_samples_per_s": round(compute_only),
              "target_ratio": 0.90, "gpu": torch.cuda.get_device_name()}  # fmt: skip
    pipelines = {  # name: (batches, flags)
        "pipeline": (loader, []),
        "no_prefetch_thread": (loader, ["--no-prefetch-thread"]),
        # Without the thread, as the seed wrote it: the copy stream's waits must be queued by
        # the thread that queues the compute, in step with it.
        "stream_prefetch": (StreamPrefetcher(loader, device), ["--no-prefetch-thread"]),
    }
    for name, (batches, flags) in pipelines.items():
        folder = scratch / f"{name}{image_size}"
        samples_per_s = timed_epoch(train, model, batches, device, flags, folder)
        ratio, efficiency = samples_per_s / compute_only, reported_efficiency(folder)
        record[f"{name}_samples_per_s"] = round(samples_per_s)
        record[f"{name}_ratio"] = round(ratio, 3)
        record[f"{name}_reported_efficiency"] = round(efficiency, 3)
        record[f"{name}_efficiency_error"] = round(efficiency - ratio, 3)
    print(json.dumps(record), flush=True)


def precision_and_layout(train, model_class, device, steps: int, scratch: Path) -> None:
    """Benchmark 2: fp32 eager vs bf16, bf16 + channels_last, bf16 + channels_last + compile."""
    import torch

    variants = {
        "fp32": (["--amp", "off"], False),
        "bf16": (["--amp", "bf16"], False),
        "bf16_channels_last": (["--amp", "bf16", "--channels-last"], False),
        "bf16_channels_last_compile": (["--amp", "bf16", "--channels-last"], True),
    }
    for size in (32, 128):
        batches = [
            (
                torch.randn(BATCH, 3, size, size, device=device),
                torch.randint(0, 10, (BATCH,), device=device),
            )
            for _ in range(steps)
        ]
        results = {}
        for name, (flags, compiled) in variants.items():
            torch.manual_seed(0)
            model = model_class(num_classes=10, width=64).to(device)
            if "--channels-last" in flags:
                model = model.to(memory_format=torch.channels_last)
            step_model = torch.compile(model) if compiled else model
            timed_epoch(train, step_model, batches[:20], device, flags, scratch / f"w{name}{size}")
            results[name] = timed_epoch(
                train, step_model, batches, device, flags, scratch / f"{name}{size}"
            )
        print(
            json.dumps(
                {
                    "bench": "cuda_precision_layout",
                    "image_size": size,
                    "batch": BATCH,
                    "width": 64,
                    **{f"{name}_samples_per_s": round(value) for name, value in results.items()},
                    **{
                        f"{name}_vs_fp32": round(value / results["fp32"], 3)
                        for name, value in results.items()
                    },
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a baked project (default: bake one)")
    parser.add_argument("--steps", type=int, default=200, help="batches per timed pass")
    options = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"bench": "cuda", "skipped": "no CUDA device on this machine"}))
        return
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        project = options.project or bake(scratch)
        train = load_train_script(project)
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
        factory = models(train, device)["project_model"][0]
        for image_size in (32, 128):
            data_pipeline(train, factory, device, options.steps, image_size, scratch)
        precision_and_layout(train, type(factory()), device, options.steps, scratch)


if __name__ == "__main__":
    main()
