"""Config files: `--config FILE` (YAML or TOML) sets the flags' defaults, the command line
overrides them; each run folder gets its resolved flags back as config.yaml, which --config
replays."""

import argparse
import difflib
import reprlib
import sys
import textwrap
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import yaml

from ..errors import UserError
from .cli import parse_stored_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # the backport, a dependency on Python 3.10 only
    import tomli as tomllib

CONFIG_FILE = "config.yaml"  # the name in each run folder
YAML_SUFFIXES, TOML_SUFFIXES = (".yaml", ".yml"), (".toml",)
# A file of flags is a few kilobytes; the cap stops a huge file before it fills the memory.
MAX_CONFIG_MB = 1
# Flags a file may not set: a resumed run's flags come from its checkpoint, files do not nest,
# run_cli reads --debug from the command line before any file is read, and a smoke test is a
# check one asks for, not a setting a file left on turns every run into.
COMMAND_LINE_ONLY = frozenset({"config", "resume", "debug", "smoke_test"})
# Not flags, and never saved with them: the checkpoint a resume read once (resume.py's
# ResumedCheckpoint), handed on with the args to the stages that need it.
NOT_SAVED = frozenset({"resumed"})
# What config.yaml leaves out besides those: a replay gets a new run folder (the old name is
# taken), and the input format a resumed checkpoint recorded, like --resume auto's finding, is
# no flag.
NOT_REPLAYED = COMMAND_LINE_ONLY | NOT_SAVED | {"run_name", "recorded", "auto_start"}


def parse_args_with_config(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    """Parse argv; with --config FILE, the file's values become defaults the flags given override.

    The parser's --config has the default argparse.SUPPRESS, so the parsed flags (args.json,
    checkpoints) hold the values, never the file's name: a replay records the same flags.
    """
    args = parser.parse_args(argv)
    path = vars(args).pop("config", None)
    if path is None:
        return args
    resume = getattr(args, "resume", None)
    if resume is not None and str(resume) != "auto":
        raise UserError(
            "--config and --resume do not go together: a resumed run takes its flags from its "
            "checkpoint; drop --config (with --resume auto it may stay, for a run it starts)"
        )
    values = read_config(parser, path)
    parser.set_defaults(**values)
    # --resume auto may find a run to continue: its flags win, and a file value that differs
    # from the run's is refused as a flag would be (runs.parse_resumed_args).
    parser.file_values, parser.file_path = values, path
    args = parser.parse_args(argv)
    del args.config
    return args


def read_config(parser: argparse.ArgumentParser, path: Path) -> dict[str, object]:
    """The flag values a config file sets, by dest, each checked as the command line would."""
    flags = [action for action in parser._actions if action.option_strings]
    # Flags that hold no value (--help, --list-archs: they act and exit) are command-line only.
    actions = {action.dest: action for action in flags if action.default is not argparse.SUPPRESS}
    command_line_only = COMMAND_LINE_ONLY | {action.dest for action in flags} - actions.keys()
    values: dict[str, object] = {}
    for key, value in load_mapping(path).items():
        dest = str(key).replace("-", "_")
        if dest in command_line_only:
            raise UserError(
                f"config file {path} sets {key}, which only the command line may give; "
                "remove it from the file"
            )
        if dest not in actions or not isinstance(key, str):
            raise UserError(
                f"config file {path} has an unknown key {short_repr(key)}; {hint(key, actions)}"
            )
        if dest in values:
            raise UserError(f"config file {path} sets {dest} twice (as _ and as -); keep one")
        values[dest] = file_value(actions[dest], value, path)
    return values


def hint(key: object, actions: Mapping[str, argparse.Action]) -> str:
    """What an unknown key may have meant: the flag its name is close to, if one is."""
    dest = str(key).replace("-", "_")
    closest = difflib.get_close_matches(dest, actions, n=1) if isinstance(key, str) else []
    if not closest:
        return "no flag has that name (see --help for the flags)"
    return f"the closest flag is {closest[0]!r} (--{closest[0].replace('_', '-')}; see --help)"


def load_mapping(path: Path) -> Mapping:
    """A YAML or TOML file's top-level mapping (empty for an empty YAML file)."""
    suffix = path.suffix.lower()
    if suffix not in YAML_SUFFIXES + TOML_SUFFIXES:
        raise UserError(
            f"config file {path} is neither YAML (.yaml, .yml) nor TOML (.toml); "
            "give --config a file with one of those suffixes"
        )
    text = read_text(path)
    try:
        data = tomllib.loads(text) if suffix in TOML_SUFFIXES else yaml.load(text, FlagFileLoader)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"config file {path} is not valid TOML ({error}); fix it") from None
    except RefusedYaml as error:
        raise UserError(f"config file {path} {error}") from None
    except yaml.YAMLError as error:
        raise UserError(
            f"config file {path} is not valid YAML ({yaml_problem(error)}); fix it"
        ) from None
    except RecursionError:
        raise UserError(
            f"config file {path} nests lists or mappings too deeply to read; a flag takes one "
            "value or a list of values"
        ) from None
    except ValueError as error:  # a number of thousands of digits, a date like 2024-02-30
        reason = textwrap.shorten(str(error).split(";")[0], 100, placeholder=" ...")
        raise UserError(
            f"config file {path} has a value that cannot be read ({reason}); fix it"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"config file {path} holds a {type(data).__name__}, not a mapping of flags to "
            "values; write one `name: value` line per flag"
        )
    return data


