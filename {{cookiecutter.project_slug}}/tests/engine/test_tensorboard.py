"""TensorBoard holds what the README says it does, read back with TensorBoard's own reader."""

import re
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter

from {{ cookiecutter.package_name }}.engine.cli import UserError
from {{ cookiecutter.package_name }}.engine.reporting import (
    log_module_graph,
    save_autograd_graph,
)
from {{ cookiecutter.package_name }}.task import task

from ..helpers import PROJECT_ROOT, TINY_RUN_FLAGS, model_of_this_task
from ..task import task_cases


def readme_tags(panel: str) -> set[str]:
    """The backticked tags in the README's TensorBoard table rows for `panel`."""
    rows = re.findall(rf"^\| {panel} \| (.*?) \|", (PROJECT_ROOT / "README.md").read_text(), re.M)
    return {tag for row in rows for tag in re.findall(r"`([^`]+)`", row)}


def load_events(run_dir) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    return events


class TagRecorder:
    """Stands in for a SummaryWriter and keeps the tags it is given (add_image, add_scalar, ...)."""

    def __init__(self) -> None:
        self.tags: set[str] = set()

    def __getattr__(self, name: str):
        return lambda tag, *args, **kwargs: self.tags.add(tag)


def step_image_tags(train_script) -> set[str]:
    """The tags of task.log_step_images, which draws every n steps (step 0: any n), not
    necessarily within the tiny run; test_training checks when."""
    model, _, (inputs, targets), args = model_of_this_task(train_script)
    recorder = TagRecorder()
    with torch.no_grad():
        train_script.task.log_step_images(recorder, 0, (inputs, model(inputs), targets), args)
    return recorder.tags


def test_every_scalar_text_and_image_tag_in_the_readme_is_logged(tiny_run, train_script):
    events = load_events(tiny_run.run_dir)
    tags = events.Tags()
    promised = {panel: readme_tags(panel) for panel in ("Scalars", "Text", "Images")}
    assert promised["Text"]  # a task may promise no images
    assert promised["Scalars"] == set(tags["scalars"])  # each one logged, each logged one listed
    assert {f"{tag}/text_summary" for tag in promised["Text"]} <= set(tags["tensors"])
    assert promised["Images"] - step_image_tags(train_script) <= set(tags["images"])


def test_hparams_hold_every_flag_and_name_the_final_metrics(tiny_run):
    events = load_events(tiny_run.run_dir)
    content = events.PluginTagToContent("hparams")
    assert set(content) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = {info.name.tag for info in experiment.experiment.metric_infos}
    assert metrics == set(task.HPARAM_METRICS) <= set(events.Tags()["scalars"])
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert (
        hparams["batch_size"].number_value == 16 and hparams["dataset"].string_value == "synthetic"
    )
    assert hparams["resume"].string_value == "None"  # a None flag is shown as text


def test_log_module_graph_adds_the_graph_and_leaves_batchnorm_statistics(train_script, tmp_path):
    model, _, (inputs, _), _ = model_of_this_task(train_script, *task_cases.model_size_flags(4))
    model.train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    with SummaryWriter(tmp_path) as writer:
        log_module_graph(writer, model, inputs[:1])
    assert load_events(tmp_path).Tags()["graph"]
    assert model.training
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name


def test_viz_graph_without_torchviz_stops_before_training_with_the_install_hint(
    train_script, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "torchviz", None)  # import torchviz now raises ImportError
    flags = [*TINY_RUN_FLAGS, "--viz-graph", "--out-dir", str(tmp_path)]
    with pytest.raises(UserError, match=r"--viz-graph needs torchviz.*pip install -e \".\[viz\]\""):
        train_script.train(train_script.parse_args(flags))
    assert list(tmp_path.iterdir()) == []


def test_autograd_graph_is_written_for_one_step_of_a_copy_of_the_model(train_script, tmp_path):
    pytest.importorskip("torchviz")
    model, _, (inputs, targets), args = model_of_this_task(
        train_script, *task_cases.model_size_flags(4)
    )
    model.train()
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    dataset = list(zip(inputs[:2], targets[:2], strict=True))
    criterion = train_script.task.build_criterion(args)
    message = save_autograd_graph(model, criterion, dataset, tmp_path, torch.device("cpu"))
    source = (tmp_path / "autograd_graph.dot").read_text()
    for name, _ in model.named_parameters():  # the loss's graph reaches every weight, named
        assert f'label="{name}\n' in source, name
    assert str(tmp_path / "autograd_graph.dot") in message
    assert all(parameter.grad is None for parameter in model.parameters())
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), name
