"""``modelserve.cli``: the root parser, its command groups, exit statuses."""

from __future__ import annotations

import argparse
import importlib

import pytest

from modelserve import cli
from modelserve.cli import registry as registry_cli


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_group_is_a_command_and_every_registry_subcommand_has_a_function() -> None:
    groups = _choices(cli.build_parser())
    assert sorted(groups) == ["export", "predict", "registry", "serve"]
    assert sorted(_choices(groups["registry"])) == sorted(registry_cli.COMMANDS)


def test_no_command_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as ei:
        cli.main([])
    assert ei.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


def test_dispatch_maps_modelserve_errors_to_exit_1_and_returns_the_status(capsys) -> None:
    from modelserve import RegistryError

    def fail(args: argparse.Namespace) -> int:
        raise RegistryError("no\n  such   thing")

    assert cli.dispatch(argparse.Namespace(func=fail)) == 1
    assert capsys.readouterr().err == "error: no such thing\n"
    assert cli.dispatch(argparse.Namespace(func=lambda args: 2)) == 2
    assert cli.dispatch(argparse.Namespace(func=lambda args: None)) == 0
    with pytest.raises(KeyError):  # a bug is not hidden as an error message
        cli.dispatch(argparse.Namespace(func=lambda args: {}["x"]))


def test_importing_main_module_runs_nothing() -> None:
    mod = importlib.import_module("modelserve.__main__")
    assert mod.main is cli.main
