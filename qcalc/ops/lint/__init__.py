"""`qcalc lint`: what a QNN / QAIRT converter will do with an encodings file, before anyone
runs one. `rules.py` is the registry (no numpy: the help lists it), `report.py` reads the file
and runs the rules, `file_rules.py` / `model_rules.py` are the rules on the file alone and
against the model's graph, `fix.py` is `--fix`."""
