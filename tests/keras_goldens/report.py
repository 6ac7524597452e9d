"""Print the table of max differences: oracle vs Keras, arraymel (each path) vs Keras and vs the oracle.

    .venv/bin/python tests/keras_goldens/report.py            # all cases
    .venv/bin/python tests/keras_goldens/report.py --json out.json

dB cases show the max |difference| within 80 dB of the maximum (docs/semantics.md's strict region; the
part below 80 dB is shown after a slash when there is one); power cases the max relative
difference ``|a - b| / (|b| + 1e-6 max|b|)``. Columns:

* ``oracle~K``: tests/oracle.py (float64) vs the Keras golden (docs/semantics.md: <= 2e-3 dB expected
  except where Keras's float32 filterbank is itself further away: see cases.json).
* ``auto~K``, ``gen~K``, ``strict~K``: arraymel float32 on the NumPy fast path, the generic path on
  NumPy and the generic path on array-api-strict, vs the Keras golden (docs/semantics.md: <= 2e-3 dB).
* ``auto~O``, ``gen~O``: the same float32 runs vs the oracle (docs/semantics.md: <= 1e-3 dB).
* ``auto64~O``, ``gen64~O``: float64 input vs the oracle (docs/semantics.md: <= 1e-9 dB).
A cell ``ERR`` means arraymel raised; the exception is printed below the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import oracle  # noqa: E402
from _helpers import to_numpy  # noqa: E402


def load():
    meta = json.loads((HERE / "cases.json").read_text())
    with np.load(HERE / "goldens.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def diff(a, b, power_to_db: bool) -> str:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return f"shape{a.shape}"
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        return "NaN-pos"
    fin = ~np.isnan(b)
    if not fin.any():
        return "all-NaN ok"
    d = np.abs(a - b)
    if power_to_db:
        near = fin & (b >= b[fin].max() - 80.0)
        far = fin & ~near
        s = f"{d[near].max():.1e}"
        if far.any():
            s += f"/{d[far].max():.1e}"
        return s
    scale = np.abs(b[fin]).max()
    return f"r{np.max(d[fin] / (np.abs(b[fin]) + 1e-6 * scale)):.1e}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="max differences per case and path")
    ap.add_argument("--json", help="also write the table as JSON here")
    args = ap.parse_args(argv)
    import array_api_strict as strict

    import arraymel

    meta, arrays = load()
    cols = ["oracle~K", "auto~K", "gen~K", "strict~K", "auto~O", "gen~O", "auto64~O", "gen64~O"]
    rows, errors = {}, []
    for case in meta["cases"]:
        name = case["name"]
        params = dict(case["params"])
        if isinstance(params.get("window"), dict):
            params["window"] = arrays[params["window"]["array"]]
        x, golden = arrays[f"{name}__x"], arrays[f"{name}__y"]
        db = params.get("power_to_db", True)
        x32 = x if x.dtype != np.float64 else x.astype(np.float32)
        x64 = x.astype(np.float64)
        o32 = oracle.mel_spectrogram(x32, **params)
        o64 = oracle.mel_spectrogram(x64, **params)
        row = {"oracle~K": diff(oracle.mel_spectrogram(x, **params), golden, db)}

        def run(label, arr, backend, ref):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # empty-band notices
                    out = arraymel.mel_spectrogram(arr, backend=backend, **params)
                row[label] = diff(to_numpy(out), ref, db)
            except Exception as exc:  # report, keep going
                row[label] = "ERR"
                errors.append(f"{name} {label}: {type(exc).__name__}: {exc}")

        # vs Keras: the input exactly as Keras got it (float64 input stays float64 for arraymel)
        run("auto~K", x, "auto", golden)
        run("gen~K", x, "generic", golden)
        run("strict~K", strict.asarray(x), "generic", golden)
        run("auto~O", x32, "auto", o32)
        run("gen~O", x32, "generic", o32)
        run("auto64~O", x64, "auto", o64)
        run("gen64~O", x64, "generic", o64)
        rows[name] = row
    width = max(len(n) for n in rows)
    print(f"Keras {meta['keras_version']} ({meta['keras_backend']} backend) goldens, {len(rows)} cases")
    print(f"{'case':{width}s} " + " ".join(f"{c:>17s}" for c in cols))
    for name, row in rows.items():
        print(f"{name:{width}s} " + " ".join(f"{row.get(c, '-'):>17s}" for c in cols))
    for e in errors:
        print("ERROR", e)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
