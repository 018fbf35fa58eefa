"""The README cannot drift: every `$ qcalc ...` command in its console blocks runs, and its
stdout is exactly the text shown under it; its Python example runs too."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qcalc.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def console_examples() -> list[tuple[str, str]]:
    examples = []
    for block in re.findall(r"```console\n(.*?)```", README, flags=re.S):
        for chunk in re.split(r"^\$ ", block, flags=re.M)[1:]:
            command, _, output = chunk.partition("\n")
            examples.append((command, output))
    return examples


EXAMPLES = console_examples()


def test_readme_has_examples():
    assert len(EXAMPLES) >= 8


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A scratch directory seen as the repository root: the examples' relative input paths
    resolve, and the files they write land here, never in the repository."""
    work = tmp_path_factory.mktemp("readme")
    (work / "tests").mkdir()
    (work / "sample_tensors").symlink_to(ROOT / "sample_tensors")
    (work / "recipes").symlink_to(ROOT / "recipes")
    (work / "tests" / "golden").symlink_to(ROOT / "tests" / "golden")
    return work


@pytest.mark.parametrize("command, expected", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_readme_example_output_is_exact(command, expected, workdir, monkeypatch):
    """Examples run in README order (later ones read files earlier ones wrote)."""
    argv = shlex.split(command)
    assert argv[0] == "qcalc" and "|" not in argv, "README console examples must be plain qcalc"
    monkeypatch.chdir(workdir)
    monkeypatch.delenv("COLUMNS", raising=False)
    result = CliRunner().invoke(app, argv[1:])
    differs = argv[1] == "diff" and "differ beyond" in expected
    fails = argv[1] == "check" and expected.startswith("FAILED")
    errors = argv[1] == "lint" and re.search(r": [1-9]\d* errors?\b", expected) is not None
    assert result.exit_code == (1 if differs or fails or errors else 0), result.output
    assert result.stdout == expected


def test_readme_python_example_runs(workdir, monkeypatch, capsys):
    """Runs after the console examples, in their directory (it reads files they wrote)."""
    (code,) = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    monkeypatch.chdir(workdir)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "conv1.weight per-channel" in out
    assert out.rstrip().endswith("True")  # equal within rtol 0.01, as the diff example shows
    assert (workdir / "model-v2.1.encodings").read_text().count('"version": "2.1.0"') == 1


def test_readme_error_example_is_what_qcalc_prints(monkeypatch):
    (line,) = [text for text in README.splitlines() if text.startswith("qcalc: error: ")]
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(
        app, ["encode", "sample_tensors/seed.npy", "--per-channel", "--axis", "2"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == line


def test_readme_and_help_list_every_lint_rule():
    from qcalc.ops.lint.rules import RULES

    section = README.split("## Lint:")[1].split("\n## ")[0]
    help_text = CliRunner().invoke(app, ["lint", "--help"], env={"COLUMNS": "200"}).stdout
    for rule in RULES:
        assert f"| `{rule}` |" in section, rule
        assert f"  {rule} (" in help_text, rule
