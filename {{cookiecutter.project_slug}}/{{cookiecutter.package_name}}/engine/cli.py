"""argparse types that reject impossible numbers with a message naming the allowed range,
a parser whose errors say how to write an on/off flag, and a help formatter that states each
default once."""

import argparse
import re
from pathlib import Path


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser; a value given to an on/off flag gets an error that names the fix."""

    def error(self, message: str):
        valued_switch = re.fullmatch(r"argument (\S+): ignored explicit argument (.+)", message)
        if valued_switch:
            flags, value = valued_switch.groups()
            spellings = " or ".join(flags.split("/"))
            message = f"{flags.split('/')[0]} takes no value (got {value}); write just {spellings}"
        super().error(message)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" to a flag's help, unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # e.g. "name of the run folder (default: a timestamp)" needs no "(default: None)" too.
        if action.help and "default" in action.help:
            return action.help
        return super()._get_help_string(action)


def _number(cast, text: str, accept, expected: str):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected {expected}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"{text} is out of range; expected {expected}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (a batch size, a number of epochs)."""
    return _number(int, text, lambda value: value >= 1, "an integer of 1 or more")


def non_negative_int(text: str) -> int:
    """An integer >= 0 (0 often meaning 'none' or 'no limit')."""
    return _number(int, text, lambda value: value >= 0, "an integer of 0 or more")


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate)."""
    return _number(float, text, lambda value: 0 < value < float("inf"), "a number above 0")


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a weight decay)."""
    return _number(float, text, lambda value: 0 <= value < float("inf"), "a number of 0 or more")


def probability(text: str) -> float:
    """A number in [0, 1) (label smoothing, dropout)."""
    return _number(float, text, lambda value: 0 <= value < 1, "a number in [0, 1)")


def image_size(text: str) -> int:
    """An image side of at least 8 px (the model halves it twice and normalises what is left)."""
    return _number(int, text, lambda value: value >= 8, "an integer of 8 or more")


def folder_name(text: str) -> str:
    """A plain folder name (a run name): no path separators, not '.' or '..'."""
    if Path(text).name != text or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"{text!r} is a path; give a plain folder name")
    return text
