"""predict.py on images, for any image task: finding the inputs, loading them in groups, and its exit codes
(0: all predicted, 1: some input failed and the rest went on, 2: a bad flag or model file)."""

import subprocess
import sys

import pytest
import torch

from {{ cookiecutter.package_name }}.engine.cli import run_cli
from {{ cookiecutter.package_name }}.engine.inference import CollatePredictions
from {{ cookiecutter.package_name }}.errors import UserError
from {{ cookiecutter.package_name }}.image_files import IMAGES
from {{ cookiecutter.package_name }}.input_files import InputFile, find_inputs
from {{ cookiecutter.package_name }}.output_files import check_outputs

from ..helpers import PROJECT_ROOT, load_script, write_png
from ..task import task_cases


@pytest.fixture(scope="module")
def predict_script():
    return load_script("predict")


def run_predict(predict_script, monkeypatch, tmp_path, *argv: str) -> int:
    """predict.py's exit code for `argv` (plus the task's own required flags), in-process."""
    flags = [*argv, "--device", "cpu", "--num-workers", "0", *task_cases.predict_flags(tmp_path)]
    monkeypatch.setattr(sys, "argv", ["predict.py", *flags])
    return run_cli(predict_script.main, prog="predict.py")


def test_find_inputs_takes_files_folders_and_globs_once_each(tmp_path):
    for name in ("a/1.png", "a/deep/2.jpg", "a/.hidden/3.png", "a/notes.txt", "b/4.png"):
        write_png(tmp_path / name) if name.endswith(("png", "jpg")) else (tmp_path / name).touch()
    found = find_inputs(
        [str(tmp_path / "a"), str(tmp_path / "b" / "*.png"), str(tmp_path / "a")], IMAGES
    )
    assert [image.name for image in found] == ["1.png", "deep/2.jpg", "4.png"]


def test_an_output_under_another_name_of_an_input_file_is_refused(tmp_path):
    # A hard link stands in for a case-insensitive disk, where out/a.png would replace A.PNG:
    # two names of one file, which comparing paths cannot see.
    write_png(tmp_path / "in" / "A.PNG")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").hardlink_to(tmp_path / "in" / "A.PNG")
    inputs = [InputFile(tmp_path / "in" / "A.PNG", "A.PNG")]
    with pytest.raises(UserError) as refused:
        check_outputs(tmp_path / "out", inputs, lambda found: ["a.png"])
    assert str(refused.value).startswith(
        f"--output-dir {tmp_path / 'out'} would write {tmp_path / 'out' / 'a.png'} over the "
        f"input {tmp_path / 'in' / 'A.PNG'} (the two names are one file); "
    )
    check_outputs(tmp_path / "elsewhere", inputs, lambda found: ["a.png"])  # no clash: fine


def test_find_inputs_refuses_nothing_found_and_clashing_names(tmp_path):
    with pytest.raises(UserError) as refused:
        find_inputs([str(tmp_path / "missing"), str(tmp_path / "*.png")], IMAGES)
    assert str(refused.value).startswith(
        f"no image found in {tmp_path / 'missing'}, {tmp_path / '*.png'} "
        f"({tmp_path / 'missing'}: no such file or folder); "
    )
    write_png(tmp_path / "x" / "same.png")
    write_png(tmp_path / "y" / "same.png")
    with pytest.raises(UserError, match="would both be called same.png"):
        find_inputs([str(tmp_path / "x" / "same.png"), str(tmp_path / "y" / "same.png")], IMAGES)


