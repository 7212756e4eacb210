"""Looking presets up by name (scanners, tracers), with one message for an unknown name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from ...errors import UserError

Preset = TypeVar("Preset")


def named_preset(value: str | Preset, table: Mapping[str, Preset], kind: str) -> Preset:
    """The preset of ``table`` named ``value``; a preset object of the table's type passes through.

    Raises:
        UserError: ``value`` names no preset; the message names the ``kind`` and lists the choices.
    """
    if isinstance(value, type(next(iter(table.values())))):
        return value
    try:
        return table[value]
    except (KeyError, TypeError):
        raise UserError(f"unknown {kind} {value!r}; choose one of {', '.join(table)}") from None
