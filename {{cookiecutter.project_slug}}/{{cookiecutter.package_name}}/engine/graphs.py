"""Pictures of the model: its module graph in TensorBoard, and torchviz's autograd graph.

torchviz draws what autograd recorded for one forward pass, the graph the backward pass walks
(the seed's computation-graph picture). It is an optional extra: `pip install -e ".[viz]"`
for the Python side, plus Graphviz's `dot` program to turn the .dot file into an SVG.
"""

import copy
import shutil
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate
from torch.utils.tensorboard import SummaryWriter

from ..errors import UserError

VIZ_INSTALL_HINT = (
    'pip install -e ".[viz]" (and Graphviz\'s dot: apt install graphviz, brew install graphviz)'
)


def require_torchviz() -> None:
    """Fail before training starts, rather than after it, when --viz-graph cannot work."""
    try:
        import torchviz  # noqa: F401
    except ImportError:
        raise UserError(
            f"--viz-graph needs torchviz, which is not installed; {VIZ_INSTALL_HINT}"
        ) from None


def log_module_graph(writer: SummaryWriter, model: nn.Module, example: torch.Tensor) -> None:
    """The model's module graph in TensorBoard's Graphs tab (traced in eval mode, so the
    trace leaves batch-norm statistics as they are)."""
    was_training = model.training
    model.eval()
    try:
        writer.add_graph(model, example)
    finally:
        model.train(was_training)


def save_autograd_graph(
    model: nn.Module, criterion: nn.Module, dataset: Dataset, run_dir: Path, device: torch.device
) -> str:
    """Write <run_dir>/autograd_graph.dot (and .svg when Graphviz is installed); return one line
    saying what was written.

    A copy of the model runs the forward pass, so the training run's batch-norm statistics and
    gradients stay untouched.
    """
    from torchviz import make_dot

    twin = copy.deepcopy(model).train()
    images, targets = (part.to(device) for part in default_collate([dataset[0], dataset[1]]))
    loss = criterion(twin(images), targets)
    graph = make_dot(loss, params=dict(twin.named_parameters()))
    source = run_dir / "autograd_graph.dot"
    source.write_text(graph.source)
    if shutil.which("dot") is None:
        return f"wrote {source}; render it with Graphviz's dot (not installed here): dot -Tsvg -O {source}"
    graph.render(run_dir / "autograd_graph", format="svg", cleanup=True)
    return f"wrote {source} and {source.with_suffix('.svg')}"
