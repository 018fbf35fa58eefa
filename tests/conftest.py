import sys
from pathlib import Path

# golden_cases.py is a helper module beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from hypothesis import settings

# Property tests must not write an example database into the working tree.
settings.register_profile("qcalc", database=None)
settings.load_profile("qcalc")
