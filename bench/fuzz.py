"""A long fuzz run of the `qcalc` command line over every kind of hostile input.

    python bench/fuzz.py [--minutes 5] [--seed 0] [--jobs 2] [--only npy,recipe] [--keep DIR]

Each case writes a hostile input of one class into a fresh directory and runs one `qcalc`
command on it in its own process, with a time limit (--timeout, 20 s) and an address-space
limit (--memory, 4 GB). A run is fine when it exits 0 (or 1 for `diff` / `check` verdicts)
with its stderr lines all "qcalc: note/warning", or exits 2 with exactly one stderr line
"qcalc: error: ..."; anything else is a finding: a traceback, an internal error (exit 3), a
message of several lines or with raw control characters, another exit code, a hang, memory
exhausted. Findings are kept under --keep (inputs + command + output) and counted per class.

Classes: npy, safetensors, npz, shards, dirs (trees, links, FIFOs), encodings (AIMET JSON),
recipe (TOML), values (extreme numbers under every analyzer and flag), argv (random command
lines). Generators mutate valid files (bytes flipped, cut, headers rewritten) as well as
build hostile ones from scratch, with the shapes of the known attacks (huge or negative dims,
deep nesting, control characters in names, duplicate members, path escapes, FIFOs).
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_tensors"
NAMES = [
    "w",
    "a.b.weight",
    "x\ny",
    "\x1b[2J",
    "é✓",
    "../up",
    "a" * 300,
    "",
    " ",
    "w\x00",
    "q\u202e",
]
FLOATS = ["<f4", "<f2", "<f8", ">f4", "<i4", "|b1", "<c8", "|O", "<U3", "V4", "<f16"]
ST_DTYPES = ["F32", "F16", "BF16", "F64", "F8_E4M3", "F8_E5M2", "I32", "BOOL", "X9", ""]
EXTREMES = [0.0, -0.0, 1.0, -1.0, 1e-45, 1e-38, 6e4, 65504.0, 3.4e38, -3.4e38, 1.7e308,
            -1.7e308, 1e-310, float("inf"), float("-inf"), float("nan")]  # fmt: skip


def weird_int(rng: random.Random) -> object:
    return rng.choice([0, 1, 2, 3, -1, -(2**31), 2**31, 2**32 - 1, 2**62, 2**63, 2**64,
                       10**30, 10**400, True, 1.5, "3", None])  # fmt: skip


def mutate(data: bytes, rng: random.Random) -> bytes:
    """`data` with a few bytes flipped, a piece cut, or bytes spliced in."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.5 and data:
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        elif choice < 0.7 and data:
            del data[rng.randrange(len(data)) :]
        elif data:
            i = rng.randrange(len(data))
            data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(data)


def array(rng: random.Random) -> np.ndarray:
    shape = [rng.choice([1, 2, 3, 4, 8, 16]) for _ in range(rng.randint(0, 3))]
    values = np.array([rng.choice(EXTREMES) if rng.random() < 0.2 else rng.gauss(0, 1)
                       for _ in range(int(np.prod(shape)))], dtype=np.float64)  # fmt: skip
    dtype = rng.choice([np.float32, np.float16, np.float64])
    with np.errstate(all="ignore"):
        return values.astype(dtype).reshape(shape)


def npy_bytes(rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array(rng))
    data = buffer.getvalue()
    if rng.random() < 0.5:
        return mutate(data, rng)
    shape = tuple(weird_int(rng) for _ in range(rng.choice([0, 1, 2, 3, 64])))
    header = "{'descr': %r, 'fortran_order': %s, 'shape': %r, }" % (
        rng.choice(FLOATS), rng.choice(["False", "True", "0"]), shape)  # fmt: skip
    header = header.encode("latin1", "replace")
    version = rng.choice([1, 2, 3])
    size = struct.pack("<H" if version == 1 else "<I", len(header) + 1 if rng.random() < 0.9 else 2**32 - 1 if version > 1 else 65535)  # fmt: skip
    return b"\x93NUMPY" + bytes([version, 0]) + size + header + b"\n" + data[128:]


