"""Command-line flags from the settings: one flag per setting, its env var and default in the help.

``cli`` wires commands; this module turns settings into flags and flags back into settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from stream.config import SPECS, Settings, load_settings
from stream.errors import ConfigError
from stream.spec import GROUPS


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except on settings, whose help already names env var and default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.dest.startswith("setting_") or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def unechoed(spec: Any) -> Any:
    """A secret flag's parser whose error never repeats the value (argparse's own message would)."""
    def parse(text: str) -> Any:
        try:
            return spec.parse(text)
        except (ValueError, ConfigError):
            msg = f"invalid value (it is secret and not shown): expected {spec.metavar or 'a value'}"
            raise argparse.ArgumentTypeError(msg) from None  # the cause would quote the value

    return parse


def explained(spec: Any) -> Any:
    """A flag's parser whose error is the parser's own sentence (argparse says only "invalid <name> value")."""
    def parse(text: str) -> Any:
        try:
            return spec.parse(text)
        except (ValueError, ConfigError) as exc:
            raise argparse.ArgumentTypeError(str(exc) or f"invalid value {text!r}") from exc

    parse.__name__ = getattr(spec.parse, "__name__", "value")
    return parse


def add_settings(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """Add one flag per named setting, in one help section per settings group."""
    sections: dict[str, Any] = {}
    for name in names:
        spec = SPECS[name]
        if spec.group not in sections:
            sections[spec.group] = parser.add_argument_group(f"{GROUPS[spec.group]} (flag > environment > default)")
        default = spec.default
        shown = "" if default in ({}, "") else f", default: {default}"
        sections[spec.group].add_argument(
            spec.flag,
            dest=f"setting_{name}",
            type=unechoed(spec) if spec.secret else explained(spec),
            default=None,
            metavar=spec.metavar or ("N" if isinstance(default, int) else name.split("_")[-1].upper()),
            help=f"{spec.help} [env: {spec.env}{shown}]",
        )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Resolve the settings once, at the entry point."""
    overrides: dict[str, Any] = {
        k.removeprefix("setting_"): v for k, v in vars(args).items() if k.startswith("setting_")
    }
    return load_settings(overrides)
