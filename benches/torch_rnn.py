#!/usr/bin/env python3
"""PyTorch peer for `gfr network`: torch.nn.RNN / torch.nn.LSTM on line-by-line MNIST.

Runnable by hand (never by CI; it needs `pip install torch numpy`). It reads the same IDX
files as `gfr network --mnist-dir DIR` (plain or .gz), trains the same way (H hidden units,
rows of 28 pixels as 28 time steps, Adam, lr 1e-3, batch 64, cross-entropy on the last
step's readout) and prints seconds per epoch and test accuracy, so both can be compared in
one run on one machine:

    python3 benches/torch_rnn.py --mnist-dir data/mnist --model rnn --epochs 3
    gfr network --mnist-dir data/mnist --epochs 3 --save-dir S   # seconds per epoch in S/*.json

`--device cuda` runs it on a GPU; `--json FILE` writes the numbers.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch


def read_idx(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rb") as f:
                data = f.read()
            _, dtype, ndim = struct.unpack(">HBB", data[:4])
            dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    sys.exit(f"error: {path}[.gz] not found")


def load(d, split):
    x = read_idx(os.path.join(d, f"{split}-images-idx3-ubyte")).astype(np.float32) / 255.0
    y = read_idx(os.path.join(d, f"{split}-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


class Net(torch.nn.Module):
    def __init__(self, model, h):
        super().__init__()
        cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM}[model]
        self.rnn = cls(28, h, batch_first=True)
        self.out = torch.nn.Linear(h, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y[:, -1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mnist-dir", required=True)
    ap.add_argument("--model", choices=["rnn", "lstm"], default="rnn")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-nodes", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--no-mkldnn", action="store_true",
                    help="turn MKL-DNN (oneDNN) off: torch's other CPU RNN path, sometimes faster on small RNNs")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    xtr, ytr = load(a.mnist_dir, "train")
    xte, yte = load(a.mnist_dir, "t10k")
    xtr, ytr, xte, yte = xtr.to(dev), ytr.to(dev), xte.to(dev), yte.to(dev)
    net = Net(a.model, a.n_nodes).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    params = sum(p.numel() for p in net.parameters())
    print(f"torch {torch.__version__} {a.model} H={a.n_nodes} params={params} device={dev} "
          f"threads={torch.get_num_threads()} mkldnn={torch.backends.mkldnn.enabled} "
          f"train={len(xtr)} test={len(xte)}")
    epochs = []
    for e in range(a.epochs):
        t0 = time.perf_counter()
        net.train()
        perm = torch.randperm(len(xtr), device=dev)
        for i in range(0, len(xtr), a.batch_size):
            idx = perm[i : i + a.batch_size]
            loss = torch.nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        net.eval()
        with torch.no_grad():
            correct = sum(
                (net(xte[i : i + 1000]).argmax(1) == yte[i : i + 1000]).sum().item()
                for i in range(0, len(xte), 1000)
            )
        total_s = time.perf_counter() - t0
        acc = correct / len(xte)
        epochs.append({"epoch": e + 1, "train_seconds": train_s, "seconds": total_s, "test_accuracy": acc})
        print(f"epoch {e + 1}: {train_s:.2f} s train, {total_s:.2f} s with test, test accuracy {acc:.4f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"model": a.model, "n_nodes": a.n_nodes, "params": params, "device": str(dev),
                       "threads": torch.get_num_threads(), "torch": torch.__version__, "epochs": epochs}, f, indent=1)


if __name__ == "__main__":
    main()
