"""Loop overhead: the generated train_one_epoch vs a bare loop (and Lightning), interleaved.

    python benchmarks/bench_loop.py [--project DIR] [--rounds 5] [--steps 60] [--device cpu]
        [--only tiny_mlp]

Every loop trains the same model (a fresh copy of one initialisation) with the same optimizer
on the same in-memory batches, and is timed the same way: the model is wrapped so that each
forward call records a timestamp, and a loop's step time is the median gap between forwards
(the first few steps are warm-up and skipped). The loops take turns within each round, so
machine noise hits them alike; each line reports the median over rounds and the median of
the rounds' ratios to the bare loop (target for ours: <= 1.03).

Every measurement also runs ours with --no-prefetch-thread, which isolates what the
BackgroundGenerator's hand-off costs; `*_adds_ms` is the median per-round difference to the
bare loop in ms a step. Also measured: the BackgroundGenerator's effect with --num-workers 0
(data made in the loop): ours over a DataLoader of the synthetic set vs the bare loop over
the same DataLoader.
Lightning's Trainer runs only when `lightning` is installed (it is not a test dependency).
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP_STEPS = 5


def bake(out_dir: Path) -> Path:
    """The default project, generated without its smoke step."""
    command = [sys.executable, "-m", "cookiecutter", str(REPO), "--no-input", "-o", str(out_dir)]
    env = {**os.environ, "HOME": str(out_dir)}  # keep cookiecutter's replay files out of ~
    subprocess.run([*command, "smoke_test=off"], check=True, capture_output=True, env=env)
    return out_dir / "image-classifier"


def load_train_script(project: Path):
    """train.py as a module (its package importable from the project root)."""
    sys.path.insert(0, str(project))
    spec = importlib.util.spec_from_file_location("train_script", project / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stamped(model, stamps: list[float]):
    """The model, recording the time of each forward call (the same probe for every loop)."""
    import torch

    class Stamped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, images):
            stamps.append(time.perf_counter())
            return self.inner(images)

    return Stamped()


def step_time(stamps: list[float]) -> float:
    """Median seconds between consecutive forward calls after the warm-up."""
    steady = stamps[WARMUP_STEPS:]
    gaps = [later - earlier for earlier, later in zip(steady, steady[1:], strict=False)]
    return statistics.median(gaps)


def bare_loop(model, batches, criterion, device) -> None:
    """What a user would write by hand."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for images, targets in batches:
        images, targets = images.to(device), targets.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(images), targets)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def generated_epoch(train, model, batches, criterion, device, writer, args) -> None:
    """One pass of the generated train_one_epoch, its TrainStep built from `args` as train()
    builds it (AdamW at a constant rate; --amp, --grad-clip, --accum-steps, --channels-last)."""
    import torch

    engine = train.engine
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    precision = engine.MixedPrecision(args.amp, device)
    step = engine.TrainStep(model, criterion, optimizer, scheduler, device, precision,
                            args.grad_clip, args.accum_steps, args.channels_last)  # fmt: skip
    # A StopRequest that is not entered installs no signal handlers: it never fires.
    run = train.Run(writer, engine.StopRequest(), save_last=lambda: None)
    train.train_one_epoch(step, batches, engine.TrainState(), run, args)


def our_loop(train, model, batches, criterion, device, scratch: Path, flags=()) -> None:
    """The generated loop: BackgroundGenerator, tqdm, timing, logging every 20 steps; fp32, as
    the bare loop."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    args = train.parse_args(["--log-every", "20", "--epochs", "1", "--device", device.type,
                             "--amp", "off", *flags])  # fmt: skip
    with SummaryWriter(scratch) as writer, contextlib.redirect_stderr(io.StringIO()):
        generated_epoch(train, model, batches, criterion, device, writer, args)
    if device.type == "cuda":
        torch.cuda.synchronize()


def lightning_loop(model, batches, criterion, device) -> None:
    """The same model and batches under Lightning's Trainer (progress bar on, as ours)."""
    import lightning
    import torch
    from torch.utils.data import DataLoader

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch, batch_index):
            images, targets = batch
            return criterion(self.model(images), targets)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    trainer = lightning.Trainer(
        max_steps=len(batches), accelerator=device.type, devices=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=20,
    )  # fmt: skip
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        # batch_size=None: the DataLoader hands out the ready-made batches as they are.
        trainer.fit(Module(), train_dataloaders=DataLoader(batches, batch_size=None))