def safetensors_bytes(rng: random.Random) -> bytes:
    header: dict = {}
    offset = 0
    for _ in range(rng.randint(0, 4)):
        shape = [rng.choice([0, 1, 2, 4, 8, 2**63, -1, 10**30]) for _ in range(rng.randint(0, 3))]
        size = rng.choice([0, 4, 16, 64, 2**40])
        name = rng.choice(NAMES) + str(rng.randint(0, 3))
        header[name] = {"dtype": rng.choice(ST_DTYPES), "shape": shape,
                        "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size if rng.random() < 0.8 else -size
    if rng.random() < 0.2:
        header["__metadata__"] = rng.choice([{"a": "b"}, {"a": 1}, [1], "x"])
    text = json.dumps(header)
    if rng.random() < 0.1:
        text = "[" * 100_000 + "]" * 100_000
    if rng.random() < 0.1:
        text = text[:-1] + ', "w0": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    raw = text.encode("utf-8", "replace")
    length = len(raw) if rng.random() < 0.9 else rng.choice([0, 2**64 - 1, len(raw) + 7])
    data = struct.pack("<Q", length) + raw + os.urandom(min(max(offset, 0), 4096))
    return mutate(data, rng) if rng.random() < 0.3 else data


def write_npz(path: Path, rng: random.Random) -> None:
    compression = rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
    with zipfile.ZipFile(path, "w", compression) as archive:
        for _ in range(rng.randint(0, 5)):
            name = rng.choice(NAMES + ["w.npy", "w.npy", "d/", "x"])
            archive.writestr(name, npy_bytes(rng) if rng.random() < 0.5 else _valid_npy(rng))
    if rng.random() < 0.4:
        path.write_bytes(mutate(path.read_bytes(), rng))


def _valid_npy(rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array(rng))
    return buffer.getvalue()


def case_npy(d: Path, rng: random.Random) -> list[str]:
    (d / "x.npy").write_bytes(npy_bytes(rng))
    return [rng.choice(["encode", "ls", "check"]), "x.npy"]


def case_safetensors(d: Path, rng: random.Random) -> list[str]:
    (d / "m.safetensors").write_bytes(safetensors_bytes(rng))
    return [
        rng.choice(["encode", "ls", "check"]),
        "m.safetensors",
        *rng.choice([[], ["--per-channel"]]),
    ]


def case_npz(d: Path, rng: random.Random) -> list[str]:
    write_npz(d / "m.npz", rng)
    return [rng.choice(["encode", "ls"]), "m.npz"]


def case_shards(d: Path, rng: random.Random) -> list[str]:
    (d / "a.safetensors").write_bytes(safetensors_bytes(rng))
    shutil.copy(SAMPLES / "model_f32.safetensors", d / "b.safetensors")
    targets = [
        "a.safetensors",
        "b.safetensors",
        "../b.safetensors",
        "/etc/passwd",
        "missing",
        "",
        ".",
    ]
    weight_map = {rng.choice(NAMES + ["fc.weight", "conv1.weight"]): rng.choice(targets)
                  for _ in range(rng.randint(0, 5))}  # fmt: skip
    index = (
        {"weight_map": weight_map}
        if rng.random() < 0.9
        else rng.choice([[], {"weight_map": 3}, "x"])
    )
    text = json.dumps(index) if rng.random() < 0.9 else "{" * 50_000
    (d / "m.safetensors.index.json").write_text(text)
    return [rng.choice(["encode", "ls"]), "m.safetensors.index.json"]


def case_dirs(d: Path, rng: random.Random) -> list[str]:
    root = d / "in"
    folder = root
    for level in range(rng.choice([1, 2, 5, 600])):
        folder = folder / f"l{level}"
    folder.mkdir(parents=True)
    with np.errstate(over="ignore"):  # float64 extremes beyond float32: wanted
        np.save(folder / "b0.npy", array(rng).astype(np.float32))
    (root / "x.npy").write_bytes(npy_bytes(rng))
    kind = rng.random()
    if kind < 0.25:
        os.symlink(root, root / "loop")
    elif kind < 0.5:
        os.symlink("/", root / "slash")
    elif kind < 0.75:
        os.mkfifo(root / "fifo.npy")
    else:
        os.symlink(root / "missing.npy", root / "dangling.npy")
    return [rng.choice(["encode", "ls"]), "in"]


def encodings_text(rng: random.Random, d: Path) -> str:
    version = rng.choice(["0.6.1", "1.0.0", "2.0.0", "2.1.0"])
    source = d / "valid.encodings"
    flags = rng.choice(
        [
            [],
            ["--per-channel", "--symmetric"],
            ["--symmetric", "-b", "4", "--block-size", "32", "--lpbq"],
        ]
    )
    include = ["--include", "fc.weight"] if "--lpbq" in flags else []
    run([sys.executable, "-m", "qcalc", "encode", str(SAMPLES / "model_f32.safetensors"), *flags, *include,
         "--encoding-version", version, "-o", str(source)], 30, 4 << 30)  # fmt: skip
    obj = json.loads(source.read_text()) if source.exists() else {"version": version}
    for _ in range(rng.randint(1, 4)):
        obj = poke(obj, rng)
    text = json.dumps(obj)
    return mutate(text.encode(), rng).decode("utf-8", "replace") if rng.random() < 0.2 else text


def poke(obj: object, rng: random.Random, depth: int = 0) -> object:
    """`obj` with one value somewhere replaced by something hostile."""
    replacement = rng.choice([-1.0, 0.0, float("nan"), 1e400, "x\ny", None, True, [], {}, [[1]],
                              2**70, -(2**70), 1.5, "int8", "uint99", [1.0] * 3])  # fmt: skip
    if isinstance(obj, dict) and obj and depth < 6 and rng.random() < 0.8:
        key = rng.choice(list(obj))
        obj[key] = poke(obj[key], rng, depth + 1)
        if rng.random() < 0.1:
            obj.pop(rng.choice(list(obj)), None)
        return obj
    if isinstance(obj, list) and obj and depth < 6 and rng.random() < 0.8:
        i = rng.randrange(len(obj))
        obj[i] = poke(obj[i], rng, depth + 1)
        if rng.random() < 0.1:
            obj.append(obj[0])
        return obj
    return replacement  # NaN / inf are written as the NaN / Infinity tokens Python's json reads


def case_encodings(d: Path, rng: random.Random) -> list[str]:
    (d / "e.json").write_text(encodings_text(rng, d), errors="replace")
    command = rng.choice([["show", "e.json"], ["diff", "e.json", "valid.encodings"],
                          ["convert", "e.json", "--to", rng.choice(["0.6.1", "1.0.0", "2.0.0", "2.1.0"]), "-o", "out.json"],
                          ["check", str(SAMPLES / "model_f32.safetensors"), "--encodings", "e.json"]])  # fmt: skip
    return command


RECIPE_KEYS = ["bitwidth", "symmetric", "signed", "strict_symmetric", "per_channel", "axis", "block_size",
               "block_axis", "lpbq", "decompressed_bitwidth", "analyzer", "percentile", "num_bins", "skip", "kind"]  # fmt: skip
TOML_VALUES = ["true", "false", "0", "-1", "8", "2048", "1e400", "nan", "inf", '"sqnr"', '"x"', "[1, 2]",
               "99.9", "100", "50", "4611686018427387904", "1" + "0" * 400, "{ a = 1 }"]  # fmt: skip


def case_recipe(d: Path, rng: random.Random) -> list[str]:
    rules = []
    for _ in range(rng.randint(0, 4)):
        lines = ["[[rule]]", f"match = {json.dumps(rng.choice(['*', '*.weight', 'fc.*', '']))}"]
        lines += [
            f"{rng.choice(RECIPE_KEYS)} = {rng.choice(TOML_VALUES)}"
            for _ in range(rng.randint(0, 4))
        ]
        rules.append("\n".join(lines))
    text = "\n\n".join(rules)
    if rng.random() < 0.1:
        text = "a = " + "[" * 5000 + "]" * 5000
    if rng.random() < 0.1:
        text = mutate(text.encode(), rng).decode("latin1")
    (d / "r.toml").write_text(text, encoding="utf-8", errors="replace")
    return [rng.choice(["encode", "check"]), str(SAMPLES / "model_f32.safetensors"), "--recipe", "r.toml",
            *rng.choice([[], ["--activations", str(SAMPLES / "activations")]])]  # fmt: skip


def case_values(d: Path, rng: random.Random) -> list[str]:
    dtype = rng.choice([np.float16, np.float32, np.float64])
    shape = (rng.choice([1, 2, 4, 16]), rng.choice([1, 4, 32, 64]))
    pool = EXTREMES + [rng.gauss(0, 1) for _ in range(4)]
    values = np.array([rng.choice(pool) for _ in range(shape[0] * shape[1])]).reshape(shape)
    with np.errstate(all="ignore"):
        np.save(d / "x.npy", values.astype(dtype))
    flags = []
    for option, choices in (("--analyzer", ["minmax", "percentile", "sqnr", "tf-enhanced"]),
                            ("--nonfinite", ["error", "ignore", "keep"]),
                            ("--compute-dtype", ["float32", "input"]), ("-b", ["2", "4", "8", "16", "32"])):  # fmt: skip
        if rng.random() < 0.7:
            flags += [option, rng.choice(choices)]
    flags += rng.choice([[], ["--per-channel"], ["--symmetric"], ["--per-channel", "--block-size", "16"],
                         ["--symmetric", "--block-size", "16", "--lpbq", "-b", "4"]])  # fmt: skip
    command = rng.choice(["encode", "encode", "check", "hist", "ls"])
    if command == "ls":
        return ["ls", "x.npy"]
    if command == "hist":
        flags = [f for f in flags if f not in ("--nonfinite", "error", "ignore", "keep")] + [
            "-t",
            "x",
        ]
    if command == "check":
        flags = [f for f in flags if f not in ("--nonfinite", "error", "ignore", "keep")]
    if command == "encode" and rng.random() < 0.5:
        flags += ["-o", "out.json", "--encoding-version", rng.choice(["1.0.0", "2.0.0"])]
    return [command, "x.npy", *flags]


def case_argv(d: Path, rng: random.Random) -> list[str]:
    words = ["encode", "check", "ls", "hist", "show", "diff", "convert", "--per-channel", "--axis", "-b",
             "--block-size", "--block-axis", "--lpbq", "--symmetric", "--signed", "--unsigned", "--strict-symmetric",
             "--analyzer", "percentile", "--percentile", "--num-bins", "-f", "json", "csv", "-o", "out.json",
             "--include", "--exclude", "*", "fc.weight", "-t", "--channel", "--min-sqnr", "--max-clip", "--metrics",
             "0", "-1", "3", "99999999999999999999", "nan", "1e400", str(SAMPLES / "model_bf16.safetensors"),
             str(SAMPLES / "seed.npy"), str(SAMPLES / "activations"), "--activations", "\x1b[2J", "x\ny", ""]  # fmt: skip
    return [rng.choice(words[:7])] + [rng.choice(words) for _ in range(rng.randint(0, 8))]


CLASSES = {
    "npy": case_npy, "safetensors": case_safetensors, "npz": case_npz, "shards": case_shards,
    "dirs": case_dirs, "encodings": case_encodings, "recipe": case_recipe, "values": case_values,
    "argv": case_argv,
}  # fmt: skip


def run(command: list[str], timeout: float, memory: int, cwd: Path | None = None):
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    env.pop("QCALC_DEBUG", None)
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, timeout=timeout, env=env,
                              preexec_fn=limits, stdin=subprocess.DEVNULL)  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    return done


