import sys
from pathlib import Path

# helpers.py and golden_cases.py are helper modules beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

import pytest
from hypothesis import settings

# Property tests must not write an example database into the working tree.
# derandomize: CI runs the same examples every time, so a red run is reproducible.
settings.register_profile("qcalc", database=None, derandomize=True)
settings.load_profile("qcalc")


@pytest.fixture(autouse=True, scope="session")
def _build_the_command_once():
    """typer rebuilds the click command from the signatures on every CliRunner.invoke, which
    is most of a small run's time; the suite makes thousands of runs, so build it once (the
    command is a description of the options: every invocation still parses and runs anew)."""
    import typer.testing

    from qcalc.cli import app

    build = getattr(typer.testing, "_get_command", None)
    if build is None:  # another typer: just slower
        yield
        return
    command = build(app)
    typer.testing._get_command = lambda a: command if a is app else build(a)
    yield
    typer.testing._get_command = build


@pytest.fixture(params=[True, False], ids=["compiled", "numpy"])
def compiled(request):
    """Runs a test with the compiled kernels, then with the numpy path (the reference)."""
    from qcalc.core.kernels import KERNELS, built, use_compiled

    if request.param and not any(built(name) for name in KERNELS):
        pytest.skip("qcalc was installed without its compiled kernels")
    with use_compiled(request.param):
        yield request.param
