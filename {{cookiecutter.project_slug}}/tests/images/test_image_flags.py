"""The image tasks' --image-size: one sentence and exit 2 from train.py and test.py alike."""

import pytest


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--image-size", "4"], "argument --image-size: 4 is out of range"),
        (
            ["--image-size", "100000"],
            "argument --image-size: 100000 is out of range; expected an integer from 8 to 4096",
        ),
    ],
)
def test_an_impossible_image_size_exits_2_with_the_reason(train_script, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train_script.parse_args(flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_test_py_refuses_an_impossible_image_size_too(test_script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        test_script.parse_args(["--checkpoint", "last.pt", "--image-size", "100000"])
    assert exit_info.value.code == 2
    assert "argument --image-size: 100000 is out of range" in capsys.readouterr().err
