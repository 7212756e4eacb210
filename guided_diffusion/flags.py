"""Command-line flags: typed from their defaults, YAML presets, and one error rule for every script.

A script builds a :class:`FlagParser`, adds its flags with
:func:`add_dict_to_argparser` and reads them with :func:`parse_args_with_config`.
Every mistake in the flags (an unknown flag, a value of the wrong type, a bad
preset) raises :class:`~guided_diffusion.errors.UserError`, which
``dist_util.run_main`` turns into one line on stderr and exit status 1, the
status of every other user error.

Presets are the YAML files of the repository's ``configs/`` folder; an
installed package carries them as package data (``guided_diffusion/configs/``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from .errors import UserError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

#: The presets' folder in a source checkout (and an editable install): ``configs/`` beside the package.
SOURCE_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


#: Every negative number Python's ``float`` reads (-1, -.5, -1e-4, -2.5E+3, -inf, -nan): a value, never a flag.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


class FlagParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UserError` instead of exiting with status 2.

    ``--help`` still prints and exits with status 0. A negative number in any
    notation is a flag's value (``--lr -1e-4``): plain argparse takes only
    ``-1`` and ``-1.5`` for numbers and reads ``-1e-4`` as an unknown flag.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # argparse's own test for "a negative number, not an option" (the same attribute since Python 3.2).
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def str2bool(value: str | bool) -> bool:
    """True/False, 1/0, yes/no, t/f, y/n (any case) -> bool."""
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in ("true", "t", "yes", "y", "1"):
        return True
    if lowered in ("false", "f", "no", "n", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (True/False, 1/0, yes/no), got {value!r}")


def add_dict_to_argparser(parser: argparse.ArgumentParser, default_dict: dict) -> None:
    """Add ``--key`` for every entry, typed by its default (booleans parsed with :func:`str2bool`)."""
    for key, value in default_dict.items():
        value_type = type(value) if value is not None else str
        if isinstance(value, bool):
            value_type = str2bool
        parser.add_argument(f"--{key}", default=value, type=value_type)


def args_to_dict(args: argparse.Namespace, keys: Iterable[str]) -> dict:
    """The entries of ``args`` named by ``keys``."""
    return {k: getattr(args, k) for k in keys}


def preset_names() -> list[str]:
    """Names of the shipped presets (``paper``, ``tiny``, ...), sorted."""
    folder = _preset_folder()
    entries = folder.iterdir() if folder is not None else ()
    return sorted(entry.name[: -len(".yaml")] for entry in entries if entry.name.endswith(".yaml"))


def _preset_folder() -> Traversable | None:
    """The presets' folder: the installed package data, else the source checkout's ``configs/``."""
    for folder in (resources.files("guided_diffusion") / "configs", SOURCE_CONFIGS):
        if folder.is_dir():
            return folder
    return None


def load_config(path: str | Path) -> dict:
    """Read a YAML preset (a flat mapping of flag names to values), given as a file path or a preset name."""
    import yaml

    source = Path(path)
    if not source.is_file():
        if str(path) not in preset_names():
            raise UserError(f"--config {path}: no such file or preset (give a YAML path or one of "
                            f"{', '.join(preset_names()) or 'no presets: the package was installed without them'})")
        source = _preset_folder() / f"{path}.yaml"
    try:
        preset = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"--config {path}: not valid YAML ({err})")
    if not isinstance(preset, dict):
        raise UserError(f"--config {path}: expected a mapping of flag names to values")
    return preset


def parse_args_with_config(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with an optional ``--config`` preset; explicit flags override the preset.

    The preset's values become the parser's defaults, so they are type-checked
    like flags. A preset that cannot be read, names a key that is not a flag of
    ``parser`` or gives a value of the wrong type raises :class:`UserError`.
    """
    if not any(action.dest == "config" for action in parser._actions):
        parser.add_argument("--config", default="", help="YAML preset of flags (path or preset name, e.g. paper)")
    known, _ = parser.parse_known_args(argv)
    if known.config:
        preset = load_config(known.config)
        by_dest = {action.dest: action for action in parser._actions}
        unknown = sorted(set(preset) - set(by_dest))
        if unknown:
            raise UserError(f"--config {known.config}: unknown flags {', '.join(unknown)}")
        for key, value in preset.items():
            action = by_dest[key]
            try:
                parser.set_defaults(**{key: action.type(str(value)) if action.type else value})
            except (argparse.ArgumentTypeError, ValueError) as err:
                raise UserError(f"--config {known.config}: flag {key}: {err}")
    return parser.parse_args(argv)