def verdict(argv: list[str], done) -> str:
    """'ok' or what is wrong with one run."""
    if done is None:
        return "hang"
    stderr = done.stderr.decode("utf-8", "replace")
    lines = stderr.splitlines()
    if "Traceback" in stderr:
        return "traceback"
    if "MemoryError" in stderr or done.returncode in (-9, 137):
        return "memory"
    if done.returncode == 3:
        return "internal"
    if any(ord(c) < 32 and c not in "\n\t" for c in stderr):
        return "control-chars"
    if done.returncode == 2:
        if (
            len(lines) != 1
            or not lines[0].startswith("qcalc: error: ")
            and not lines[0].startswith("Try ")
        ):
            return "usage" if "Usage:" in stderr else "several-lines"
        return "ok"
    if done.returncode in (0, 1):
        if done.returncode == 1 and argv[0] not in ("diff", "check"):
            return "exit-1"
        extra = [
            line for line in lines if not line.startswith(("qcalc: note: ", "qcalc: warning: "))
        ]
        return "stray-stderr" if extra else "ok"
    return f"exit-{done.returncode}"


def one_case(index: int, classes: list[str], seed: int, args) -> tuple[str, str, object]:
    rng = random.Random(f"{seed}-{index}")
    kind = classes[index % len(classes)]
    with tempfile.TemporaryDirectory(prefix="qcalc-fuzz-") as folder:
        d = Path(folder)
        try:
            argv = CLASSES[kind](d, rng)
        except Exception as error:  # the generator hit a limit of its own (zipfile, json)
            return kind, "skipped", repr(error)
        done = run([sys.executable, "-m", "qcalc", *argv], args.timeout, args.memory, cwd=d)
        result = verdict(argv, done)
        if result not in ("ok", "usage") and args.keep:
            keep = Path(args.keep) / f"{kind}-{index}-{result}"
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
            for item in d.iterdir():  # the top of the case: its files and links, not deep trees
                if item.is_file() and not item.is_symlink():
                    shutil.copy(item, keep / item.name)
            (keep / "COMMAND").write_text(json.dumps(argv))
            if done is not None:
                (keep / "STDERR").write_bytes(done.stderr[-20000:])
                (keep / "STDOUT").write_bytes(done.stdout[-20000:])
        return kind, result, argv


