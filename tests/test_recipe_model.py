"""recipes/aimet-default-per-channel.toml on a whole model: weights and calibration dumps in,
AIMET's exported entries out.

The golden corpus has no whole-model QuantSim export, but it has AIMET's own
`to_qnn_encoding_dict` entries for every tensor a default per-channel QuantSim quantizes:
weights 8-bit symmetric signed per-channel on axis 0, activations 8-bit asymmetric unsigned
per tensor (multi-batch calibration included). The model below is assembled from those
golden inputs, plus biases (which that configuration leaves unquantized); with the recipe and
no other flag, every entry of the file written must be AIMET's, key order included, and the
file must have the layout of QuantSim's export (tests/golden/NOTES.md section 13).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from golden_cases import CASES, GOLDEN, LEGACY, expected_entry, inputs_of
from helpers import entries
from qcalc.cli import app
from qcalc.core.choices import VERSIONS

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "aimet-default-per-channel.toml"
BY_ID = {case["id"]: case for case in CASES}
WEIGHTS = {  # parameter name -> golden case (8-bit symmetric signed per-channel, axis 0)
    "features.0.weight": "sweep-pc4d-b8-sym-s",
    "classifier.0.weight": "dist-normal-pc0-b8-sym-s",
    "classifier.2.weight": "dist-heavy-pc0-b8-sym-s",
    "classifier.4.weight": "dist-outliers-pc0-b8-sym-s",
}
ACTIVATIONS = {  # activation name -> golden case (8-bit asymmetric unsigned per tensor)
    "input": "dist-normal-pt-b8-asym-u",
    "features.1.out": "mb3-minmax-pt-b8-asym-u",  # three calibration batches
    "classifier.1.out": "mb5-minmax-pt-b8-asym-u",  # five
    "classifier.3.out": "dist-relu-pt-b8-asym-u",
}

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """model.safetensors (weights and biases) and acts/ (calibration dumps, as the directory
    reader takes them)."""
    root = tmp_path_factory.mktemp("model")
    tensors = {}
    for name, case_id in WEIGHTS.items():
        (source,) = inputs_of(BY_ID[case_id])
        weight = np.load(GOLDEN / source)
        tensors[name] = weight
        tensors[name.replace(".weight", ".bias")] = np.linspace(
            -1, 1, weight.shape[0], dtype=np.float32
        )
    save_file(tensors, str(root / "model.safetensors"))
    for name, case_id in ACTIVATIONS.items():
        tensor = root / "acts" / name  # one subdirectory per tensor, one .npy per batch
        tensor.mkdir(parents=True)
        for i, source in enumerate(inputs_of(BY_ID[case_id])):
            os.symlink(GOLDEN / source, tensor / f"batch{i}.npy")
    return root / "model.safetensors", root / "acts"


@pytest.mark.parametrize("version", VERSIONS)
def test_default_per_channel_recipe_writes_aimets_entries(model, version, tmp_path):
    weights, acts = model
    out = tmp_path / "model.encodings"
    result = runner.invoke(
        app,
        [
            "encode", str(weights), "--activations", str(acts), "--recipe", str(RECIPE),
            "-o", str(out), "--encoding-version", version,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "recipe skipped 4 tensors" in result.stderr  # the biases
    doc = json.loads(out.read_text())
    found = entries(doc)
    wanted = {**WEIGHTS, **ACTIVATIONS}
    assert set(found) == set(wanted)
    for name, case_id in wanted.items():
        section, entry = found[name]
        expected = expected_entry(BY_ID[case_id], version)
        assert json.dumps(entry) == json.dumps(expected), name  # values and key order
        if version in LEGACY:
            assert section == ("param" if name in WEIGHTS else "activation"), name
    if version in LEGACY:
        assert doc["quantizer_args"] == {
            "quant_scheme": "min_max",
            "param_bitwidth": 8,
            "activation_bitwidth": 8,
            "dtype": "int",
            "is_symmetric": True,
            "per_channel_quantization": True,
        }
