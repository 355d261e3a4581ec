"""What the image tasks' task_cases share: predict.py inputs of several sizes."""

from pathlib import Path

from PIL import Image


def write_prediction_inputs(folder: Path) -> int:
    """predict.py inputs in `folder`, of several sizes (batched in groups); returns how many."""
    sizes = ((40, 36), (48, 32), (32, 32))
    folder.mkdir(parents=True, exist_ok=True)
    for number, size in enumerate(sizes):
        Image.linear_gradient("L").rotate(30 * number).resize(size).save(folder / f"{number}.png")
    return len(sizes)
