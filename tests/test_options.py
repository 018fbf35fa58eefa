"""The command line's options are declared once: every Spec field has exactly one
quantization option, named as the field, every command that takes them lists each once, and
a name that is not an option is refused when a command is declared."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from qcalc.cli import app
from qcalc.commands.options import COUNTS_NONFINITE, QUANTIZATION, SELECTION, with_spec
from qcalc.core.spec import Spec

runner = CliRunner()


def test_every_spec_field_has_one_quantization_option():
    assert list(QUANTIZATION) == [field.name for field in dataclasses.fields(Spec)]
    flags = [flag for names, _ in QUANTIZATION.values() for flag in names]
    assert len(flags) == len(set(flags))


@pytest.mark.parametrize(
    "command, names",
    [("encode", tuple(QUANTIZATION)), ("check", COUNTS_NONFINITE), ("hist", COUNTS_NONFINITE)],
)
def test_commands_list_each_quantization_option_once(command, names, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    flag_column = [  # "  -b, --bitwidth <int>  Integer grid...": the part before the help
        line.strip().split("  ")[0] for line in result.stdout.splitlines() if line.startswith("  -")
    ]
    words = " ".join(flag_column).replace(",", " ").split()
    for name in QUANTIZATION:
        flag = QUANTIZATION[name][0][0].split("/")[0]  # "--symmetric/--asymmetric": --symmetric
        assert words.count(flag) == (1 if name in names else 0), flag


@pytest.mark.parametrize("names, select", [(("bitwdith",), ()), ((), ("includes",))])
def test_unknown_option_names_are_refused(names, select):
    with pytest.raises(TypeError, match="unknown options"):
        with_spec(*names, select=select)


def test_selection_options_are_the_commands_own():
    assert set(SELECTION) == {
        "include", "exclude", "activations", "activation_bitwidth", "recipe", "jobs", "dask"
    }  # fmt: skip
    result = runner.invoke(app, ["hist", "--help"])
    assert "--activations" in result.stdout and "--include" not in result.stdout
    assert "--jobs" in result.stdout and "--dask" not in result.stdout
    for command in ("encode", "check", "stats", "ls"):
        assert "--dask" in runner.invoke(app, [command, "--help"]).stdout
