"""Build script for qcalc's optional compiled kernels (everything else is in pyproject.toml).

The kernels (qcalc/core/_kernels/*.c) are plain C over the buffer protocol: no numpy headers
at build time. Each is optional: without a C compiler, or with QCALC_NO_EXTENSION=1 at install
time, qcalc installs without them and runs the numpy path, which gives the same bits.
"""

import os

from setuptools import Extension, setup

# Bit-identical to the numpy path: IEEE arithmetic only (no fast-math, no FMA contraction);
# x86-64 kernels pick AVX2 at run time through target_clones where it helps.
FLAGS = ["-O3", "-std=c11", "-ffp-contract=off", "-fno-fast-math", "-fno-strict-aliasing"]
KERNELS = ("minmax", "histc", "sqnr")


def extensions() -> list[Extension]:
    if os.environ.get("QCALC_NO_EXTENSION") == "1":
        return []
    return [
        Extension(
            f"qcalc.core._{name}",
            [f"qcalc/core/_kernels/{name}.c"],
            extra_compile_args=FLAGS,
            optional=True,
        )
        for name in KERNELS
        if os.path.exists(f"qcalc/core/_kernels/{name}.c")
    ]


setup(ext_modules=extensions())
