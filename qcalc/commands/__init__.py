"""The command line: one module per command with its options and its rendering.

The only package that imports typer or rich (rich lazily, so `--help` stays fast).
"""
