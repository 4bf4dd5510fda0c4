#!/usr/bin/env python3
"""The published single-cell fitting procedure in PyTorch, as a peer for `gfr fit`.

A plain re-implementation of docs/spec §3 the way the published PyTorch code runs it (float32,
a Python loop over time bins, padded bins counted in the loss, no 100 ms activation fallback),
reading gfr's processed-data layout. It is a *peer for comparisons* (issue: "fitting, faithful
and better"), not part of gfr: run by hand, never by CI.

    python benches/torch_fit.py --data-dir DATA --cells DATA/cell_ids.csv \
        --config configs/default.json --out torch_fit.json [--threads 1] [--limit N]

Writes {cell_id: {"evr1", "evr2", "seconds", "runs"}} (atomically, after every cell, so an
interrupted run keeps its cells and `--out` of an earlier run is continued). Compare with
`gfr fit`'s summary by `python benches/compare_fits.py torch_fit.json P/bin20_actv20/fit_summary.json`.
"""

import argparse
import json
import math
import os
import pickle
import random
import sys
import time

import torch

TAUS = (10, 20, 50, 100, 200, 500, 1000, 2000)
FIRING_THRESHOLD = 0.01


def decay_rates(dt):
    return [1.0] + [1.0 - math.exp(-dt / tau) for tau in TAUS if tau >= dt]


def load_cell(data_dir, cell_id):
    with open(os.path.join(data_dir, "processed_data",
                           f"processed_I_and_firing_rate_{cell_id}.pickle"), "rb") as f:
        sweeps = pickle.load(f)
    with open(os.path.join(data_dir, "max_firing_rates", f"{cell_id}.pickle"), "rb") as f:
        gamma = float(pickle.load(f))
    return sweeps, gamma


class Activation(torch.nn.Module):
    """g(x) = γ · max(0, tanh(Σ c_k² ((x − b)/σ)^k))."""

    def __init__(self, b, c, sigma, gamma):
        super().__init__()
        self.b = torch.nn.Parameter(torch.tensor(float(b)))
        self.c = torch.nn.Parameter(torch.tensor(c, dtype=torch.float32))
        self.sigma, self.gamma = float(sigma), float(gamma)

    def forward(self, x):
        z = (x - self.b) / self.sigma
        poly = sum(self.c[k] ** 2 * z ** k for k in range(len(self.c)))
        return self.gamma * torch.relu(torch.tanh(poly))


def fit_activation(points, dt, gamma, cfg, degree, rng):
    xs = torch.tensor([p[0] for p in points], dtype=torch.float32)
    ys = torch.tensor([p[1] for p in points], dtype=torch.float32)
    sigma = max(abs(p[0]) for p in points) or 1.0
    pts = sorted(points)
    first = next((i for i, p in enumerate(pts) if p[1] > FIRING_THRESHOLD), None)
    x1, y1 = (0.0, 0.0) if first is None else pts[max(first - 1, 0)]
    x2, y2 = max(pts, key=lambda p: p[1])
    best = None
    for _ in range(cfg["activation_repeats"]):
        c = [rng.gauss(0.0, 0.1) for _ in range(degree + 1)]
        slope = abs((y2 - y1) / (x2 - x1) * sigma) if x2 != x1 else 1.0
        c[1] = slope if math.isfinite(slope) and slope > 0 else 1.0
        g = Activation(x1, c, sigma, gamma)
        opt = torch.optim.Adam(g.parameters(), lr=cfg.get("activation_lr", 0.05))
        for _ in range(cfg["activation_epochs"]):
            opt.zero_grad()
            mu = g(xs) * dt
            loss = (mu - ys * dt * torch.log(mu + cfg["eps"])).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            mu = g(xs) * dt
            final = float((mu - ys * dt * torch.log(mu + cfg["eps"])).sum())
        if best is None or final < best[0]:
            best = (final, g)
    return best[1]


class Gfr(torch.nn.Module):
    def __init__(self, lam, g):
        super().__init__()
        n = len(lam)
        self.keep = torch.tensor([1.0 - l for l in lam])
        self.alpha = torch.nn.Parameter(torch.tensor([float(n)] + [0.0] * (n - 1)))
        self.beta = torch.nn.Parameter(torch.zeros(n))
        self.g = g

    def forward(self, current):
        """current [B, T] (pA) → rate [B, T] (ms⁻¹)."""
        b, t_len = current.shape
        h = torch.zeros(b, len(self.keep))
        f = torch.zeros(b, 1)
        drive = current[:, :, None] * self.alpha  # α · I_t for every t at once
        feedback = 1000.0 * self.beta
        out = []
        for t in range(t_len):
            h = self.keep * h + drive[:, t] + feedback * f
            f = self.g(h.mean(-1, keepdim=True))
            out.append(f)
        return torch.cat(out, 1)


def pad(traces):
    t_len = max(len(x) for x in traces)
    out = torch.zeros(len(traces), t_len)
    for i, x in enumerate(traces):
        out[i, : len(x)] = torch.tensor(x, dtype=torch.float32)
    return out


