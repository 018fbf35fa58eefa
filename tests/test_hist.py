"""qcalc.ops.hist and qcalc.commands.render.hist (`qcalc hist`): streamed counts equal
numpy's, the drawing puts every marker where its value falls, --channel draws the right slice
with its own grid and error, errors exit 2 in one line, and nothing is wider than the
terminal."""

from __future__ import annotations

import dataclasses
import math

import ml_dtypes
import numpy as np
import pytest
from typer.testing import CliRunner

from qcalc.ops.encode import encode_array
from qcalc.cli import app
from helpers import plain_text
from qcalc.commands.render.hist import BLOCKS, ROWS, lines
from qcalc.ops.hist import GUTTER, channel_ref, finite_range, hist, plot_columns, value_histogram
from qcalc.core.encoding import Metrics
from qcalc.core.tensor import TensorRef
from qcalc.core.spec import Spec

SAMPLE = "sample_tensors/model_bf16.safetensors"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _plain_80(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)


def ref_of(array: np.ndarray, name: str = "x") -> TensorRef:
    return TensorRef(name, "<array>", array.dtype, array.shape, lambda: array)


def run(*args: str):
    return runner.invoke(app, ["hist", *map(str, args)])


# --- streaming counts -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16, np.float64])
def test_streamed_counts_equal_np_histogram_of_the_whole_array(dtype):
    rng = np.random.default_rng(7)
    first = (rng.standard_normal((37, 13)) * 3).astype(dtype)
    second = (rng.standard_normal((5, 13)) + 4).astype(dtype)
    first[3, 4], first[10, 0], second[1, 1] = np.nan, np.inf, -np.inf
    refs = [ref_of(first), ref_of(second)]
    whole = np.concatenate([first.ravel(), second.ravel()]).astype(np.float64)
    finite = whole[np.isfinite(whole)]

    found = finite_range(refs, chunk_bytes=16)  # a row (or less) per chunk: many chunks
    assert (found.min, found.max) == (finite.min(), finite.max())
    assert (found.finite, found.nan, found.posinf, found.neginf) == (finite.size, 1, 1, 1)
    for bins, value_range in ((23, (found.min, found.max)), (71, (-2.5, 1.25))):
        counts = value_histogram(refs, bins, value_range, chunk_bytes=16)
        expected = np.histogram(finite, bins=bins, range=value_range)[0]
        assert counts.dtype == np.int64
        np.testing.assert_array_equal(counts, expected)
    # chunking does not matter
    np.testing.assert_array_equal(
        value_histogram(refs, 23, (found.min, found.max), chunk_bytes=1),
        value_histogram(refs, 23, (found.min, found.max), chunk_bytes=1 << 30),
    )


def test_channel_ref_is_the_slice_along_the_axis():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    for axis in range(3):
        for k in range(x.shape[axis]):
            sliced = channel_ref(ref_of(x), axis, k)
            kept = channel_ref(ref_of(x), axis, k, keepdims=True)
            np.testing.assert_array_equal(sliced.load(), np.take(x, k, axis=axis))
            np.testing.assert_array_equal(kept.load(), np.take(x, [k], axis=axis))
            assert sliced.shape == np.take(x, k, axis=axis).shape
            assert kept.shape == np.take(x, [k], axis=axis).shape


# --- the snapshot ---------------------------------------------------------------------------

# 58 evenly spaced values in [-1, 1] and six outliers; percentile 90 clips both tails.
SNAP = np.concatenate([np.linspace(-1, 1, 58), [-3, -2.5, 4, 5, 6, 6]]).astype(np.float32)
SNAP = SNAP.reshape(8, 8)
SNAP_SPEC = Spec(analyzer="percentile", percentile=90)
# fixed metrics: the snapshot tests the drawing, not qcalc.core.metrics
SNAP_METRICS = Metrics(
    sqnr_db=2.4245847308651, mse=1.3255329830225833, max_abs_error=5.074149787425995,
    clipped_fraction=0.203125, grid_used_fraction=0.25, worst_sqnr_db=None, worst_index=None,
    elements=64, nan_count=0, inf_count=0,
)  # fmt: skip

