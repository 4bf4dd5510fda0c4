#!/usr/bin/env python3
"""Per-cell test EVRs of fits side by side: `gfr fit` summaries and/or `torch_fit.py` results.

    python benches/compare_fits.py REFERENCE CANDIDATE [CANDIDATE ...]

Each file is a `fit_summary.json` of `gfr fit` (a list of cell reports) or the JSON of
`benches/torch_fit.py` ({cell_id: {"evr2": ...}}). Cells present in every file are compared:
per cell, the median, the change of the median, the worst and mean per-cell change against the
first file (REFERENCE), and mean seconds per cell. Standard library only.
"""

import json
import statistics as st
import sys


def load(path):
    """cell id → (test EVR, seconds)."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, list):  # gfr fit_summary.json
        return {int(r["cell_id"]): (r["test_evr"], r.get("seconds"))
                for r in data if r.get("test_evr") is not None and r.get("status") in ("saved", "kept")}
    return {int(k): (v["evr2"], v.get("seconds")) for k, v in data.items() if v.get("evr2") is not None}


def main(paths):
    if len(paths) < 2:
        sys.exit(__doc__)
    runs = [load(p) for p in paths]
    ids = sorted(set.intersection(*(set(r) for r in runs)))
    if not ids:
        sys.exit("no cell is in every file")
    print("cell        " + "  ".join(f"{i:>8}" for i in range(len(paths))))
    for c in ids:
        print(f"{c:<11} " + "  ".join(f"{r[c][0]:8.4f}" for r in runs))
    ref = [runs[0][c][0] for c in ids]
    print(f"\n{len(ids)} cells; file 0 = {paths[0]}: median test EVR {st.median(ref):.4f}")
    for i, (p, r) in enumerate(zip(paths[1:], runs[1:]), 1):
        ev = [r[c][0] for c in ids]
        diff = [b - a for a, b in zip(ref, ev)]
        secs = [r[c][1] for c in ids if r[c][1] is not None]
        worst = min(range(len(ids)), key=lambda k: diff[k])
        print(f"file {i} = {p}: median {st.median(ev):.4f} ({st.median(ev) - st.median(ref):+.4f}); "
              f"per cell: mean {st.mean(diff):+.4f}, worst {diff[worst]:+.4f} (cell {ids[worst]}), "
              f"{sum(d < -0.03 for d in diff)} cells below −0.03, {sum(d < -0.02 for d in diff)} below −0.02"
              + (f"; {st.mean(secs):.2f} s/cell" if secs else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
