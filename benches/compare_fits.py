#!/usr/bin/env python3
"""Per-cell test EVRs of fits side by side: `gfr fit` summaries and/or `torch_fit.py` results.

    python benches/compare_fits.py REFERENCE CANDIDATE [CANDIDATE ...] [--ceiling DATA_DIR [--bin-size 20]]

Each file is a `fit_summary.json` of `gfr fit` (a list of cell reports) or the JSON of
`benches/torch_fit.py` ({cell_id: {"evr2": ...}}). Cells present in every file are compared:
per cell, the median, the change of the median, the worst and mean per-cell change against the
first file (REFERENCE), and mean seconds per cell. Standard library only.

`--ceiling DATA_DIR` adds each cell's noise ceiling: the test EVR a perfect model would get on
its Noise 2 repeats (DATA_DIR/processed_data, at `--bin-size`). With repeats R_j = s + n_j
(signal variance S, independent noise of variance N), two repeats explain EV_1 = S / (S + N) of
each other, so S / N = EV_1 / (1 − EV_1); the true rate s would get EV = 2S / (2S + N), and the
EVR divides by the data's own EV against the PSTH (as gfr's EVR does). A fit within about 0.02
of its ceiling (the estimate's own noise) cannot get better on that cell.
"""

import json
import os
import pickle
import statistics as st
import sys


def load(path):
    """cell id → (test EVR, seconds)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"error: cannot read {path}: {e}")
    if isinstance(data, list):  # gfr fit_summary.json
        # a row with a test EVR is a result: written now ("saved"), made but not kept over a
        # better saved one ("kept-previous"), or fitted earlier with this config ("skipped" by
        # --resume: no seconds of its own)
        return {int(r["cell_id"]): (r["test_evr"], r.get("seconds") if r.get("status") != "skipped" else None)
                for r in data if r.get("test_evr") is not None
                and r.get("status") in ("saved", "kept-previous", "skipped")}
    return {int(k): (v["evr2"], v.get("seconds")) for k, v in data.items() if v.get("evr2") is not None}


def _var(x):
    m = sum(x) / len(x)
    return sum((v - m) ** 2 for v in x) / len(x)


def _ev(x, y):
    vx, vy = _var(x), _var(y)
    vd = _var([a - b for a, b in zip(x, y)])
    return (vx + vy - vd) / (vx + vy) if vx + vy > 0 else float("nan")


def noise_ceiling(data_dir, cell, bin_size):
    """The test EVR of a perfect model on the cell's Noise 2 repeats (see the module doc)."""
    path = os.path.join(data_dir, "processed_data", f"processed_I_and_firing_rate_{cell}.pickle")
    try:
        with open(path, "rb") as f:
            sweeps = pickle.load(f)
    except OSError as e:
        print(f"note: no noise ceiling for cell {cell}: {e}", file=sys.stderr)
        return float("nan")
    reps = [s["firing_rate"][bin_size] for s in sweeps if s["stimulus_name"] == "Noise 2"]
    if len(reps) < 2:
        return float("nan")
    n = min(len(r) for r in reps)
    reps = [list(r[:n]) for r in reps]
    pairs = [_ev(a, b) for i, a in enumerate(reps) for b in reps[i + 1:]]
    ev1 = sum(pairs) / len(pairs)
    if not 0 < ev1 < 1:
        return float("nan")
    sn = ev1 / (1 - ev1)
    ev_true = 2 * sn / (2 * sn + 1)
    psth = [sum(r[t] for r in reps) / len(reps) for t in range(n)]
    ev_data = sum(_ev(r, psth) for r in reps) / len(reps)
    return ev_true / ev_data


def main(argv):
    paths, ceiling_dir, bin_size = [], None, 20
    it = iter(argv)
    for a in it:
        if a in ("--ceiling", "--bin-size"):
            value = next(it, None)
            if value is None or value.startswith("--"):
                sys.exit(f"error: {a} needs a value\n{__doc__}")
            if a == "--ceiling":
                ceiling_dir = value
            else:
                bin_size = int(value)
        else:
            paths.append(a)
    if len(paths) < 2:
        sys.exit(__doc__)
    runs = [load(p) for p in paths]
    ids = sorted(set.intersection(*(set(r) for r in runs)))
    if not ids:
        sys.exit("no cell is in every file")
    ceiling = {c: noise_ceiling(ceiling_dir, c, bin_size) for c in ids} if ceiling_dir else {}
    print("cell        " + "  ".join(f"{i:>8}" for i in range(len(paths)))
          + ("   ceiling" if ceiling else ""))
    for c in ids:
        print(f"{c:<11} " + "  ".join(f"{r[c][0]:8.4f}" for r in runs)
              + (f"  {ceiling[c]:8.4f}" if ceiling else ""))
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
    if ceiling:
        known = [c for c in ids if ceiling[c] == ceiling[c]]
        if not known:
            print("no cell has a noise ceiling (three Noise 2 repeats in DATA_DIR)")
            return
        print(f"noise ceiling (Noise 2, bin {bin_size}): median {st.median(ceiling[c] for c in known):.4f} "
              f"over {len(known)} cells")
        for i, (p, r) in enumerate(zip(paths, runs)):
            gap = [r[c][0] - ceiling[c] for c in known]
            print(f"file {i}: EVR − ceiling median {st.median(gap):+.4f}; "
                  f"{sum(g > -0.02 for g in gap)} of {len(gap)} cells within 0.02 of their ceiling")


if __name__ == "__main__":
    main(sys.argv[1:])
