"""`python -m qcalc` and the `qcalc` console script."""

import sys


def main() -> None:
    """Console-script entry point: Ctrl-C while the command line is still loading leaves one
    line and exit code 130, as it does later."""
    try:
        from qcalc.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("qcalc: interrupted\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