SNAPSHOT = """\
t, f32 8×8
f32, 8-bit asymmetric unsigned grid [0, 255], percentile 90
      4 ┤                ██ █ ██ █ ██ █
        │                ██▅█▅██▅█▅██▅█▅▅
        │                ████████████████
        │                ████████████████                                      ▇
        │                ████████████████                                      █
        │▂  ▂           ▂████████████████                       ▂       ▂      █
        │█  █           █████████████████                       █       █      █
        │█  █           █████████████████                       █       █      █
        │█  █           █████████████████                       █       █      █
        │█  █           █████████████████                       █       █      █
      0 └××××××××××××××××[──────0──────]××××××××××××××××××××××××××××××××××××××××
   grid                  -0.863    0.926
   data  -3                                                                    6
  count  log scale: bar height ∝ log(1 + count); 71 bins of 0.127; 64 values
  marks  [ ] grid min / max, 0 zero point (level 123), × clipped, scale 0.00701
metrics  sqnr 2.4 dB, mse 1.33, max abs error 5.07, clipped 20.3%, grid used 25%
"""


@pytest.fixture
def snap_file(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, SNAP)
    return path


def snap_view(path):
    view = hist([path], SNAP_SPEC, "t", width=80)
    return dataclasses.replace(view, metrics=SNAP_METRICS)


def expected_column(value: float, lo: float, hi: float, n: int) -> int:
    """The plot column of a value, worked out from the bin width (the top edge is the last
    bin's)."""
    return min(n - 1, math.floor((value - lo) / ((hi - lo) / n)))


def test_snapshot_at_80_columns(snap_file):
    assert plain_text(snap_view(snap_file)) == SNAPSHOT


def test_snapshot_every_element_is_where_it_should_be(snap_file):
    view = snap_view(snap_file)
    rows = SNAPSHOT.splitlines()
    n = 80 - GUTTER
    assert n == 71 == plot_columns(80) == len(view.counts)

    # the grid is the one `encode` computes: offset -123, scale 0.00701, [-0.863, 0.926]
    enc = encode_array(SNAP, SNAP_SPEC)
    gmin, gmax = float(enc.min), float(enc.max)
    assert (view.grid_min, view.grid_max) == (gmin, gmax)
    assert int(enc.offset) == -123 and f"{float(enc.scale):.3g}" == "0.00701"
    # plot range: data [-3, 6] holds the grid's [-0.863, 0.926]
    assert (view.lo, view.hi) == (-3.0, 6.0)
    lo, hi = -3.0, 6.0
    col = {v: expected_column(v, lo, hi, n) for v in (gmin, gmax, 0.0, -3, -2.5, -1, 4, 5, 6)}
    assert col == {gmin: 16, gmax: 30, 0.0: 23, -3: 0, -2.5: 3, -1: 15, 4: 55, 5: 63, 6: 70}

    # counts: the outliers alone in their columns, the 58 central values in columns 15..31
    counts = np.histogram(SNAP.astype(np.float64), bins=n, range=(lo, hi))[0]
    np.testing.assert_array_equal(view.counts, counts)
    assert [int(counts[c]) for c in (0, 3, 55, 63, 70)] == [1, 1, 1, 1, 2]
    assert counts[15:32].sum() == 58 and counts[15] == 1 and counts.max() == 4

    # bars: log1p(count) / log1p(4) of 10 rows, in eighths: 1 -> 34, 2 -> 55, 3 -> 69, 4 -> 80
    eighths = {0: 0, 1: 34, 2: 55, 3: 69, 4: 80}
    assert all(eighths[c] == round(math.log1p(c) / math.log1p(4) * 80) for c in eighths)
    bars = rows[2 : 2 + ROWS]
    assert bars[0].startswith("      4 ┤")  # the largest count labels the top row
    for r, line in enumerate(reversed(bars)):  # r = 0: the bottom row
        cells = line[GUTTER:].ljust(n)
        for c in range(n):
            left = eighths[int(counts[c])] - 8 * r
            assert cells[c] == (" " if left <= 0 else BLOCKS[min(left, 8) - 1]), (r, c)

    # the axis: [ at the grid's min, ] at its max, 0 at 0.0, × left of [ and right of ]
    axis = rows[2 + ROWS]
    assert axis[:GUTTER] == "      0 └"
    marks = axis[GUTTER:]
    assert len(marks) == n
    assert marks.index("[") == col[gmin] and marks.index("]") == col[gmax]
    assert marks.index("0") == col[0.0]
    assert marks[: col[gmin]] == "×" * col[gmin]
    assert marks[col[gmax] + 1 :] == "×" * (n - 1 - col[gmax])
    assert set(marks[col[gmin] + 1 : col[gmax]]) == {"─", "0"}

    # labels: the grid's min starts under [, its max ends under ]; the data's at -3 and 6
    grid, data = rows[3 + ROWS], rows[4 + ROWS]
    assert grid.startswith("   grid  ") and data.startswith("   data  ")
    assert grid[GUTTER + col[gmin] :].startswith("-0.863")
    assert grid.endswith("0.926") and len(grid) - 1 == GUTTER + col[gmax]
    assert data[GUTTER:].startswith("-3") and len(data) - 1 == GUTTER + col[6]
    assert data.endswith(" 6")

    # the legend: bin width 9 / 71 = 0.127, level 123 (= -offset), the fixed metrics
    assert f"71 bins of {9 / 71:.3g}; 64 values" in rows[5 + ROWS]
    assert "0 zero point (level 123)" in rows[6 + ROWS] and "scale 0.00701" in rows[6 + ROWS]
    assert rows[7 + ROWS] == (
        "metrics  sqnr 2.4 dB, mse 1.33, max abs error 5.07, clipped 20.3%, grid used 25%"
    )
    assert len(rows) == 8 + ROWS


