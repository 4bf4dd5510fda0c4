"""gfr.detect_spikes against IPFX's SpikeFeatureExtractor on the same arrays: the same spike
samples, and the speed ratio on a 10-sweep, 50 kHz, 10 s recording.

Run in a venv of its own (never CI), with the gfr package and IPFX installed:

    python3 -m venv /tmp/ipfx-venv
    /tmp/ipfx-venv/bin/pip install ./python ipfx
    /tmp/ipfx-venv/bin/python benches/spikes_vs_ipfx.py [--sweeps 10] [--seconds 10] [--repeat 3]

The traces are a leaky integrate-and-fire cell with spike waveforms driven by noisy steps
(numpy; seeded), so both detectors see realistic upstrokes, spike after spike.
"""

import argparse
import os
import time

# numpy's OpenBLAS threads spin between calls and take a core from whichever detector runs
# next (IPFX's work here is single-threaded numpy / scipy either way): one BLAS thread
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

import gfr

RATE = 50_000.0
SPIKE = np.concatenate([np.linspace(-50.0, 30.0, 15), np.linspace(30.0, -65.0, 60)])


def trace(seconds, seed):
    """(t s, v mV, i pA) of one sweep."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    i = np.zeros(n)
    on, off = int(0.5 * RATE), n - int(0.5 * RATE)
    smooth = np.convolve(rng.standard_normal(off - on), np.ones(250) / np.sqrt(250), mode="same")
    i[on:off] = 150.0 * (1.0 + 0.3 * seed % 3) + 60.0 * smooth
    dt, tau, el, vth, reset, gain = 1000.0 / RATE, 10.0, -70.0, -50.0, -65.0, 0.21
    v = np.empty(n)
    x, k = el, 0
    while k < n:
        x += dt * (-(x - el) + gain * i[k]) / tau
        if x >= vth:
            end = min(k + len(SPIKE), n)
            v[k:end] = SPIKE[: end - k]
            k, x = end, reset
            continue
        v[k] = x
        k += 1
    v += rng.standard_normal(n) * 0.15
    return np.arange(n) / RATE, v, i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweeps", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    from ipfx.feature_extractor import SpikeFeatureExtractor

    sweeps = [trace(a.seconds, s) for s in range(a.sweeps)]
    ext = SpikeFeatureExtractor(filter=10.0, dv_cutoff=20.0, min_peak=-30.0)

    def ipfx_all():
        return [ext.process(t, v, i) for t, v, i in sweeps]

    def gfr_all():
        return [gfr.detect_spikes(v, RATE) for _, v, _ in sweeps]

    def best(f):
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            out = f()
            times.append(time.perf_counter() - t0)
        return min(times), out

    def gfr_threads():
        # the GIL is released during detection: sweeps on every core from a thread pool
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(os.cpu_count()) as pool:
            return list(pool.map(lambda s: gfr.detect_spikes(s[1], RATE), sweeps))

    t_ipfx, by_ipfx = best(ipfx_all)
    t_gfr, by_gfr = best(gfr_all)
    t_pool, by_pool = best(gfr_threads)
    assert all(np.array_equal(a, b) for a, b in zip(by_gfr, by_pool))
    spikes = 0
    for k, (df, ours) in enumerate(zip(by_ipfx, by_gfr)):
        theirs = df["threshold_index"].to_numpy(dtype=np.int64) if len(df) else np.array([], np.int64)
        mine = np.floor(ours * RATE).astype(np.int64)
        if not np.array_equal(theirs, mine):
            raise SystemExit(f"sweep {k}: spike samples differ: IPFX {theirs[:10]}…, gfr {mine[:10]}…")
        spikes += len(mine)
    print(
        f"{a.sweeps} sweeps × {a.seconds:g} s at {RATE / 1000:g} kHz, {spikes} spikes: identical threshold samples"
    )
    print(f"IPFX SpikeFeatureExtractor: {t_ipfx:.3f} s   gfr.detect_spikes: {t_gfr:.4f} s   "
          f"→ gfr {t_ipfx / t_gfr:.0f}× IPFX's speed (best of {a.repeat})")
    print(f"gfr.detect_spikes from a thread pool ({os.cpu_count()} cores, the GIL released): "
          f"{t_pool:.4f} s → {t_ipfx / t_pool:.0f}×")


if __name__ == "__main__":
    main()