def evr(model, group):
    cur, rates = group
    with torch.no_grad():
        pred = model(cur[:1])[0].double()
    reps = rates.double()
    n = min(pred.shape[0], reps.shape[1])
    pred, reps = pred[:n], reps[:, :n]
    mean = reps.mean(0)
    ev = lambda x, y: float(((x.var(unbiased=False) + y.var(unbiased=False) - (x - y).var(unbiased=False))
                             / (x.var(unbiased=False) + y.var(unbiased=False))))
    num = sum(ev(r, pred) for r in reps) / len(reps)
    den = sum(ev(r, mean) for r in reps) / len(reps)
    return num / den


def fit_cell(data_dir, cell_id, cfg, bin_size, actv_bin, degree, seed):
    sweeps, gamma = load_cell(data_dir, cell_id)
    rng = random.Random(seed * 1_000_003 + cell_id)
    torch.manual_seed(seed * 1_000_003 + cell_id)
    points = [(s["current"][actv_bin][0], s["firing_rate"][actv_bin][0])
              for s in sweeps if s["stimulus_name"] == "Long Square" and len(s["current"][actv_bin]) > 0]
    if not points:
        raise ValueError("no Long Square sweep")
    g = fit_activation(points, actv_bin, gamma, cfg, degree, rng)
    if cfg.get("freeze_activation", True):
        for p in g.parameters():
            p.requires_grad_(False)
    groups = {}
    for name in ("Long Square", "Ramp", "Noise 1", "Noise 2"):
        sel = [s for s in sweeps if s["stimulus_name"] == name and len(s["current"][bin_size]) > 0]
        if sel:
            groups[name] = (pad([s["current"][bin_size] for s in sel]),
                            pad([s["firing_rate"][bin_size] for s in sel]))
    if "Noise 1" not in groups or "Noise 2" not in groups:
        raise ValueError("no Noise 1 / Noise 2")
    train = [groups[n] for n in ("Long Square", "Ramp", "Noise 1") if n in groups]
    lam = decay_rates(bin_size)
    dt, eps, l1 = float(bin_size), cfg["eps"], cfg.get("C", 0.0)
    g_state = {k: v.clone() for k, v in g.state_dict().items()}
    best = None
    for run, hp in enumerate(cfg["hparams"]):
        g.load_state_dict(g_state)
        model = Gfr(lam, g)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=hp["lr"])
        losses = []
        for _ in range(hp["epochs"]):
            order = list(range(len(train)))
            rng.shuffle(order)
            epoch_loss = 0.0
            for i in order:
                cur, y = train[i]
                opt.zero_grad()
                mu = model(cur) * dt
                # the published loss: padded bins count
                per_sweep = (mu - y * dt * torch.log(mu + eps)).sum(1)
                loss = per_sweep.mean() + l1 * (model.alpha.abs().sum() + model.beta.abs().sum())
                loss.backward()
                opt.step()
                epoch_loss += float(per_sweep.detach().mean()) / cur.shape[1]
            losses.append(epoch_loss / len(train))
            if len(losses) >= 3 and losses[-1] == losses[-2] == losses[-3]:
                break
            if not math.isfinite(losses[-1]):
                break
        v = evr(model, groups["Noise 1"])
        if math.isfinite(v) and (best is None or v > best[0]):
            best = (v, evr(model, groups["Noise 2"]), run)
    if best is None:
        raise ValueError("every run gave a NaN validation EVR")
    return {"evr1": best[0], "evr2": best[1], "best_run": best[2]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--cells", help="cell id CSV (default DATA/cell_ids.csv)")
    ap.add_argument("--config", default="configs/default.json")
    ap.add_argument("--bin-size", type=int, default=20)
    ap.add_argument("--activation-bin-size", type=int, default=20)
    ap.add_argument("--degree", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int)
    ap.add_argument("--shard", default="0/1", help="K/N: every N-th cell from the K-th")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.config) as f:
        cfg = json.load(f)
    with open(a.cells or os.path.join(a.data_dir, "cell_ids.csv")) as f:
        ids = [int(x) for x in f.read().replace(",", "\n").split() if x.strip()]
    k, n = (int(x) for x in a.shard.split("/"))
    ids = ids[k::n][: a.limit]
    results = {}
    if os.path.exists(a.out):
        with open(a.out) as f:
            results = json.load(f)
    for i, cid in enumerate(ids):
        if str(cid) in results:
            continue
        t0 = time.time()
        try:
            r = fit_cell(a.data_dir, cid, cfg, a.bin_size, a.activation_bin_size, a.degree, a.seed)
        except Exception as e:  # one bad cell never stops the run
            r = {"error": str(e)}
        r["seconds"] = time.time() - t0
        results[str(cid)] = r
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, a.out)
        print(f"[{i + 1}/{len(ids)}] cell {cid}: {r}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