def test_cli_draws_the_snapshot(snap_file):
    result = run(snap_file, "--tensor", "t", "--analyzer", "percentile", "--percentile", "90")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "\x1b" not in result.stdout  # no colour when stdout is not a terminal
    got, want = result.stdout.splitlines(), SNAPSHOT.splitlines()
    head = len(want) - 1  # all but the metrics, which are the computed ones
    assert got[:head] == want[:head]
    assert got[head].startswith("metrics  sqnr 2.4 dB, mse 1.33, max abs error 5.07, clipped 20.3%")


def test_colour_terminals_draw_the_clipped_tails_red(snap_file):
    from rich.console import Console

    view = snap_view(snap_file)
    console = Console(force_terminal=True, color_system="standard", width=80)
    with console.capture() as capture:
        for line in lines(view):
            console.print(line)
    text = capture.get()
    axis = next(line for line in text.splitlines() if "└" in line)
    assert "\x1b[31m" + "×" * 16 in axis  # red tail left of [


# --- --channel ------------------------------------------------------------------------------


def slice_metrics(x: np.ndarray, enc, axis: int, k: int) -> dict:
    """SQNR and MSE of channel k, straight from quantize-dequantize of the whole tensor under
    its per-channel grid, and the rest from qcalc.core.metrics on the slice under cell k's grid
    as a per-tensor encoding (built here)."""
    from qcalc.core.metrics import array_metrics

    xhat = enc.quantize_dequantize(x)
    xs = np.take(x, k, axis=axis).astype(np.float64)
    es = xs - np.take(xhat, k, axis=axis).astype(np.float64)
    cell = {
        name: np.take(getattr(enc, name), k, axis=axis).reshape(())
        for name in ("scale", "offset", "min", "max", "raw_min", "raw_max")
    }
    per_tensor = dataclasses.replace(enc, granularity="per-tensor", axis=None, **cell)
    found = array_metrics(np.take(x, k, axis=axis), per_tensor)
    return {
        "sqnr_db": 10 * math.log10(np.sum(xs**2) / np.sum(es**2)),
        "mse": float(np.mean(es**2)),
        "clipped_fraction": found.clipped_fraction,
        "grid_used_fraction": found.grid_used_fraction,
        "max_abs_error": found.max_abs_error,
    }


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_channel_draws_its_slice_with_its_grid(tmp_path, axis):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 5, 7)) * np.arange(1, 6).reshape(1, 5, 1)).astype(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, x)
    spec = Spec(per_channel=True, symmetric=True, axis=axis)
    enc = encode_array(x, spec)
    count = x.shape[axis]
    for k in (0, count - 1, -1):
        view = hist([path], spec, "w", channel=k, width=80, chunk_bytes=24)
        kk = k % count
        part = np.take(x, kk, axis=axis).astype(np.float64)
        gmin = float(np.take(enc.min, kk, axis=axis).item())
        gmax = float(np.take(enc.max, kk, axis=axis).item())
        assert (view.grid_min, view.grid_max) == (gmin, gmax)
        assert view.lo == min(part.min(), gmin) and view.hi == max(part.max(), gmax)
        expected = np.histogram(part, bins=71, range=(view.lo, view.hi))[0]
        np.testing.assert_array_equal(view.counts, expected)
        assert view.data.finite == part.size
        assert view.channel == (axis % 3, kk, count)
        assert f"channel {kk} of {count} along axis {axis % 3}" in view.title
        want = slice_metrics(x, enc, axis % 3, kk)
        assert view.metrics.sqnr_db == pytest.approx(want["sqnr_db"], rel=1e-7)
        assert view.metrics.mse == pytest.approx(want["mse"], rel=1e-7)
        for key in ("clipped_fraction", "grid_used_fraction", "max_abs_error"):
            assert getattr(view.metrics, key) == want[key], key
        assert view.metrics.elements == part.size


