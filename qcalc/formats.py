"""The public path of qcalc's encodings files API (`qcalc.io.formats`): AIMET JSON 0.6.1 /
1.0.0 / 2.0.0 / 2.1.0 read, written, converted and compared."""

from qcalc.io.formats import *  # noqa: F401,F403
from qcalc.io.formats import __all__  # noqa: F401
