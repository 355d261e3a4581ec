"""How images become a model's inputs, as checkpoints and model cards record it
("preprocessing": input size, resize, channels, normalisation), and what a recorded one may hold:
a card edited by hand or damaged is refused before any image is read."""

import math
import reprlib

# The largest input side a card may name: a larger one is a damaged card, not a model (an
# 8192 px square batch of one already takes 800 MB before the network's first layer).
MAX_IMAGE_SIZE = 8192


def preprocessing_problem(form: dict) -> str | None:
    """What is wrong with a card's preprocessing (input size, channels, normalisation), or None."""
    if form is None:
        return "it records no preprocessing (its checkpoint was written before checkpoints "\
            "recorded how images are fed; evaluate that with test.py, or train a new run)"  # fmt: skip
    if not isinstance(form, dict):
        return f"preprocessing is {reprlib.repr(form)}, not a dict"
    size = form.get("image_size")
    if not is_count(size, 1, MAX_IMAGE_SIZE):
        return f"preprocessing.image_size is {reprlib.repr(size)}, not a whole number of pixels "\
            f"from 1 to {MAX_IMAGE_SIZE}"  # fmt: skip
    resize = form.get("resize_size")
    if resize is not None and not is_count(resize, size, MAX_IMAGE_SIZE):
        return f"preprocessing.resize_size is {reprlib.repr(resize)}, not a whole number "\
            f"from image_size ({size}) to {MAX_IMAGE_SIZE}"  # fmt: skip
    if form.get("in_channels") not in (1, 3) or isinstance(form.get("in_channels"), bool):
        return f"preprocessing.in_channels is {reprlib.repr(form.get('in_channels'))}, not 1 or 3"
    for key, smallest in (("mean", -math.inf), ("std", 0.0)):
        values = form.get(key)
        if values is not None and not (
            isinstance(values, list)
            and len(values) in (1, 3)
            and all(is_number(value) and value > smallest for value in values)
        ):
            above = "" if smallest == -math.inf else " above 0"
            shown = reprlib.repr(values)
            return f"preprocessing.{key} is {shown}, not 1 or 3 finite numbers{above}"
    return None


def is_number(value: object) -> bool:
    """A finite int or float (JSON's numbers; not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: object, smallest: int, largest: int) -> bool:
    """An int (not a bool) from `smallest` to `largest`."""
    return isinstance(value, int) and not isinstance(value, bool) and smallest <= value <= largest
