"""What every config dataclass shares: a help text per field, strict loading from JSON, and
the command-line options built from the fields.

A field is declared with `option(default, "what it means")` (plus, where it has them, the
accepted `choices` and short `aliases`). The text lives in the field's metadata, where
`add_options` reads it, so the comment a reader sees in the source and the help a user sees
in `ddlm CMD --help` are one string.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def option(
    default: Any, help: str, choices: tuple | None = None, aliases: tuple[str, ...] = ()
) -> Any:
    """A dataclass field with a default and a one-line help text (shown by `--help`)."""
    meta = {"help": help, "choices": choices, "aliases": aliases}
    return dataclasses.field(default=default, metadata=meta)


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


def differences(stored, asked: dict) -> dict[str, tuple]:
    """The fields of `asked` whose values differ from those of the config `stored`, each as
    (asked, stored): the one "same config?" rule (the loader, a resumed run, the command line)."""
    return {k: (v, getattr(stored, k)) for k, v in asked.items() if getattr(stored, k) != v}


# ---- fields as command-line options ---------------------------------------------------


def add_options(parser: argparse.ArgumentParser, cls, title: str) -> None:
    """One `--field-name` option per field of the dataclass `cls`, in a group called `title`.

    Options not given on the command line stay out of the parsed namespace (see `overrides`),
    so a config built from them keeps its own defaults.
    """
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        group.add_argument(
            f"--{f.name.replace('_', '-')}",
            *f.metadata.get("aliases", ()),
            dest=f"{cls.__name__}.{f.name}",
            type=_parser_for(hints[f.name]),
            default=argparse.SUPPRESS,
            choices=choices,
            metavar=None if choices else f.name.upper(),
            help=f"{field_help(f)} (default: {f.default!r})".replace("%", "%%"),
        )


def overrides(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` that were given on the command line, as a dict."""
    prefix = f"{cls.__name__}."
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _parser_for(hint):
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _optional(_parser_for(inner))
    return _parse_bool if hint is bool else hint
