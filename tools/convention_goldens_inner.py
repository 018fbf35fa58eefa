"""Inner half of tools/make_convention_goldens.py: runs INSIDE the throwaway venv that holds the
real toolchains and calls each toolchain's own functions. Nothing here retypes a formula: scales,
zero points and quantized integers are whatever the toolchain returns; this file only feeds
inputs, reads the results back, and writes them (float bits as hex) to JSON.

Usage (normally via make_convention_goldens.py): python convention_goldens_inner.py OUTDIR SEED_NPY
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
import traceback
from pathlib import Path

import numpy as np

OUT = Path(sys.argv[1])
SEED = Path(sys.argv[2])
INPUTS = OUT / "inputs"
MAX_STORED_INTS = 512  # store quantized integers for inputs up to this many elements


def version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------- inputs
def make_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261101)
    normal = rng.standard_normal((4, 64)).astype(np.float32)
    outliers = rng.standard_normal((4, 64)).astype(np.float32)
    outliers[0, 3] = 25.0
    outliers[1, 10] = -40.0
    outliers[3, 63] = 12.5
    positive = rng.uniform(0.05, 2.0, (4, 64)).astype(np.float32)
    constant = np.full((4, 64), 0.75, dtype=np.float32)
    zero = np.zeros((4, 64), dtype=np.float32)
    seed = np.load(SEED).astype(np.float32)
    # llama.cpp block types need rows that are a multiple of 32: the seed tensor (4x4) padded
    # with zeros to one row of 32 (its min < 0 < max, so zeros change no block's range).
    seed_row32 = np.zeros((1, 32), dtype=np.float32)
    seed_row32[0, :16] = seed.ravel()
    return {"seed": seed, "seed_row32": seed_row32, "normal": normal, "outliers": outliers,
            "positive": positive, "constant": constant, "zero": zero}  # fmt: skip


TENSORS = make_inputs()
GENERAL = ["seed", "normal", "outliers", "positive", "constant", "zero"]
BLOCKED = ["seed_row32", "normal", "outliers", "positive", "constant", "zero"]


# ---------------------------------------------------------------- encoding of numbers
def f32(values) -> list[dict]:
    a = np.asarray(values, dtype=np.float32).ravel()
    return [{"hex": f"0x{int(b):08x}", "value": float(v)} for b, v in zip(a.view(np.uint32), a)]


def f16(values) -> list[dict]:
    a = np.asarray(values, dtype=np.float16).ravel()
    return [{"hex": f"0x{int(b):04x}", "value": float(v)} for b, v in zip(a.view(np.uint16), a)]


def f64(values) -> list[dict]:
    a = np.asarray(values, dtype=np.float64).ravel()
    return [{"hex": f"0x{int(b):016x}", "value": float(v)} for b, v in zip(a.view(np.uint64), a)]


def floats(values) -> list[dict]:
    a = np.asarray(values)
    if a.dtype == np.float16:
        return f16(a)
    if a.dtype == np.float64:
        return f64(a)
    return f32(a)


def ints(values) -> list[int]:
    return [int(v) for v in np.asarray(values).ravel()]


def quantized(name: str, values) -> list[int] | None:
    return ints(values) if TENSORS[name].size <= MAX_STORED_INTS else None


CASES: list[dict] = []
MISSING: list[str] = []


def case(convention, dist, function, tensor, flags, *, scale, zero_point, qmin, qmax, rounding,
         q=None, extra=None):  # fmt: skip
    scale = np.asarray(scale)
    record = {
        "id": f"{convention}/{tensor}/{flags_id(flags)}",
        "convention": convention,
        "toolchain": dist,
        "toolchain_version": version(dist),
        "function": function,
        "input": f"inputs/{tensor}.npy",
        "input_shape": list(TENSORS[tensor].shape),
        "flags": flags,
        "scale_dtype": str(scale.dtype),
        "scale": floats(scale),
        "zero_point": None if zero_point is None else ints(zero_point),
        "qmin": int(qmin),
        "qmax": int(qmax),
        "rounding": rounding,
    }
    if q is not None:
        record["quantized"] = q
    if extra:
        record.update(extra)
    CASES.append(record)


def flags_id(flags: dict) -> str:
    parts = [f"b{flags['bitwidth']}", "sym" if flags["symmetric"] else "asym",
             "signed" if flags["signed"] else "unsigned"]  # fmt: skip
    if flags.get("block_size"):
        parts.append(f"block{flags['block_size']}")
    elif flags["per_channel"]:
        parts.append(f"axis{flags['axis']}")
    else:
        parts.append("tensor")
    if flags.get("variant"):
        parts.append(flags["variant"])
    return "-".join(parts)


def flags(bitwidth, symmetric, signed, per_channel, block_size=None, variant=None):
    out = {"bitwidth": bitwidth, "symmetric": symmetric, "signed": signed,
           "per_channel": per_channel, "axis": 0 if per_channel else None,
           "block_size": block_size}  # fmt: skip
    if variant:
        out["variant"] = variant
    return out


def guarded(label):
    def wrap(fn):
        def run(*a, **k):
            try:
                fn(*a, **k)
            except Exception as exc:  # a combination the toolchain refuses is itself data
                MISSING.append(f"{label} {a} {k}: {type(exc).__name__}: {str(exc)[:200]}")
                traceback.print_exc(limit=2)

        return run

    return wrap


# ---------------------------------------------------------------- torch.ao
def torch_cases():
    import torch

    combos = []
    for bits in (8, 4):
        for signed in (True, False):
            for sym in (True, False):
                combos.append((bits, signed, sym))
    for name in GENERAL:
        x = torch.from_numpy(TENSORS[name])
        for bits, signed, sym in combos:
            for per_channel in (False, True):
                one_torch(x, name, bits, signed, sym, per_channel)


@guarded("torch")
def one_torch(x, name, bits, signed, sym, per_channel):
    import torch
    from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

    dtype = torch.qint8 if signed else torch.quint8
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if per_channel:
        scheme = torch.per_channel_symmetric if sym else torch.per_channel_affine
        obs = PerChannelMinMaxObserver(
            ch_axis=0, dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax
        )
        cls = "torch.ao.quantization.observer.PerChannelMinMaxObserver"
    else:
        scheme = torch.per_tensor_symmetric if sym else torch.per_tensor_affine
        obs = MinMaxObserver(dtype=dtype, qscheme=scheme, quant_min=qmin, quant_max=qmax)
        cls = "torch.ao.quantization.observer.MinMaxObserver"
    obs(x)
    scale, zp = obs.calculate_qparams()
    if per_channel:
        fq = torch.fake_quantize_per_channel_affine(x, scale.float(), zp.int(), 0, qmin, qmax)
        qfn = "torch.fake_quantize_per_channel_affine"
    else:
        fq = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zp), qmin, qmax)
        qfn = "torch.fake_quantize_per_tensor_affine"
    q = None
    if bits == 8:
        if per_channel:
            qt = torch.quantize_per_channel(x, scale, zp, 0, dtype)
            qfn = "torch.quantize_per_channel(...).int_repr()"
        else:
            qt = torch.quantize_per_tensor(x, float(scale), int(zp), dtype)
            qfn = "torch.quantize_per_tensor(...).int_repr()"
        q = quantized(name, qt.int_repr().numpy())
    case("torch", "torch", f"{cls}(dtype={dtype}, qscheme={scheme}, quant_min={qmin}, quant_max={qmax}"
         f"{', ch_axis=0' if per_channel else ''}).calculate_qparams", name,
         flags(bits, sym, signed, per_channel),
         scale=scale.numpy().astype(np.float32), zero_point=zp.numpy(), qmin=qmin, qmax=qmax,
         rounding="torch.round / nearbyint: half to even (quantize_per_tensor and fake_quantize)",
         q=q, extra={"quantize_function": qfn, "scale_stored_as": "float32 (calculate_qparams returns float32)",
                     "dequantized": f32(fq.numpy()) if TENSORS[name].size <= 64 else None})  # fmt: skip


# ---------------------------------------------------------------- onnxruntime
def ort_cases():
    for name in GENERAL:
        for bits in (8, 4):
            for signed in (True, False):
                for sym in (True, False):
                    for per_channel in (False, True):
                        one_ort(name, bits, signed, sym, per_channel)


@guarded("onnxruntime")
def one_ort(name, bits, signed, sym, per_channel):
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType, quantize_data

    qtype = {(8, True): TensorProto.INT8, (8, False): TensorProto.UINT8,
             (4, True): TensorProto.INT4, (4, False): TensorProto.UINT4}[(bits, signed)]  # fmt: skip
    qmin, qmax = get_qmin_qmax_for_qType(qtype, reduce_range=False, symmetric=sym)
    data = TENSORS[name]
    rows = [data[i] for i in range(data.shape[0])] if per_channel else [data]
    scales, zps, qs = [], [], []
    for row in rows:
        zp, scale, qd = quantize_data(row.ravel(), qtype, sym)
        scales.append(np.asarray(scale))
        zps.append(np.asarray(zp))
        qs.append(np.asarray(qd).astype(np.int64).ravel())
    scale = np.stack(scales).astype(scales[0].dtype)
    case("onnxruntime", "onnxruntime", "onnxruntime.quantization.quant_utils.quantize_data"
         f"(data, qType=TensorProto.{TensorProto.DataType.Name(qtype)}, symmetric={sym})"
         + (" called once per row (axis 0), as base_quantizer.quantize_weight_per_channel does" if per_channel else ""),
         name, flags(bits, sym, signed, per_channel),
         scale=scale, zero_point=np.stack(zps).astype(np.int64), qmin=int(qmin), qmax=int(qmax),
         rounding="numpy.round: half to even (quantize_nparray; zero point too)",
         q=quantized(name, np.concatenate(qs)),
         extra={"scale_stored_as": "float32 (dr/dq computed in float64, then cast to the data dtype)",
                "grid_function": "onnxruntime.quantization.quant_utils.get_qmin_qmax_for_qType"})  # fmt: skip


# ---------------------------------------------------------------- compressed-tensors
def ct_cases():
    for name in GENERAL:
        for bits in (8, 4):
            for sym in (True, False):
                for per_channel in (False, True):
                    one_ct(name, bits, sym, per_channel)


@guarded("compressed-tensors")
def one_ct(name, bits, sym, per_channel):
    import torch
    from compressed_tensors.quantization import QuantizationArgs
    from compressed_tensors.quantization.lifecycle.forward import quantize
    from compressed_tensors.quantization.utils.helpers import calculate_qparams, calculate_range

    x = torch.from_numpy(TENSORS[name])
    strategy = "channel" if per_channel else "tensor"
    args = QuantizationArgs(num_bits=bits, type="int", symmetric=sym, strategy=strategy)
    if per_channel:
        mn, mx = torch.amin(x, dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)
    else:
        mn, mx = torch.aminmax(x)
    scale, zp = calculate_qparams(mn, mx, args)
    q = quantize(x, scale, zp, args)
    lo, hi = calculate_range(args, "cpu")
    case("compressed-tensors", "compressed-tensors",
         f"compressed_tensors.quantization.utils.helpers.calculate_qparams(min_vals, max_vals, "
         f"QuantizationArgs(num_bits={bits}, type='int', symmetric={sym}, strategy='{strategy}'))",
         name, flags(bits, sym, True, per_channel),
         scale=scale.numpy(), zero_point=zp.numpy(), qmin=int(lo), qmax=int(hi),
         rounding="torch.round: half to even (lifecycle.forward._quantize; zero point rounded by round_to_quantized_type_dtype)",
         q=quantized(name, q.numpy()),
         extra={"min_max": "torch.amin/amax over the tensor (per channel: over dim 1), as llm-compressor's MinMax observer feeds it",
                "quantize_function": "compressed_tensors.quantization.lifecycle.forward.quantize",
                "args_zp_dtype": str(args.zp_dtype), "args_scale_dtype": str(args.scale_dtype)})  # fmt: skip


# ---------------------------------------------------------------- optimum-quanto
def quanto_cases():
    for name in GENERAL:
        for per_channel in (False, True):
            one_quanto_int8(name, per_channel)
        one_quanto_int4(name, None)
        if TENSORS[name].shape[1] % 32 == 0:
            one_quanto_int4(name, 32)


@guarded("quanto int8")
def one_quanto_int8(name, per_channel):
    import torch
    from optimum.quanto import qint8
    from optimum.quanto.tensor.optimizers import AbsmaxOptimizer
    from optimum.quanto.tensor.weights.qbytes import WeightQBytesTensor

    x = torch.from_numpy(TENSORS[name])
    axis = 0 if per_channel else None
    scale = AbsmaxOptimizer()(x, qint8, axis)
    qt = WeightQBytesTensor.quantize(x, qint8, axis, scale, None, False)
    case("quanto", "optimum-quanto",
         f"optimum.quanto.tensor.optimizers.AbsmaxOptimizer()(x, qint8, axis={axis}) + WeightQBytesTensor.quantize",
         name, flags(8, True, True, per_channel),
         scale=qt._scale.numpy().astype(np.float32), zero_point=np.zeros(qt._scale.numel(), dtype=np.int64),
         qmin=-128, qmax=127, rounding="torch.round: half to even (library/quantize.py quantize_symmetric), clamp to int8 [-128, 127]",
         q=quantized(name, qt._data.numpy()),
         extra={"note": "scale = absmax / qint8.qmax; the grid itself stays [-128, 127]"})  # fmt: skip


@guarded("quanto int4")
def one_quanto_int4(name, group_size):
    import torch
    from optimum.quanto import qint4
    from optimum.quanto.tensor.optimizers import MaxOptimizer
    from optimum.quanto.tensor.weights.qbits import WeightQBitsTensor

    x = torch.from_numpy(TENSORS[name])
    scale, shift = MaxOptimizer()(x, qint4, axis=0, group_size=group_size)
    qt = WeightQBitsTensor.quantize(x, qint4, 0, group_size, scale, shift, False)
    data = qt._data
    data = data.unpack() if hasattr(data, "unpack") else data
    case("quanto", "optimum-quanto",
         f"optimum.quanto.tensor.optimizers.MaxOptimizer()(x, qint4, axis=0, group_size={group_size}) + WeightQBitsTensor.quantize",
         name, flags(4, False, False, group_size is None, block_size=group_size),
         scale=scale.numpy().astype(np.float32), zero_point=None, qmin=0, qmax=15,
         rounding="torch.round((x + shift) / scale): half to even, clamp to [0, 15] (library/quantize.py quantize_affine)",
         q=quantized(name, data.numpy()),
         extra={"shift": f32(shift.numpy()), "shift_meaning": "float shift = -rmin (x ~ q*scale - shift); not an integer zero point",
                "note": "qint4 weights are always affine (MaxOptimizer), per axis 0, optionally in groups along the other axis"})  # fmt: skip


# ---------------------------------------------------------------- llama.cpp (gguf)
def gguf_cases():
    for name in BLOCKED:
        for kind in ("Q8_0", "Q4_0", "Q4_1"):
            one_gguf(name, kind)


@guarded("gguf")
def one_gguf(name, kind):
    from gguf import GGMLQuantizationType
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.quants import dequantize, quantize

    qt = getattr(GGMLQuantizationType, kind)
    block, nbytes = GGML_QUANT_SIZES[qt]
    x = TENSORS[name]
    raw = np.asarray(quantize(x, qt))
    blocks = raw.reshape(-1, nbytes)
    deq = np.asarray(dequantize(raw, qt)).reshape(x.shape)
    # Read the stored block layout back (ggml-common.h: block_q8_0 {half d; int8 qs[32]},
    # block_q4_0 {half d; uint8 qs[16]}, block_q4_1 {half d; half m; uint8 qs[16]}; nibble j
    # holds element j in its low half and element j+16 in its high half).
    d = blocks[:, 0:2].copy().view(np.float16).ravel()
    m = None
    if kind == "Q8_0":
        q = blocks[:, 2:].view(np.int8).astype(np.int64)
        qmin, qmax, zp = -128, 127, np.zeros(len(d), dtype=np.int64)
        rounding = "np_roundf(x * (1/d)): half away from zero; d = absmax/127 in float32, 1/d from the UNROUNDED d, then d stored as fp16 (gguf/quants.py Q8_0.quantize_blocks)"
        sym, signed = True, True
    else:
        off = 2 if kind == "Q4_0" else 4
        if kind == "Q4_1":
            m = blocks[:, 2:4].copy().view(np.float16).ravel()
        packed = blocks[:, off:]
        q = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.int64)
        qmin, qmax = 0, 15
        zp = np.full(len(d), 8, dtype=np.int64) if kind == "Q4_0" else None
        rounding = (
            "Q4_0: d = (value of largest |x|) / -8; q = trunc(x*(1/d) + 8.5) clipped to [0,15]; 1/d from the unrounded float32 d, d stored fp16 (gguf/quants.py Q4_0.quantize_blocks)"
            if kind == "Q4_0"
            else "Q4_1: d = (max-min)/15, m = min; q = trunc((x-m)*(1/d) + 0.5) clipped to [0,15]; d and m stored fp16 (gguf/quants.py Q4_1.quantize_blocks)"
        )
        sym, signed = kind == "Q4_0", False
    case("llama.cpp", "gguf", f"gguf.quants.quantize(x, GGMLQuantizationType.{kind})", name,
         flags(8 if kind == "Q8_0" else 4, sym, signed, False, block_size=block, variant=kind),
         scale=d, zero_point=zp, qmin=qmin, qmax=qmax, rounding=rounding,
         q=quantized(name, q),
         extra={"ggml_type": kind, "blocks": int(len(d)), "block_bytes": int(nbytes),
                "block_min": None if m is None else f16(m),
                "stored_scale_meaning": {"Q8_0": "x ~ d*q, q int8", "Q4_0": "x ~ d*(q-8), q in [0,15], d may be negative",
                                         "Q4_1": "x ~ d*q + m, q in [0,15]"}[kind],
                "raw_blocks_hex": [bytes(b).hex() for b in blocks] if x.size <= MAX_STORED_INTS else None,
                "dequantized": f32(deq) if x.size <= 64 else None})  # fmt: skip


# ---------------------------------------------------------------- modelopt
def modelopt_cases():
    for name in GENERAL:
        for per_channel in (False, True):
            one_modelopt_int8(name, per_channel)
    for name in BLOCKED:
        one_modelopt_int4(name)


@guarded("modelopt int8")
def one_modelopt_int8(name, per_channel):
    import torch
    from modelopt.torch.quantization.qtensor.int8_tensor import INT8QTensor

    x = torch.from_numpy(TENSORS[name])
    axis = 0 if per_channel else None
    qt, scales = INT8QTensor.quantize(x, axis=axis)
    data = qt._quantized_data
    case("modelopt", "nvidia-modelopt",
         f"modelopt.torch.quantization.qtensor.int8_tensor.INT8QTensor.quantize(x, axis={axis})", name,
         flags(8, True, True, per_channel),
         scale=scales.numpy().astype(np.float32), zero_point=np.zeros(scales.numel(), dtype=np.int64),
         qmin=-128, qmax=127, rounding="torch.round: half to even, clamp [-128, 127] (int8_tensor.py)",
         q=quantized(name, data.numpy().astype(np.int64)))  # fmt: skip


@guarded("modelopt int4")
def one_modelopt_int4(name):
    import torch
    from modelopt.torch.quantization.qtensor.int4_tensor import INT4QTensor

    x = torch.from_numpy(TENSORS[name])
    out = INT4QTensor.quantize(x, 32)
    qt, scales = out[0], out[1]
    case("modelopt", "nvidia-modelopt", "modelopt.torch.quantization.qtensor.int4_tensor.INT4QTensor.quantize(x, block_size=32)",
         name, flags(4, True, True, False, block_size=32),
         scale=np.asarray(scales.numpy()).astype(np.float32), zero_point=None, qmin=-8, qmax=7,
         rounding="see int4_tensor.py (CPU path)",
         q=None, extra={"scale_meaning": "INT4QTensor stores the MULTIPLIER 7/amax per block, not amax/7",
                        "packed_uint8_hex": bytes(qt._quantized_data.numpy().astype(np.uint8).ravel()).hex()})  # fmt: skip


def main():
    INPUTS.mkdir(parents=True, exist_ok=True)
    for name, arr in TENSORS.items():
        np.save(INPUTS / f"{name}.npy", arr)
    suites = {"torch": (torch_cases, "torch"), "onnxruntime": (ort_cases, "onnxruntime"),
              "compressed-tensors": (ct_cases, "compressed-tensors"), "quanto": (quanto_cases, "optimum-quanto"),
              "llama.cpp": (gguf_cases, "gguf"), "modelopt": (modelopt_cases, "nvidia-modelopt")}  # fmt: skip
    summary = {}
    for conv, (fn, dist) in suites.items():
        before, missing_before = len(CASES), len(MISSING)
        if version(dist) == "not installed":
            MISSING.append(f"{conv}: {dist} not installed")
        else:
            try:
                fn()
            except Exception as exc:
                MISSING.append(f"{conv}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
        mine = CASES[before:]
        slug = conv.replace(".", "")
        (OUT / f"{slug}.json").write_text(json.dumps(
            {"convention": conv, "toolchain": dist, "toolchain_version": version(dist), "cases": mine},
            indent=1) + "\n")  # fmt: skip
        summary[conv] = {"toolchain": dist, "version": version(dist), "cases": len(mine),
                         "refused": MISSING[missing_before:]}  # fmt: skip
    summary["_versions"] = {d: version(d) for d in ("torch", "numpy", "onnx", "onnxruntime", "compressed-tensors",
                                                    "optimum-quanto", "gguf", "nvidia-modelopt")}  # fmt: skip
    summary["_python"] = sys.version.split()[0]
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v["cases"] for k, v in summary.items() if not k.startswith("_")}))


if __name__ == "__main__":
    main()