def models(train, device):
    """name -> (model factory, batch factory): the project's model, a tiny MLP, and a near-empty
    model whose step is almost all loop and optimizer overhead (what the loop adds, in ms)."""
    import torch
    from torch import nn

    # train.py imports its model module as `architecture`; its __all__ names the model class
    # beside the loss and the norm choices.
    model_module = train.architecture
    if not hasattr(model_module, "ClassificationLoss"):
        sys.exit("bench_loop.py times a classification model; give --project a bake of the "
                 "default task (task=classification)")  # fmt: skip
    model_class = next(
        getattr(model_module, name) for name in model_module.__all__
        if name != "ClassificationLoss" and isinstance(getattr(model_module, name), type)
    )  # fmt: skip

    def image_batches(steps):
        return [(torch.randn(128, 3, 32, 32), torch.randint(0, 6, (128,))) for _ in range(steps)]

    def vector_batches(steps):
        return [(torch.randn(64, 32), torch.randint(0, 10, (64,))) for _ in range(steps)]

    def mlp():
        return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                             nn.Linear(64, 10))  # fmt: skip

    def pair_batches(steps):
        return [(torch.randn(2, 4), torch.randint(0, 2, (2,))) for _ in range(steps)]

    return {
        "project_model": (lambda: model_class(num_classes=6, width=16), image_batches),
        "tiny_mlp": (mlp, vector_batches),
        "near_empty": (lambda: nn.Linear(4, 2), pair_batches),
    }


def compare(loops: dict, factory, batches, device, rounds: int) -> dict[str, list[float]]:
    """Run every loop once a round, in rotating order; step times per loop."""
    import torch

    torch.manual_seed(0)
    initial = factory().to(device)
    times: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for round_index in range(rounds):
        for name in names[round_index % len(names) :] + names[: round_index % len(names)]:
            stamps: list[float] = []
            loops[name](stamped(copy.deepcopy(initial), stamps), batches)
            times[name].append(step_time(stamps))
    return times


def report(bench: str, model: str, times: dict[str, list[float]], device) -> None:
    """One JSON line: median step time per loop, and each loop's ratio to the bare loop.

    The ratio is the median over rounds of the round's own ratio: the loops of one round ran
    seconds apart, so a slow spell of the machine cancels out.
    """
    record = {"bench": bench, "model": model, "device": device.type, "rounds": len(times["bare"])}
    for name, values in times.items():
        record[f"{name}_ms"] = round(1000 * statistics.median(values), 4)
        if name != "bare":
            pairs = list(zip(values, times["bare"], strict=True))
            record[f"{name}_vs_bare"] = round(statistics.median(a / b for a, b in pairs), 4)
            record[f"{name}_adds_ms"] = round(1000 * statistics.median(a - b for a, b in pairs), 4)
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a baked project (default: bake one)")
    parser.add_argument("--rounds", type=int, default=5, help="turns of every loop")
    parser.add_argument("--steps", type=int, default=60, help="steps per loop and turn")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--only", choices=["project_model", "tiny_mlp", "near_empty"],
                        help="one model only")  # fmt: skip
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        project = options.project or bake(scratch)
        train = load_train_script(project)
        import torch
        from torch import nn

        device = torch.device(options.device)
        criterion = nn.CrossEntropyLoss()
        with_lightning = importlib.util.find_spec("lightning") is not None
        for model_name, (factory, make_batches) in models(train, device).items():
            if options.only and model_name != options.only:
                continue
            batches = make_batches(options.steps)
            loops = {
                "bare": lambda m, b: bare_loop(m, b, criterion, device),
                "ours": lambda m, b: our_loop(train, m, b, criterion, device, scratch / "tb"),
                "ours_no_prefetch_thread": lambda m, b: our_loop(
                    train, m, b, criterion, device, scratch / "tb", ["--no-prefetch-thread"]
                ),
            }
            if with_lightning:
                loops["lightning"] = lambda m, b: lightning_loop(m, b, criterion, device)
            times = compare(loops, factory, batches, device, options.rounds)
            report("loop_overhead", model_name, times, device)

        if options.only:
            return
        # The BackgroundGenerator with no workers: data made in the loop, in its thread or not.
        args = train.parse_args(["--dataset", "synthetic", "--image-size", "32",
                                 "--synthetic-size", str(128 * options.steps)])  # fmt: skip
        data = train.task.build_data(args)
        loader = train.engine.build_loader(data.train, 128, True, num_workers=0, seed=0)
        loader.sampler.set_epoch(0)
        factory = models(train, device)["project_model"][0]
        loops = {
            "bare": lambda m, b: bare_loop(m, loader, criterion, device),
            "ours": lambda m, b: our_loop(train, m, loader, criterion, device, scratch / "tb"),
            "ours_no_prefetch_thread": lambda m, b: our_loop(
                train, m, loader, criterion, device, scratch / "tb", ["--no-prefetch-thread"]
            ),
        }
        times = compare(loops, factory, None, device, options.rounds)
        report("background_generator_no_workers", "project_model", times, device)


if __name__ == "__main__":
    main()
