"""--arch, --pretrained and the fine-tuning controls, offline: weights files are written here
from randomly initialised networks, never downloaded."""

import json
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision

from {{ cookiecutter.package_name }} import backbones, hub_weights
from {{ cookiecutter.package_name }}.errors import UserError

from ..helpers import (
    DDP_FLAGS,
    TINY_RUN_FLAGS,
    assert_same_weights,
    last_checkpoint,
    run_script,
    torchrun,
)
from ..hub_cache_files import (
    MakesFolder,
    save_named_by_hash,
    unreachable_torch_home,
    url_of,
)
from .task_cases import write_data_folder

# resnet18 is the smallest torchvision network with batch norm that tests run at 32 px.
ARCH = "resnet18"


def resnet18_state(seed: int = 1) -> dict:
    """A state dict of torchvision's resnet18 (1,000 classes), randomly initialised."""
    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, and no network: a download attempt fails as it would offline."""
    return unreachable_torch_home(tmp_path, monkeypatch)


def cache_imagenet_weights(torch_home: Path, state: dict, monkeypatch) -> None:
    """Put `state` in torch's hub cache as resnet18's ImageNet weights: under a name carrying
    its hash, which resnet18's weights URL is pointed at."""
    cached = save_named_by_hash(state, torch_home / "hub" / "checkpoints", ARCH)
    monkeypatch.setattr(imagenet_weights().value, "url", url_of(cached))


def imagenet_weights() -> torchvision.models.WeightsEnum:
    return torchvision.models.get_model_weights(ARCH).DEFAULT


def plant_payload(torch_home: Path, marker: Path) -> Path:
    """A pickle that would make the folder `marker`, at resnet18's real place in the cache."""
    name = os.path.basename(urlparse(imagenet_weights().url).path)
    checkpoints = torch_home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save({"conv1.weight": MakesFolder(marker)}, checkpoints / name)
    return checkpoints / name


def run_flags(tmp_path, *flags: str) -> list[str]:
    return [*TINY_RUN_FLAGS, "--out-dir", str(tmp_path / "runs"), "--image-size", "32", *flags]


def same(first: dict, second: dict, keys) -> bool:
    """Whether two state dicts hold bitwise equal tensors under `keys`."""
    return all(torch.equal(first[key], second[key]) for key in keys)


def test_torchvision_arch_gets_a_head_for_the_data_classes(train_script):
    args = train_script.parse_args([*TINY_RUN_FLAGS, "--arch", ARCH])
    data = train_script.task.build_data(args)
    model = train_script.task.build_model(train_script.task.model_config(args, data))
    assert isinstance(model, torchvision.models.ResNet)
    assert model.fc.out_features == data.num_classes == 6
    assert model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 6)


@pytest.mark.parametrize(("arch", "head"), [("resnet18", "fc"), ("squeezenet1_1", "classifier.1"),
                                            ("mobilenet_v3_small", "classifier.3")])  # fmt: skip
def test_the_classifier_head_is_found_in_each_family(arch, head):
    model = backbones.build_model({"arch": arch, "num_classes": 7})
    assert backbones.classifier_head(model, 7)[0] == head


