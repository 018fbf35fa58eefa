"""The layers of DESIGN.md hold: the import contracts in pyproject.toml are kept, and each of
them would catch the import it forbids."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "qcalc"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    return subprocess.run(
        [*command, "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": ""},
    )  # fmt: skip


def test_import_contracts_are_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("core/grid.py", "from qcalc.io import atomic", "Layers"),
        ("io/atomic.py", "from qcalc.ops import encode", "Layers"),
        ("core/spec.py", "from qcalc.core import encoding", "No import cycles"),
        ("ops/check.py", "import rich", "Only the command line imports typer and rich"),
    ],
    ids=["core-imports-io", "io-imports-ops", "cycle-in-core", "rich-outside-commands"],
)
def test_each_contract_catches_its_violation(tmp_path, module, line, contract):
    copy = tmp_path / "repo"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    shutil.copytree(PACKAGE, copy / "qcalc", ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / "qcalc" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout
    broken = [row for row in result.stdout.splitlines() if row.endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), result.stdout