def read_text(path: Path) -> str:
    """The file's text, read no further than MAX_CONFIG_MB (a device or a pipe has no size)."""
    limit = MAX_CONFIG_MB * 1024 * 1024
    try:
        with path.open("rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        raise UserError(
            f"config file {path} does not exist; check the path after --config"
        ) from None
    except OSError as error:
        raise UserError(
            f"cannot read the config file {path} ({error.strerror}); fix or replace it"
        ) from None
    if len(data) > limit:
        raise UserError(
            f"config file {path} is larger than {MAX_CONFIG_MB} MB, far more than flags take; "
            "give --config a file of flags"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(
            f"cannot read the config file {path} (not UTF-8 text); fix or replace it"
        ) from None


class RefusedYaml(yaml.YAMLError):
    """YAML that FlagFileLoader refuses: its text completes "config file <path> ..."."""


class FlagFileLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and without a key given twice.

    An alias (`*name`) repeats an anchored value: a few lines of aliases of aliases stand for
    billions of values (the "billion laughs"), and flags never need one. A key given twice is
    an error in YAML itself, which PyYAML lets pass, keeping the last value.
    """

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise RefusedYaml(
                f"uses the YAML alias {short_repr('*' + event.anchor)} (line "
                f"{event.start_mark.line + 1}), which config files do not take; write the "
                "value out"
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:`, whose keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # a list as a key: PyYAML refuses it below
                continue
            line = key_node.start_mark.line + 1
            if key in first_lines:
                raise RefusedYaml(
                    f"sets {short_repr(key)} twice (lines {first_lines[key]} and {line}); keep one"
                )
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's several-line error as one clause: the problem and its line."""
    mark, problem = getattr(error, "problem_mark", None), getattr(error, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(error).split())
    return f"line {mark.line + 1}: {problem}"


def file_value(action: argparse.Action, value: object, path: Path) -> object:
    """`value` from the file as the flag takes it, or a UserError with the flag's own reason."""
    flag = action.option_strings[0]
    refuse = f"config file {path} sets {action.dest} to {short_repr(value)}, which {flag} refuses"
    if value is None:
        if action.default is None:  # a flag that is unset by default (e.g. --run-name)
            return None
        raise UserError(f"{refuse}: it needs a value; give one, or remove the key")
    if action.nargs == 0:  # an on/off flag (store_true, --x/--no-x)
        if not isinstance(value, bool):
            raise UserError(f"{refuse}: it is on or off; write true or false")
        return value
    if action.nargs in (None, "?"):
        if isinstance(value, (bool, list, dict)):
            raise UserError(f"{refuse}: it takes one value, like its command line form")
        return checked(action, value, refuse)
    if not isinstance(value, list):  # a flag of several values (nargs): a list of them
        raise UserError(f"{refuse}: it takes a list of values")
    return [checked(action, item, refuse) for item in value]


def checked(action: argparse.Action, value: object, refuse: str) -> object:
    """One value through the flag's type and choices, as text like the command line's."""
    try:
        return parse_stored_value(action, value if action.type else str(value))
    except argparse.ArgumentTypeError as error:
        # The flag's reason quotes the value whole: a long one is shortened, as in `refuse`.
        reason = str(error).replace(repr(str(value)), short_repr(str(value)))
        raise UserError(
            f"{refuse} ({reason}); fix the file or give {action.option_strings[0]}"
        ) from None


# Values quoted in an error: a few dozen characters, a few items, however long the value.
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 4, 4


def short_repr(value: object) -> str:
    """`value`'s repr, cut short: an error sentence quotes a value, not a whole file."""
    return _SHORT.repr(value)


def config_text(args: argparse.Namespace) -> str:
    """The run's resolved flags as config.yaml: `train.py --config` with it runs the run again."""
    flags = {key: plain(value) for key, value in vars(args).items() if key not in NOT_REPLAYED}
    header = (
        "# The resolved flags of this run: python train.py --config <this file> runs it again\n"
        "# (in a new run folder; flags given on the command line override these).\n"
    )
    return header + yaml.safe_dump(flags, sort_keys=True, default_flow_style=False)


def plain(value: object) -> object:
    """A value as YAML's safe types: a path as text, a tuple as a list."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    return value