def test_an_unknown_arch_names_the_closest(train_script, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_script.parse_args(["--arch", "resnet81"])
    assert stopped.value.code == 2
    assert "closest: resnet18" in capsys.readouterr().err


def test_list_archs_prints_the_own_network_and_torchvisions(train_script, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_script.parse_args(["--list-archs"])
    names = capsys.readouterr().out.split()
    assert stopped.value.code == 0
    assert names[0] == backbones.OWN_ARCH and {"resnet18", "vit_b_16", "convnext_tiny"} <= set(
        names
    )


def test_imagenet_weights_load_from_the_hub_cache_without_network(
    train_script, tmp_path, torch_home, monkeypatch
):
    cached = resnet18_state()
    cache_imagenet_weights(torch_home, cached, monkeypatch)
    flags = run_flags(tmp_path, "--arch", ARCH, "--pretrained", "imagenet", "--max-steps", "1",
                      "--lr", "1e-9")  # fmt: skip
    result = train_script.train(train_script.parse_args(flags))
    trained = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert trained["fc.weight"].shape == (6, 512)  # a new head for the 6 classes
    # One AdamW step moves a weight by about --lr (1e-9): far below this bound, while the
    # weights of another initialisation differ by ~0.03 (the stem's init scale).
    stem = trained["conv1.weight"]
    assert torch.allclose(stem, cached["conv1.weight"], rtol=0, atol=1e-6)


def test_a_pickle_planted_in_the_hub_cache_never_runs(
    train_script, tmp_path, torch_home, monkeypatch, capsys
):
    marker = tmp_path / "payload-ran"
    planted = plant_payload(torch_home, marker)
    flags = run_flags(tmp_path, "--arch", ARCH, "--pretrained", "imagenet", "--max-steps", "1")
    code, _, error = run_script(train_script, "train.py", monkeypatch, capsys, *flags)
    assert code == 2 and not marker.exists()
    assert error.startswith("train.py: error: ") and len(error.strip().splitlines()) == 1
    assert f"{planted} in torch's hub cache is not the file its name promises" in error
    assert error.strip().endswith("delete it so that it is downloaded again")


def test_a_truncated_hub_cache_file_is_one_sentence_saying_delete_it(torch_home, monkeypatch):
    cache_imagenet_weights(torch_home, resnet18_state(), monkeypatch)
    cached = hub_weights.cached_file(imagenet_weights().url)
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    model = backbones.build_model({"arch": ARCH, "num_classes": 3})
    with pytest.raises(UserError) as error:
        backbones.load_pretrained(model, ARCH, "imagenet", ["a", "b", "c"])
    assert str(error.value).startswith(f"{cached} in torch's hub cache is not the file")
    assert "delete it" in str(error.value)


def test_densenet_files_get_torchvisions_current_key_names():
    current = torchvision.models.densenet121(weights=None).state_dict()
    # torchvision's DenseNet files name "denselayer1.norm1.weight" as "denselayer1.norm.1.weight"
    # and predate batch norm's num_batches_tracked.
    old = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value
           for key, value in current.items() if not key.endswith("num_batches_tracked")}  # fmt: skip
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    assert backbones.with_current_keys("densenet121", old).keys() == current.keys()


def test_a_pretrained_file_holding_code_is_refused_in_a_whole_sentence(tmp_path):
    torch.save({"fc.weight": MakesFolder(tmp_path / "payload-ran")}, tmp_path / "weights.pt")
    with pytest.raises(UserError) as error:
        backbones.read_weights_file(str(tmp_path / "weights.pt"))
    assert not (tmp_path / "payload-ran").exists()
    assert str(error.value) == (
        f"--pretrained {tmp_path / 'weights.pt'} could not be read as weights (it holds Python "
        "objects other than tensors, and loading those could run code); give a file written by "
        "torch.save (a state dict, or a checkpoint of this project)"
    )


def test_imagenet_weights_take_their_own_input_format(train_script):
    args = train_script.parse_args([*TINY_RUN_FLAGS, "--arch", ARCH, "--pretrained", "imagenet"])
    data = train_script.task.build_data(args)  # only metadata: nothing is downloaded here
    weights = torchvision.models.get_model_weights(ARCH).DEFAULT.transforms()
    assert data.image_size == weights.crop_size[0] == 224
    assert data.preprocessing["mean"] == list(weights.mean)
    assert data.preprocessing["resize_size"] == weights.resize_size[0]


def test_imagenet_weights_missing_offline_is_one_sentence_before_any_run_folder(
    train_script, tmp_path, torch_home, capsys, monkeypatch
):
    flags = run_flags(tmp_path, "--arch", ARCH, "--pretrained", "imagenet")
    with pytest.raises(UserError) as error:
        train_script.train(train_script.parse_args(flags))
    message = str(error.value)
    assert "not in torch's cache" in message and "resnet18-f37072fd.pth" in message
    assert "download https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert not (tmp_path / "runs").exists()


def test_a_checkpoint_of_other_classes_gives_its_backbone_and_a_new_head(
    train_script, tiny_run, tmp_path, capsys
):
    # The tiny run learned 6 synthetic shapes; fine-tune it on a folder of 2 classes.
    write_data_folder(tmp_path / "data")
    source = tiny_run.run_dir / "checkpoints" / "best.pt"
    flags = run_flags(tmp_path, "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                      "--pretrained", str(source), "--max-steps", "1", "--lr", "1e-9")  # fmt: skip
    result = train_script.train(train_script.parse_args(flags))
    before = torch.load(source, weights_only=True)["model"]
    after = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    head = backbones.head_parameter_names(result.model, 2)
    assert "re-initialised " + ", ".join(sorted(head)) in capsys.readouterr().out
    assert after[sorted(head)[-1]].shape[0] == 2
    weights = [name for name, _ in result.model.named_parameters() if name not in head]
    # One AdamW step at --lr 1e-9 moves a weight by about 1e-9: the checkpoint's backbone.
    assert all(torch.allclose(after[key], before[key], rtol=0, atol=1e-6) for key in weights)


def test_a_plain_state_dict_of_the_same_class_count_keeps_its_head(tmp_path):
    source = resnet18_state()
    torch.save(source, tmp_path / "weights.pt")
    model = backbones.build_model({"arch": ARCH, "num_classes": 1000})
    backbones.load_pretrained(
        model, ARCH, str(tmp_path / "weights.pt"), [str(i) for i in range(1000)]
    )
    assert same(model.state_dict(), source, source)


def test_weights_of_another_arch_are_refused_in_one_sentence(tmp_path):
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pt")
    model = backbones.build_model({"arch": ARCH, "num_classes": 3})
    with pytest.raises(UserError, match="does not fit this --arch") as error:
        backbones.load_pretrained(model, ARCH, str(tmp_path / "r34.pt"), ["a", "b", "c"])
    assert "unexpected layer1.2" in str(error.value)


def test_frozen_backbone_is_bitwise_unchanged_and_its_batch_norm_statistics_stay(
    train_script, tmp_path
):
    torch.save(resnet18_state(), tmp_path / "weights.pt")
    flags = run_flags(tmp_path, "--arch", ARCH, "--pretrained", str(tmp_path / "weights.pt"),
                      "--freeze-backbone", "--epochs", "1")  # fmt: skip
    result = train_script.train(train_script.parse_args(flags))
    saved = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)
    after, before = saved["model"], resnet18_state()
    backbone = [key for key in after if not key.startswith("fc.")]
    assert "layer1.0.bn1.running_mean" in backbone  # the statistics are compared too
    assert same(after, before, backbone)
    # Only the head's two tensors (weight, bias) were ever stepped by the optimizer.
    stepped = saved["optimizer"]["state"]
    assert len(stepped) == 2 and all(state["step"] > 0 for state in stepped.values())


def test_unfreeze_at_epoch_trains_the_backbone_from_that_epoch(train_script, tmp_path):
    torch.save(resnet18_state(), tmp_path / "weights.pt")
    flags = run_flags(tmp_path, "--arch", ARCH, "--pretrained", str(tmp_path / "weights.pt"),
                      "--freeze-backbone", "--unfreeze-at-epoch", "2", "--epochs", "2")  # fmt: skip
    result = train_script.train(train_script.parse_args(flags))
    after = torch.load(result.run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert not torch.equal(after["conv1.weight"], resnet18_state()["conv1.weight"])
    assert all(parameter.requires_grad for parameter in result.model.parameters())


def test_parameter_groups_carry_the_head_and_backbone_learning_rates(train_script):
    args = train_script.parse_args([*TINY_RUN_FLAGS, "--backbone-lr-scale", "0.1",
                                    "--lr", "0.01", "--weight-decay", "0.05"])  # fmt: skip
    data = train_script.task.build_data(args)
    model = train_script.task.build_model(train_script.task.model_config(args, data))
    groups = train_script.task.parameter_groups(model, args)
    optimizer, scheduler = train_script.engine.build_optimization(groups, 10, args)
    head = {id(parameter) for parameter in backbones.classifier_head(model, 6)[1].parameters()}
    factor = scheduler.lr_lambdas[0](0)  # the warm-up's first step, the same for every group
    for group in optimizer.param_groups:
        in_head = {id(parameter) in head for parameter in group["params"]}
        assert len(in_head) <= 1  # no group mixes head and backbone
        expected = 0.01 * (1.0 if in_head == {True} else 0.1) * factor
        assert group["lr"] == pytest.approx(expected, rel=1e-12)
        assert group["weight_decay"] == (0.05 if all(p.ndim >= 2 for p in group["params"]) else 0.0)
    counted = sum(len(group["params"]) for group in optimizer.param_groups)
    assert counted == len(list(model.parameters()))


def test_test_script_feeds_the_checkpoint_the_input_format_it_trained_with(
    train_script, test_script, tmp_path, capsys
):
    torch.save(resnet18_state(), tmp_path / "weights.pt")
    result = train_script.train(
        train_script.parse_args(run_flags(tmp_path, "--arch", ARCH, "--pretrained",
                                          str(tmp_path / "weights.pt"), "--epochs", "1"))
    )  # fmt: skip
    best = result.run_dir / "checkpoints" / "best.pt"
    recorded = torch.load(best, weights_only=True)["preprocessing"]
    assert recorded["image_size"] == 32 and recorded["in_channels"] == 3
    capsys.readouterr()
    assert test_script.main(["--checkpoint", str(best), "--num-workers", "0"]) == 0
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f'"accuracy": {result.best_metric}' in last_line


def test_freezing_then_thawing_under_ddp_equals_one_process(train_script, tmp_path):
    # DDP syncs only the parameters trainable when it wrapped the model: the thaw at epoch 2
    # must wrap it again, or the backbone's gradients would stay per-process (or DDP would
    # wait forever for them).
    flags = [*DDP_FLAGS, "--freeze-backbone", "--unfreeze-at-epoch", "2", "--epochs", "2",
             "--out-dir", str(tmp_path)]  # fmt: skip
    train_script.main([*flags, "--run-name", "single"])
    runs = [("ddp", [*flags, "--batch-size", "8", "--run-name", "ddp"])]
    spec, report = tmp_path / "spec.json", tmp_path / "report.json"
    spec.write_text(json.dumps({"runs": runs, "report": str(report)}))
    launch = torchrun("-m", "tests.distributed_probe", str(spec))
    assert launch.returncode == 0, launch.stderr[-3000:]
    first, second = json.loads(report.read_text())["ddp"]["fingerprints"]
    assert first == second
    assert_same_weights(last_checkpoint(tmp_path, "single"), last_checkpoint(tmp_path, "ddp"))


def test_a_fine_tuning_run_stopped_before_the_thaw_resumes_bitwise(train_script, tmp_path):
    torch.save(resnet18_state(), tmp_path / "weights.pt")
    flags = run_flags(tmp_path, "--arch", ARCH, "--pretrained", str(tmp_path / "weights.pt"),
                      "--freeze-backbone", "--unfreeze-at-epoch", "2", "--epochs", "2",
                      "--backbone-lr-scale", "0.5")  # fmt: skip
    assert train_script.main([*flags, "--run-name", "straight"]) == 0
    # 6 steps an epoch: stopped at step 4, in the frozen epoch; the thaw happens after resuming.
    assert train_script.main([*flags, "--run-name", "stopped", "--max-steps", "4"]) == 0
    stopped = tmp_path / "runs" / "stopped" / "checkpoints" / "last.pt"
    assert train_script.main(["--resume", str(stopped), "--max-steps", "0"]) == 0
    straight = torch.load(
        tmp_path / "runs" / "straight" / "checkpoints" / "last.pt", weights_only=True
    )
    resumed = torch.load(stopped, weights_only=True)
    assert resumed["state"] == straight["state"]
    assert same(resumed["model"], straight["model"], straight["model"])
