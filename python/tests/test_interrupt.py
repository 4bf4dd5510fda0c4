"""Ctrl-C (SIGINT) stops a fit or a network run within about a second, as KeyboardInterrupt,
leaving what `resume=True` goes on from; the resumed fit equals an uninterrupted one."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import gfr

SLOW = {
    "config_name": "py-interrupt",
    "activation_epochs": 50,
    "activation_repeats": 1,
    "freeze_activation": True,
    "eps": 1e-8,
    "hparams": [{"lr": 1e-2, "epochs": 60}, {"lr": 1e-3, "epochs": 60}, {"lr": 1e-4, "epochs": 60}],
    "finetune": False,
    "retrain_model": True,
}


# Python's own Ctrl-C handler, as in a terminal: a process started in the background by a
# non-interactive shell (CI, nohup) inherits SIGINT ignored, and Python then keeps it ignored.
SIGINT_AS_IN_A_TERMINAL = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


def interrupt_when(script, ready, timeout=300):
    """Runs `script` in a Python subprocess with Python's Ctrl-C handler, sends it SIGINT once
    `ready()` is true, and returns (seconds from the signal to its exit, its stdout + stderr,
    its exit status)."""
    p = subprocess.Popen(
        [sys.executable, "-c", SIGINT_AS_IN_A_TERMINAL + script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    start = time.time()
    while not ready():
        if p.poll() is not None:
            raise AssertionError("ended before it could be interrupted:\n" + p.stdout.read())
        if time.time() - start > timeout:
            p.kill()
            raise AssertionError("never became ready")
        time.sleep(0.02)
    sent = time.time()
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=60)
    return time.time() - sent, out, p.returncode


def test_ctrl_c_stops_a_fit_and_resume_finishes_it(tmp_path):
    data = tmp_path / "data"
    ids = gfr.simulate(4, seed=11, data_dir=data, progress=False)
    # the uninterrupted fit, for comparison
    whole = gfr.fit(ids, data_dir=data, config=SLOW, save_path=tmp_path / "whole", batch_cells=2, progress=False)
    save = tmp_path / "cut"
    script = textwrap.dedent(
        f"""
        import gfr, sys
        try:
            gfr.fit({ids!r}, data_dir={str(data)!r}, config={SLOW!r}, save_path={str(save)!r},
                    batch_cells=2, progress=False)
        except KeyboardInterrupt as e:
            print("INTERRUPTED:", e)
            sys.exit(7)
        print("FINISHED")
        """
    )
    pair = save / "bin20_actv20"
    # once the first batch has saved a partial result (its first run done)
    took, out, code = interrupt_when(script, lambda: pair.is_dir() and any(pair.glob("*.pickle")))
    assert code == 7, out
    assert "INTERRUPTED" in out and "resume" in out
    assert took < 3.0, f"took {took:.2f} s to stop"
    assert not (pair / "fit_summary.json").exists()
    resumed = gfr.fit(ids, data_dir=data, config=SLOW, save_path=save, batch_cells=2, resume=True, progress=False)
    assert [r["status"] for r in resumed] == ["saved"] * 4
    for i in ids:
        a = (tmp_path / "whole" / "bin20_actv20" / f"{i}.pickle").read_bytes()
        b = (pair / f"{i}.pickle").read_bytes()
        assert a == b, f"cell {i}: the resumed fit differs from the uninterrupted one"
    assert [r["val_evr"] for r in resumed] == [r["val_evr"] for r in whole]


def test_ctrl_c_stops_a_network_run_and_resume_goes_on(tmp_path):
    save = tmp_path / "net"
    args = dict(epochs=3, n_nodes=16, batch_size=16, train_limit=2000, test_limit=64, offline=True,
                mnist_dir=str(tmp_path / "none"), save_dir=str(save), progress=False)
    script = textwrap.dedent(
        f"""
        import gfr, sys
        try:
            gfr.run_network(**{args!r})
        except KeyboardInterrupt as e:
            print("INTERRUPTED:", e)
            sys.exit(7)
        print("FINISHED")
        """
    )
    # once the first epoch's checkpoint is there
    took, out, code = interrupt_when(script, lambda: any(save.glob("*.checkpoint/*")) if save.exists() else False)
    assert code == 7, out
    assert took < 3.0, f"took {took:.2f} s to stop"
    run = gfr.run_network(resume=True, **args)
    assert len(run["history"]) == 3
