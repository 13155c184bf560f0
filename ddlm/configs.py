"""What every config dataclass shares: a help text per field, and strict loading from JSON.

A field is declared with `option(default, "what it means")`. The text lives in the field's
metadata, where `ddlm CMD --help` reads it, so the comment a reader sees in the source and
the help a user sees in the terminal are one string.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, help: str) -> Any:
    """A dataclass field with a default and a one-line help text (shown by `--help`)."""
    return dataclasses.field(default=default, metadata={"help": help})


def field_help(f: dataclasses.Field) -> str:
    """The help text of a dataclass field ('' when it has none)."""
    return f.metadata.get("help", "")


def from_dict(cls, d: dict, retired: tuple[str, ...] = ()):
    """Build `cls` from a dict, naming any unknown field; `retired` fields are dropped silently
    (fields older versions wrote into their JSON files and that no longer mean anything)."""
    known = {f.name for f in dataclasses.fields(cls)}
    d = {k: v for k, v in d.items() if k not in retired}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} fields {unknown}; known fields are {sorted(known)}"
        )
    return cls(**d)
