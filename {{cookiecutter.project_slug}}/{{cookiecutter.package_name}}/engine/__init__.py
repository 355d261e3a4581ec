"""Task-agnostic training machinery, by stage; the scripts reach it as `engine.<name>`.

cli: flags and how a script ends; config: --config files and each run's config.yaml; loader:
resumable, seeded DataLoaders; devices: device choice and torchrun/DDP; step: optimizer,
schedule, mixed precision, TrainStep; loop: prefetch, timing, stop signals; checkpoint: atomic
checkpoints; runs: run folders; resume: continuing a run from its checkpoint; reporting:
logged values, terminal lines, model graphs; tracking: TensorBoard, MLflow, W&B and CSV behind
one interface; inference: model cards and predictors; exports: pt2, ONNX and safetensors
files, written, verified and run.
"""

from ..errors import UserError
from .checkpoint import (
    RunCheckpoints,
    TrainState,
    load_checkpoint,
    load_model_weights,
    task_extras,
)
from .cli import SMOKE_SETTINGS, run_cli
from .config import parse_args_with_config
from .devices import (
    DEVICE_CHOICES,
    barrier,
    gradient_sync,
    is_distributed,
    is_main_process,
    on_main_process,
    place_model,
    process_group,
    select_device,
    sum_across_ranks,
    world_size,
)
from .exports import (
    EXPORT_FORMATS,
    ExportInterruptedError,
    VerificationError,
    check_replaceable,
    exported_files,
    exported_predictor,
    require_export_packages,
    staged_output,
    verify_export,
    write_export,
)
from .inference import Predictor, build_prediction_loader, eager_predictor, load_checkpoint_model
from .loader import DEFAULT_NUM_WORKERS, build_loader, build_loaders, resolve_batch_size
from .loop import BackgroundLoader, StepTimer, StopRequest
from .reporting import (
    end_lines,
    log_training,
    require_torchviz,
    start_line,
)
from .resume import restore_training, with_resume
from .runs import RunDirLock, args_to_dict, open_run_dir
from .step import (
    AMP_CHOICES,
    OPTIMIZERS,
    SCHEDULERS,
    MixedPrecision,
    TrainStep,
    build_ema,
    build_optimization,
)
from .tracking import TRACKERS, Trackers, open_trackers, tracker_names
from .validation import Validation, log_first_look, validation_model

# What the scripts (train.py, test.py, predict.py, export.py, sweep.py) use as engine.<name>,
# and nothing else: the rest is reached through its module, e.g. engine.inference.
__all__ = [
    "AMP_CHOICES",
    "args_to_dict",
    "BackgroundLoader",
    "barrier",
    "build_loader",
    "build_loaders",
    "build_prediction_loader",
    "build_ema",
    "build_optimization",
    "DEFAULT_NUM_WORKERS",
    "DEVICE_CHOICES",
    "check_replaceable",
    "eager_predictor",
    "end_lines",
    "EXPORT_FORMATS",
    "ExportInterruptedError",
    "exported_files",
    "exported_predictor",
    "gradient_sync",
    "is_distributed",
    "is_main_process",
    "load_checkpoint",
    "load_checkpoint_model",
    "load_model_weights",
    "log_training",
    "MixedPrecision",
    "on_main_process",
    "open_run_dir",
    "open_trackers",
    "OPTIMIZERS",
    "parse_args_with_config",
    "place_model",
    "Predictor",
    "process_group",
    "require_torchviz",
    "require_export_packages",
    "resolve_batch_size",
    "restore_training",
    "run_cli",
    "RunCheckpoints",
    "RunDirLock",
    "SCHEDULERS",
    "select_device",
    "SMOKE_SETTINGS",
    "staged_output",
    "start_line",
    "StepTimer",
    "StopRequest",
    "sum_across_ranks",
    "task_extras",
    "tracker_names",
    "Validation",
    "validation_model",
    "with_resume",
    "log_first_look",
    "TRACKERS",
    "Trackers",
    "TrainState",
    "TrainStep",
    "UserError",
    "VerificationError",
    "verify_export",
    "world_size",
    "write_export",
]
