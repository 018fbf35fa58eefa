import sys
from pathlib import Path

# golden_cases.py is a helper module beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from hypothesis import settings

# Property tests must not write an example database into the working tree.
# derandomize: CI runs the same examples every time, so a red run is reproducible.
settings.register_profile("qcalc", database=None, derandomize=True)
settings.load_profile("qcalc")