def test_channel_of_a_per_block_grid_spans_its_blocks(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 32)).astype(np.float32)
    x[2, :8] *= 10  # channel 2's first block is wide
    path = tmp_path / "w.npy"
    np.save(path, x)
    spec = Spec(symmetric=True, block_size=8)
    enc = encode_array(x, spec)
    view = hist([path], spec, "w", channel=2)
    assert view.grid_min == float(enc.min[2].min()) and view.grid_max == float(enc.max[2].max())
    np.testing.assert_array_equal(
        view.counts, np.histogram(x[2].astype(np.float64), 71, (view.lo, view.hi))[0]
    )
    assert any("not drawn per block" in note for note in view.notes)
    xhat = enc.quantize_dequantize(x)[2].astype(np.float64)
    err = x[2].astype(np.float64) - xhat
    assert view.metrics.mse == pytest.approx(np.mean(err**2), rel=1e-7)
    # the whole tensor without --channel: the markers span every block, a note says so
    whole = hist([path], spec, "w")
    assert (whole.grid_min, whole.grid_max) == (float(enc.min.min()), float(enc.max.max()))
    assert any("span all 16 block grids" in note for note in whole.notes)
    assert whole.worst  # the worst block is named


def test_channel_under_a_per_tensor_grid_uses_the_tensor_grid(tmp_path):
    x = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)
    path = tmp_path / "w.npy"
    np.save(path, x)
    enc = encode_array(x, Spec())
    view = hist([path], Spec(), "w", channel=1)
    assert (view.grid_min, view.grid_max) == (float(enc.min), float(enc.max))
    assert view.data.min == -2 and view.data.max == 1 and view.data.finite == 4


def test_channel_of_a_one_channel_grid(tmp_path):
    x = np.array([[-1.0, 0.5, 2.0, 3.0]], dtype=np.float32)
    np.save(tmp_path / "w.npy", x)
    spec = Spec(per_channel=True)
    enc = encode_array(x, spec)
    view = hist([tmp_path / "w.npy"], spec, "w", channel=0)
    assert (view.grid_min, view.grid_max) == (float(enc.min.item()), float(enc.max.item()))
    assert view.metrics.elements == 4 and not view.notes


# --- the CLI --------------------------------------------------------------------------------


def error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("qcalc: error: ")
    return line


