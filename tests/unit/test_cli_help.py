"""`--help` on every command documents every option and its environment variable."""

from __future__ import annotations

import argparse

import pytest

from stream.cli import build_parser, main
from stream.config import SPECS


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def test_every_command_help_names_each_option_and_env(capsys):
    commands = list(_walk(build_parser()))
    assert len(commands) >= 6
    for path, parser in commands:
        with pytest.raises(SystemExit) as exit_:
            main([*path, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        for action in parser._actions:
            dest = action.dest
            if dest.startswith("setting_"):
                spec = SPECS[dest.removeprefix("setting_")]
                assert spec.flag in out, (path, spec.flag)
                assert f"env: {spec.env}" in " ".join(out.split()), (path, spec.env)
            elif action.option_strings and dest != "help":
                assert action.help, f"{path} {action.option_strings} has no help"


def test_unknown_env_value_is_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("HEARTRISK_PARTITIONS", "-1")
    code = main(["kafka", "status"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("heartrisk: error: HEARTRISK_PARTITIONS='-1' is invalid")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["score", "run"])
def test_the_scorer_takes_every_scorer_setting_as_a_flag(command):
    """The README's flags work: --dead-letter-payload, --drift, --event-time-window ... (env vars alone did once)."""
    parser = dict(_walk(build_parser()))[(command,)]
    flags = {a.dest.removeprefix("setting_") for a in parser._actions if a.dest.startswith("setting_")}
    scorer = {name for name, spec in SPECS.items() if spec.group == "scorer"} - {"progress_file"}
    assert scorer - flags == set()
    assert {"delivery", "commit_topic"} <= flags, "--delivery exactly-once and its commit-marker topic"
    args = parser.parse_args(["--dead-letter-payload", "hashed", "--drift", "off", "--event-time-window", "1d:1h"])
    assert (args.setting_dead_letter_payload, args.setting_drift, args.setting_event_time_window) == (
        "hashed", "off", "1d:1h")
