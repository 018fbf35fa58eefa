"""Files: tensor readers, AIMET encodings files, recipes and atomic writes (over `qcalc.core`)."""
