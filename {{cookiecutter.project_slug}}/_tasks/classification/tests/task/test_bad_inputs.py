"""Every bad input a user can give: one sentence on stderr, exit code 2, nothing on disk changed."""

import pytest
import torch
import torchvision

from ..bad_input_cases import SHARED_CASES
from .task_cases import write_class_folders

CLASSES = {"train": ["cat", "dog"], "val": ["cat", "dog"]}


def missing_data_dir(tmp_path, run):
    return ["--dataset", "folder", "--data-dir", str(tmp_path / "nope")], "does not exist"


def val_classes_differ(tmp_path, run):
    write_class_folders(tmp_path / "data", {"train": ["cat", "dog"], "val": ["cat", "cow"]})
    return ["--dataset", "folder", "--data-dir", str(tmp_path / "data")], "differ"


def unreadable_image(tmp_path, run):
    write_class_folders(tmp_path / "data", CLASSES)
    (tmp_path / "data" / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    flags = ["--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--batch-size", "2"]
    return flags, "cannot read the image " + str(tmp_path / "data" / "train" / "cat" / "broken.jpg")


def unreadable_image_in_a_worker(tmp_path, run):
    flags, message = unreadable_image(tmp_path, run)
    return [*flags, "--num-workers", "1"], message


def one_class(tmp_path, run):
    write_class_folders(tmp_path / "data", {"train": ["cat"], "val": ["cat"]})
    flags = ["--dataset", "folder", "--data-dir", str(tmp_path / "data")]
    return flags, "holds one class folder (cat); a classifier needs at least two"


def hflip_changed_on_resume(tmp_path, run):
    flags = ["--resume", str(run / "checkpoints" / "last.pt"), "--epochs", "3", "--no-hflip"]
    return flags, "--no-hflip differs from the run being resumed (it had --hflip on)"


def other_number_of_classes(tmp_path, run):
    write_class_folders(tmp_path / "data", {"train": ["a", "b", "c"], "val": ["a", "b", "c"]})
    last = run / "checkpoints" / "last.pt"
    flags = ["--resume", str(last), "--epochs", "3", "--dataset", "folder"]
    return [*flags, "--data-dir", str(tmp_path / "data")], "--dataset folder differs"


def pretrained_file_missing(tmp_path, run):
    missing = tmp_path / "nope.pt"
    return ["--pretrained", str(missing)], f"--pretrained {missing} is neither none, imagenet nor"


def pretrained_file_not_weights(tmp_path, run):
    (tmp_path / "notes.pt").write_text("not a torch file")
    return ["--pretrained", str(tmp_path / "notes.pt")], "could not be read as weights"


def pretrained_weights_of_another_arch(tmp_path, run):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pt")
    return ["--pretrained", str(tmp_path / "r18.pt")], "does not fit this --arch and its flags"


def imagenet_weights_for_the_own_network(tmp_path, run):
    return ["--pretrained", "imagenet"], "has no ImageNet weights); add e.g. --arch resnet18"


def image_size_too_small_for_the_arch(tmp_path, run):
    return ["--arch", "inception_v3"], "--arch inception_v3 needs input images of at least 75 px"


def unfreeze_without_freeze(tmp_path, run):
    return ["--unfreeze-at-epoch", "2"], "--unfreeze-at-epoch needs --freeze-backbone"


CASES = [*SHARED_CASES, missing_data_dir, val_classes_differ, unreadable_image,
         unreadable_image_in_a_worker, one_class, hflip_changed_on_resume, other_number_of_classes,
         pretrained_file_missing, pretrained_file_not_weights,
         pretrained_weights_of_another_arch, imagenet_weights_for_the_own_network,
         image_size_too_small_for_the_arch, unfreeze_without_freeze]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.__name__ for case in CASES])
def test_bad_input_is_one_sentence_exit_2_and_changes_nothing(case, bad_input_run):
    bad_input_run(case)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mixup", "-0.2"], "argument --mixup: -0.2 is out of range; expected a number of 0"),
        (["--cutmix", "-1"], "argument --cutmix: -1 is out of range; expected a number of 0"),
        (["--cutmix", "inf"], "argument --cutmix: inf is out of range"),
    ],
)
def test_a_negative_or_infinite_mix_alpha_exits_2_with_one_sentence(
    train_script, capsys, flags, message
):
    with pytest.raises(SystemExit) as exit_info:
        train_script.parse_args(flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