def main() -> None:
    warnings.filterwarnings("ignore", category=UserWarning, module="zipfile")  # duplicates: wanted
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", default=",".join(CLASSES))
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--memory", type=int, default=4 << 30)
    parser.add_argument("--keep", default=str(REPO / "bench" / "out" / "fuzz"))
    args = parser.parse_args()
    classes = args.only.split(",")
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    deadline = time.monotonic() + 60 * args.minutes
    started, index = time.monotonic(), 0
    with ThreadPoolExecutor(args.jobs) as pool:
        while time.monotonic() < deadline:
            batch = [
                pool.submit(one_case, index + k, classes, args.seed, args)
                for k in range(4 * args.jobs)
            ]
            index += len(batch)
            for future in batch:
                kind, result, argv = future.result()
                counts[kind][result] += 1
                if result not in ("ok", "usage", "skipped"):
                    print(f"{kind}: {result}: qcalc {' '.join(map(repr, argv))}", flush=True)
    print(f"\n{index} cases in {time.monotonic() - started:.0f} s (seed {args.seed})")
    total = collections.Counter()
    for kind in classes:
        total.update(counts[kind])
        print(f"{kind:12} " + ", ".join(f"{k} {v}" for k, v in sorted(counts[kind].items())))
    bad = sum(v for k, v in total.items() if k not in ("ok", "usage", "skipped"))
    print(
        f"{'all':12} "
        + ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
        + f"; findings {bad}"
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