def test_cli_exit_0_on_the_sample():
    result = run(SAMPLE, "--tensor", "fc.weight", "--per-channel", "--symmetric", "--channel", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "fc.weight, bf16 10×512, channel 3 of 10 along axis 0"
    assert result.stderr == ""  # the integer tensor it does not draw is not mentioned


def test_unknown_tensor_names_the_available_ones():
    line = error_line(run(SAMPLE, "--tensor", "fc.weights"))
    assert "'fc.weights' not found" in line
    names = "bn1.bias, bn1.running_mean, bn1.running_var, bn1.weight, conv1.bias, …"
    assert f"the inputs hold 10 tensors: {names}" in line  # the first five, in file order


def test_integer_tensor_says_why(tmp_path):
    line = error_line(run(SAMPLE, "--tensor", "bn1.num_batches_tracked"))
    assert "integer" in line


def test_glob_characters_in_names_match_exactly(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "m.safetensors"
    save_file({"w[0]": np.ones((2, 2), np.float32), "w0": np.full((2, 2), 9, np.float32)}, path)
    result = run(path, "--tensor", "w[0]")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("w[0], f32 2×2\n")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tensor", "fc.weight", "--channel", "10"], "channel 10 is out of range: 10 channels"),
        (["--tensor", "fc.weight", "--channel", "-11"], "channel -11 is out of range"),
        (["--tensor", "fc.weight", "--channel", "0", "--axis", "2"], "axis 2 is out of range"),
        (["--tensor", "fc.bias", "--channel", "0"], "--channel needs a tensor of rank >= 2"),
        (["--tensor", "fc.weight", "-b", "1"], "bitwidth 1 is out of range"),
    ],
)
def test_bad_channel_and_flags_exit_2(args, message):
    assert message in error_line(run(SAMPLE, *args))


def test_channel_on_a_scalar_exits_2(tmp_path):
    np.save(tmp_path / "s.npy", np.float32(1.5))
    assert "rank >= 2" in error_line(run(tmp_path / "s.npy", "--tensor", "s", "--channel", "0"))


def test_nothing_finite_exits_2(tmp_path):
    x = np.full((2, 3), np.nan, dtype=np.float32)
    x[1] = [1, 2, 3]
    np.save(tmp_path / "n.npy", x)
    line = error_line(run(tmp_path / "n.npy", "--tensor", "n", "--channel", "0"))
    assert "channel 0: no finite value to draw (3 NaN, 0 +inf, 0 -inf)" in line
    # the other channel draws; the whole tensor draws and counts its NaN
    assert run(tmp_path / "n.npy", "--tensor", "n", "--channel", "1").exit_code == 0
    result = run(tmp_path / "n.npy", "--tensor", "n")
    assert result.exit_code == 0, result.output
    assert "3 values (3 NaN not drawn)" in result.stdout
    np.save(tmp_path / "a.npy", np.full(4, np.inf, dtype=np.float32))
    assert "no finite value" in error_line(run(tmp_path / "a.npy", "--tensor", "a"))


def test_missing_tensor_option_is_a_usage_error():
    result = run(SAMPLE)
    assert result.exit_code == 2
    assert "--tensor" in result.output + result.stderr


FLAGS = [
    [],
    ["--per-channel", "--symmetric", "--channel", "3"],
    ["--per-channel", "--symmetric"],
    ["--analyzer", "percentile", "--percentile", "99"],
    ["--analyzer", "sqnr", "-b", "4"],
    ["--block-size", "64", "--symmetric", "--lpbq", "-b", "4", "--channel", "9"],
    ["--block-size", "64", "--symmetric"],
    ["--strict-symmetric", "--symmetric", "--per-channel", "--axis", "1", "--channel", "511"],
]


@pytest.mark.parametrize("flags", FLAGS)
@pytest.mark.parametrize("columns", ["80", "40", "20", "132"])
def test_no_line_is_wider_than_the_terminal(monkeypatch, flags, columns):
    monkeypatch.setenv("COLUMNS", columns)
    result = run(SAMPLE, "--tensor", "fc.weight", *flags)
    assert result.exit_code == 0, result.output
    width = max(40, int(columns))
    out = result.stdout.splitlines()
    assert max(len(line) for line in out) <= width
    bars = [line for line in out if line[GUTTER - 1 : GUTTER] in ("┤", "│")]
    assert len(bars) == ROWS
    (axis,) = [line for line in out if line[GUTTER - 1 : GUTTER] == "└"]
    assert len(axis) == width  # one mark per bin, bins = the plot's width