def test_a_glob_through_symlink_loops_ends_and_finds_each_image_once(tmp_path):
    # Two links back to their own folder: a search that follows them has 2**40 paths to try.
    write_png(tmp_path / "loopdir" / "a.png")
    write_png(tmp_path / "loopdir" / "deep" / "b.png")
    (tmp_path / "loopdir" / "self").symlink_to(".")
    (tmp_path / "loopdir" / "again").symlink_to(".")
    code = (
        "import sys\n"
        "from {{ cookiecutter.package_name }}.image_files import IMAGES\n"
        "from {{ cookiecutter.package_name }}.input_files import find_inputs\n"
        "print(*(image.name for image in find_inputs([sys.argv[1]], IMAGES)))\n"
    )
    pattern = str(tmp_path / "loopdir" / "**" / "*.png")
    finished = subprocess.run(
        [sys.executable, "-c", code, pattern], cwd=PROJECT_ROOT, capture_output=True, text=True,
        timeout=60,  # the bug this guards against is a search that never ends
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.split() == ["a.png", "b.png"]


def test_globs_pass_over_hidden_names_unless_the_pattern_names_them(tmp_path):
    for name in ("a.png", ".thumbs/a.png", "sub/.b.png", ".kept/c.png"):
        write_png(tmp_path / name)
    found = find_inputs([str(tmp_path / "**" / "*.png"), str(tmp_path / ".kept" / "*.png")], IMAGES)
    assert [image.path.relative_to(tmp_path).as_posix() for image in found] == [
        "a.png",
        ".kept/c.png",
    ]


def test_folders_and_globs_leave_out_the_skipped_output_folder(tmp_path):
    write_png(tmp_path / "photos" / "a.png")
    write_png(tmp_path / "photos" / "restored" / "a.png")  # an earlier run's output
    skip = [tmp_path / "photos" / "." / "restored"]  # spelled otherwise, the same folder
    for pattern in (tmp_path / "photos", tmp_path / "photos" / "**" / "*.png"):
        assert [image.name for image in find_inputs([str(pattern)], IMAGES, skip)] == ["a.png"]


def test_collate_groups_images_by_size_and_keeps_failures_in_place():
    samples = [(0, torch.zeros(3, 8, 8), None), (1, None, "cannot read"),
               (2, torch.ones(3, 8, 12), None), (3, torch.ones(3, 8, 8), None)]  # fmt: skip
    stand_ins = [f"image{index}" for index in range(4)]  # InputFiles, as far as collate cares
    batch = CollatePredictions(stand_ins)(samples)
    assert [group.indices for group in batch.groups] == [[0, 3], [2]]
    assert batch.groups[0].batch.shape == (2, 3, 8, 8)
    assert batch.failures == [(1, "image1", "cannot read")]


def test_an_unreadable_file_fails_alone_with_exit_code_1(
    predict_script, tiny_run, monkeypatch, tmp_path, capsys
):
    write_png(tmp_path / "inputs" / "good.png")
    (tmp_path / "inputs" / "broken.png").write_bytes(b"not an image")
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    assert run_predict(predict_script, monkeypatch, tmp_path, "--checkpoint", best,
                       str(tmp_path / "inputs")) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "1 failed" in err
    write_png(tmp_path / "only_good" / "good.png")
    assert run_predict(predict_script, monkeypatch, tmp_path, "--checkpoint", best,
                       str(tmp_path / "only_good")) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no_input", "no image found in"),
        ("bad_checkpoint", "is not a readable checkpoint"),
        ("missing_checkpoint", "does not exist"),
    ],
)
def test_bad_inputs_end_with_one_sentence_and_exit_code_2(
    predict_script, tiny_run, monkeypatch, tmp_path, capsys, case, message
):
    best = str(tiny_run.run_dir / "checkpoints" / "best.pt")
    write_png(tmp_path / "inputs" / "good.png")
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    argv = {
        "no_input": ["--checkpoint", best, str(tmp_path / "nothing_here")],
        "bad_checkpoint": ["--checkpoint", str(tmp_path / "broken.pt"), str(tmp_path / "inputs")],
        "missing_checkpoint": ["--checkpoint", str(tmp_path / "no.pt"), str(tmp_path / "inputs")],
    }[case]
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    assert run_predict(predict_script, monkeypatch, tmp_path, *argv) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("predict.py: error: ") and message in error
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == before


def test_a_reader_that_leaves_early_ends_the_records_without_a_traceback():
    # `python predict.py ... | head -1`: the pipe closes while records are still being written.
    code = (
        "import sys\n"
        "from {{ cookiecutter.package_name }}.engine.cli import run_cli\n"
        "def main(argv):\n"
        "    for number in range(200_000):\n"
        "        print(number)\n"
        "sys.exit(run_cli(main, prog='predict.py'))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout.readline() == b"0\n"
    child.stdout.close()  # far more than a pipe holds is still to come
    assert child.wait(timeout=120) == 1
    assert child.stderr.read() == b""
