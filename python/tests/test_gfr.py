"""The Python package: every function, against the CLI (same files, same numbers), against
independent computations, and on bad input."""

import csv
import json
import pickle
import threading
import time

import numpy as np
import pytest

import gfr
from conftest import same_files
from nwb_fixture import RATE, SPIKE, lif

FAST = {
    "config_name": "py-test",
    "activation_epochs": 20,
    "activation_repeats": 1,
    "freeze_activation": True,
    "eps": 1e-8,
    "hparams": [{"lr": 1e-2, "epochs": 8}, {"lr": 1e-3, "epochs": 8}],
    "finetune": False,
    "retrain_model": True,
}


def test_detect_spikes_finds_the_spikes_of_a_known_trace():
    rng = np.random.default_rng(3)
    pa = np.zeros(int(2 * RATE))
    pa[int(0.5 * RATE) : int(1.5 * RATE)] = 180.0
    mv, truth = lif(pa, RATE, rng)
    assert len(truth) > 10
    found = gfr.detect_spikes(mv, RATE)
    assert isinstance(found, np.ndarray) and found.dtype == np.float64
    assert len(found) == len(truth)
    # the threshold lies on the upstroke, within the waveform's first 0.3 ms
    assert np.all(found >= truth - 1e-4) and np.all(found <= truth + 0.3e-3)
    # lists, ints and float32 are accepted; no filter still finds them
    assert len(gfr.detect_spikes(list(mv.astype(np.float32)), RATE, filter_khz=None)) == len(truth)
    assert len(gfr.detect_spikes(np.full(1000, -70), 20000.0)) == 0
    # a higher cutoff than the steepest upstroke finds nothing
    steepest = np.max(np.diff(SPIKE)) * RATE / 1000.0
    assert len(gfr.detect_spikes(mv, RATE, dv_cutoff=steepest * 2)) == 0


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"rate_hz": 0.0}, "rate_hz"),
        ({"rate_hz": float("nan")}, "rate_hz"),
        ({"dv_cutoff": -1.0}, "dv_cutoff"),
        ({"filter_khz": 0.0}, "filter_khz"),
        ({"min_peak": float("inf")}, "min_peak"),
    ],
)
def test_detect_spikes_names_a_bad_argument(kwargs, name):
    args = {"rate_hz": 20000.0, **kwargs}
    with pytest.raises(ValueError, match=name):
        gfr.detect_spikes(np.zeros(100), args.pop("rate_hz"), **args)


def test_read_nwb_gives_the_written_sweeps(nwb_dir):
    d, truth = nwb_dir
    sweeps = gfr.read_nwb(d / "601.nwb")
    by_number = {s["sweep_number"]: s for s in sweeps}
    # the test sweep is left out; the others are there with their names
    assert 1 not in by_number
    assert by_number[2]["stimulus_name"] == "Long Square"
    assert by_number[5]["stimulus_name"] == "Ramp"
    assert by_number[8]["stimulus_name"] == "Noise 2"
    for number, s in by_number.items():
        pa, mv, spikes = truth[601][number]
        assert s["rate_hz"] == RATE
        np.testing.assert_allclose(s["current_pa"], pa, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(s["voltage_mv"], mv, rtol=1e-6, atol=1e-6)
        assert len(s["spike_times_s"]) == len(spikes), number
        np.testing.assert_allclose(s["spike_times_s"], spikes, atol=0.3e-3)
        # the detector on the returned voltage gives the reader's spikes
        np.testing.assert_array_equal(gfr.detect_spikes(s["voltage_mv"], s["rate_hz"]), s["spike_times_s"])


def test_read_nwb_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nwb"):
        gfr.read_nwb(tmp_path / "nope.nwb")
    bad = tmp_path / "bad.nwb"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(RuntimeError, match="bad.nwb"):
        gfr.read_nwb(bad)


def test_detect_spikes_matches_gfr_spikes(nwb_dir, cli, tmp_path):
    d, _ = nwb_dir
    cli("spikes", "--cell-id", 602, "--nwb-dir", d, "--out", tmp_path / "s.csv", cwd=tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    for s in gfr.read_nwb(d / "602.nwb"):
        cli_times = [float(r["spike_time_s"]) for r in rows if int(r["sweep_number"]) == s["sweep_number"]]
        ours = gfr.detect_spikes(s["voltage_mv"], s["rate_hz"])
        np.testing.assert_array_equal(np.round(ours, 6), np.round(cli_times, 6))


def test_preprocess_writes_what_the_cli_writes(nwb_dir, cli, tmp_path):
    d, _ = nwb_dir
    reports = gfr.preprocess([601, 602, 603], d, tmp_path / "py", progress=False)
    status = {r["cell_id"]: r["status"] for r in reports}
    assert status == {601: "done", 602: "done", 603: "failed"}
    assert "603" in next(r["message"] for r in reports if r["cell_id"] == 603)
    done = next(r for r in reports if r["cell_id"] == 601)
    assert done["sweeps"] == 8 and done["max_firing_rate"] > 0
    ids = tmp_path / "ids.csv"
    ids.write_text("601,602,603\n")
    p = cli("preprocess", "--cell-ids", ids, "--nwb-dir", d, "--data-dir", tmp_path / "cli", cwd=tmp_path, check=False)
    assert p.returncode == 3, p.stderr  # some cells failed, the others are done
    assert same_files(tmp_path / "py", tmp_path / "cli") == []
    # again: the outputs exist, so the cells are skipped
    again = gfr.preprocess(ids, d, tmp_path / "py", progress=False)
    assert {r["cell_id"]: r["status"] for r in again}[601] == "skipped"


def test_simulate_nwb_writes_what_the_cli_writes(cli, tmp_path):
    ids = gfr.simulate(2, seed=3, nwb_dir=tmp_path / "py", progress=False)
    cli("simulate", "--cells", 2, "--seed", 3, "--nwb-dir", tmp_path / "cli", cwd=tmp_path)
    assert ids == [900000001, 900000002]
    assert same_files(tmp_path / "py", tmp_path / "cli") == []
    assert not (tmp_path / "data").exists()
    # the files read back: every protocol sweep, with spikes detected from the voltage
    sweeps = gfr.read_nwb(tmp_path / "py" / "900000001.nwb")
    assert len(sweeps) == 19 and {s["stimulus_name"] for s in sweeps} == {
        "Long Square", "Ramp", "Noise 1", "Noise 2"
    }
    assert all(s["rate_hz"] == 50000.0 for s in sweeps)
    assert sum(len(s["spike_times_s"]) for s in sweeps) > 100
    with pytest.raises(ValueError, match="nwb_dir"):
        gfr.simulate(2, truth="gfr", nwb_dir=tmp_path / "x", progress=False)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, cli):
    """Three simulated cells, simulated and fitted through Python and through the CLI."""
    root = tmp_path_factory.mktemp("fit")
    config = root / "fast.json"
    config.write_text(json.dumps(FAST))
    ids = gfr.simulate(3, seed=5, data_dir=root / "data", progress=False)
    cli("simulate", "--cells", 3, "--seed", 5, "--data-dir", root / "cli_data", cwd=root)
    reports = gfr.fit(
        ids, data_dir=root / "data", config=FAST, save_path=root / "py", batch_cells=2, progress=False
    )
    cli(
        "fit", "--data-dir", root / "data", "--config-path", config, "--save-path", root / "cli",
        "--batch-cells", 2, "--quiet", cwd=root,
    )
    return root, ids, reports


def test_simulate_and_fit_write_what_the_cli_writes(fitted):
    root, ids, reports = fitted
    assert ids == [900000001, 900000002, 900000003]
    assert same_files(root / "data", root / "cli_data") == []
    assert [r["cell_id"] for r in reports] == ids
    for r in reports:
        assert r["status"] == "saved", r
        assert set(r) >= {"cell_id", "status", "val_evr", "test_evr", "train_loss", "seconds", "message"}
        assert -1 < r["val_evr"] <= 1 and r["train_loss"] > 0
    pair = "bin20_actv20"
    for i in ids:
        assert (root / "py" / pair / f"{i}.pickle").read_bytes() == (root / "cli" / pair / f"{i}.pickle").read_bytes()
    # the summaries differ only in the seconds
    py_sum = json.loads((root / "py" / pair / "fit_summary.json").read_text())
    cli_sum = json.loads((root / "cli" / pair / "fit_summary.json").read_text())
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "message")} for r in rows]
    assert strip(py_sum) == strip(cli_sum) == strip(reports)
    # the result pickles are Python pickles
    result = pickle.load(open(root / "py" / pair / f"{ids[0]}.pickle", "rb"))
    assert result["evr1"] == reports[0]["val_evr"]


def test_fit_config_by_name_path_and_dict_agree(fitted, tmp_path):
    root, ids, _ = fitted
    path_reports = gfr.fit(
        ids[:1], data_dir=root / "data", config=root / "fast.json", save_path=tmp_path, progress=False
    )
    pair = tmp_path / "bin20_actv20"
    assert (pair / f"{ids[0]}.pickle").read_bytes() == (root / "py" / "bin20_actv20" / f"{ids[0]}.pickle").read_bytes()
    # resume skips the cell fitted with the same config
    again = gfr.fit(ids[:1], data_dir=root / "data", config=FAST, save_path=tmp_path, resume=True, progress=False)
    assert again[0]["status"] == "skipped" and "resume" in again[0]["message"]
    assert path_reports[0]["val_evr"] == again[0]["val_evr"]


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"bin_size": 7}, ValueError, "bin_size 7"),
        ({"activation_bin_size": 30}, ValueError, "activation_bin_size"),
        ({"C": -1.0}, ValueError, "C -1"),
        ({"degree": 0}, ValueError, "degree"),
        ({"batch_cells": 0}, ValueError, "batch_cells"),
        ({"device": "tpu"}, ValueError, "device"),
        ({"shard": (2, 2)}, ValueError, "shard"),
        ({"config": "nosuch.json"}, FileNotFoundError, "nosuch.json"),
        ({"config": {"hparams": [{"lr": -1, "epochs": 3}]}}, ValueError, r"hparams\[0\].lr"),
        ({"config": {"hparams": [], "bogus": 1}}, ValueError, "config"),
        ({"config": 3.5}, ValueError, "config"),
        ({"data_dir": "no/such/folder"}, FileNotFoundError, "data_dir no/such/folder"),
        ({"cell_ids": "missing_ids.csv"}, FileNotFoundError, "missing_ids.csv"),
        ({"cell_ids": [1.5]}, ValueError, "cell_ids"),
    ],
)
def test_fit_rejects_bad_arguments_naming_them(fitted, tmp_path, kwargs, exc, words):
    root, ids, _ = fitted
    args = {"cell_ids": ids[:1], "data_dir": root / "data", "config": FAST, "save_path": tmp_path, "progress": False}
    args.update(kwargs)
    with pytest.raises(exc, match=words):
        gfr.fit(args.pop("cell_ids"), **args)
    assert not (tmp_path / "bin20_actv20" / f"{ids[0]}.pickle").exists()


def test_a_failed_cell_is_a_report_not_an_exception(fitted, tmp_path):
    root, ids, _ = fitted
    reports = gfr.fit([ids[0], 12345], data_dir=root / "data", config=FAST, save_path=tmp_path, progress=False)
    status = {r["cell_id"]: r["status"] for r in reports}
    # a cell without processed data fails, naming the missing file
    assert status[ids[0]] == "saved" and status[12345] == "failed"
    assert "12345" in next(r["message"] for r in reports if r["cell_id"] == 12345)


def reference_predict(params, current):
    """The GFR recurrence of the spec written out in numpy (independent of gfr's code)."""
    a = np.ravel(params["a"])
    b = np.ravel(params["b"])
    lam = np.ravel(params["ds"])
    g = params["g"]
    sigma, gamma = g["max_current"][0], g["max_firing_rate"][0]
    c = np.ravel(g["poly_coeff"])
    thr = g["b"][0]
    h = np.zeros(len(lam))
    f, out = 0.0, []
    for i in current:
        h = (1 - lam) * h + a * i + 1000.0 * b * f
        v = (h.mean() - thr) / sigma
        z = sum(ck * ck * v**k for k, ck in enumerate(c))
        f = gamma * max(0.0, np.tanh(z))
        out.append(f)
    return np.array(out)


def test_neuron_predicts_as_gfr_predict_and_the_spec(fitted, cli, tmp_path):
    root, ids, _ = fitted
    result_path = root / "py" / "bin20_actv20" / f"{ids[1]}.pickle"
    params = pickle.load(open(result_path, "rb"))["params"]
    neuron = gfr.Neuron(params)
    assert neuron.bin_size == 20 and "Neuron(" in repr(neuron)
    current = np.concatenate([np.zeros(20), np.linspace(0, 400, 100), np.full(60, 150.0)])
    rates = neuron.predict(current)
    assert rates.dtype == np.float64 and rates.shape == current.shape and rates.max() > 0
    np.testing.assert_allclose(rates, reference_predict(params, current), rtol=1e-9, atol=1e-12)
    np.savetxt(tmp_path / "i.csv", current)
    cli("predict", "--params", result_path, "--current", tmp_path / "i.csv", "--out", tmp_path / "r.csv", cwd=tmp_path)
    cli_rates = [float(r["rate_per_ms"]) for r in csv.DictReader(open(tmp_path / "r.csv"))]
    np.testing.assert_array_equal(rates, cli_rates)
    # params round-trip
    assert gfr.Neuron(neuron.params).params == neuron.params
    with pytest.raises(ValueError, match="current_pa"):
        neuron.predict([0.0, float("nan")])
    with pytest.raises(ValueError, match="params"):
        gfr.Neuron({"a": [[1.0]]})


def test_dataset_build_load_and_model(fitted, cli, tmp_path):
    root, ids, _ = fitted
    loose = {"min_val_evr": -1e9, "max_train_loss": 1e9}
    out = tmp_path / "ds.pickle"
    summary = gfr.build_dataset(root / "py", out, json=tmp_path / "ds.json", **loose)
    assert summary["included"] == 3 and summary["pairs"] == {(20, 20): 3}
    cli(
        "dataset", "build", "--params-dir", root / "py", "--out", tmp_path / "cli.pickle",
        "--min-val-evr", -1e9, "--max-train-loss", 1e9, cwd=tmp_path,
    )
    assert out.read_bytes() == (tmp_path / "cli.pickle").read_bytes()
    ds = gfr.load_dataset(out)
    frame = ds[(20, 20)]
    assert list(frame["cell_id"]) == ids
    raw = pickle.load(open(out, "rb"))
    neuron = gfr.load_gfr_model(out, ids[2], 20, 20)
    assert neuron.params == raw[(20, 20)][2]["params"]
    with pytest.raises(ValueError, match="42"):
        gfr.load_gfr_model(out, 42)
    with pytest.raises(FileNotFoundError):
        gfr.load_dataset(tmp_path / "none.pickle")
    # the published criteria keep an existing dataset when nothing passes them
    strict = gfr.build_dataset(root / "py", tmp_path / "strict.pickle", min_val_evr=0.999)
    assert strict["included"] == 0
    with pytest.raises(ValueError, match="min_val_evr"):
        gfr.build_dataset(root / "py", tmp_path / "x.pickle", min_val_evr=float("nan"))
    with pytest.raises(FileNotFoundError, match="missing"):
        gfr.build_dataset(tmp_path / "missing", tmp_path / "y.pickle")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no readable fit results"):
        gfr.build_dataset(tmp_path / "empty", tmp_path / "y.pickle")
    assert not (tmp_path / "y.pickle").exists()


def test_run_network_gives_the_cli_json(cli, tmp_path):
    small = dict(epochs=1, n_nodes=8, batch_size=32, train_limit=128, test_limit=32, offline=True, seed=3)
    run = gfr.run_network(save_dir=tmp_path / "py", mnist_dir=tmp_path / "none", progress=False, **small)
    cli(
        "network", "--epochs", 1, "--n-nodes", 8, "--batch-size", 32, "--train-limit", 128,
        "--test-limit", 32, "--offline", "--seed", 3, "--save-dir", tmp_path / "cli",
        "--mnist-dir", tmp_path / "none", "--quiet", cwd=tmp_path,
    )
    cli_json = json.loads(next((tmp_path / "cli").glob("*.json")).read_text())
    assert run["json_path"].endswith(".json") and run["weights_path"].endswith(".bpk")
    strip = lambda r: {k: v for k, v in r.items() if k not in ("json_path", "weights_path", "history", "mnist")}
    assert strip(run) == strip(cli_json)
    assert [{k: v for k, v in e.items() if k != "seconds"} for e in run["history"]] == [
        {k: v for k, v in e.items() if k != "seconds"} for e in cli_json["history"]
    ]
    with pytest.raises(ValueError, match="lr_schedule"):
        gfr.run_network(lr_schedule="cosine", progress=False)
    with pytest.raises(ValueError, match="n_nodes"):
        gfr.run_network(n_nodes=0, save_dir=tmp_path / "z", progress=False)
    with pytest.raises(ValueError, match="bio_units relative needs bio_input relative"):
        gfr.run_network(bio_input="published", bio_units="relative", progress=False)


def test_the_gil_is_released_during_long_work(fitted, tmp_path):
    root, ids, _ = fitted
    ticks = []
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.005)

    t = threading.Thread(target=tick)
    t.start()
    start = time.perf_counter()
    gfr.fit(ids, data_dir=root / "data", config="default", save_path=tmp_path, progress=False)
    took = time.perf_counter() - start
    stop.set()
    t.join()
    # the other thread kept running (about every 5 ms) while the fit ran
    assert took > 0.2 and len([x for x in ticks if start < x < start + took]) > took / 0.05


def test_progress_is_one_updating_line(fitted, tmp_path, capfd):
    root, ids, _ = fitted
    gfr.fit(ids[:1], data_dir=root / "data", config=FAST, save_path=tmp_path / "a", progress=False)
    assert capfd.readouterr().err == ""
    gfr.fit(ids[:1], data_dir=root / "data", config=FAST, save_path=tmp_path / "b")
    err = capfd.readouterr().err
    assert "\r" in err and "fit 1/1 cells" in err and err.count("\n") <= 2


def test_odd_nwb2_series_are_read_on_their_true_time_axis_or_skipped_naming_them(tmp_path):
    import h5py
    import warnings
    from nwb_fixture import write_nwb2

    path = tmp_path / "701.nwb"
    write_nwb2(path, seed=4)
    baseline = {s["sweep_number"]: s for s in gfr.read_nwb(path)}
    with h5py.File(path, "a") as f:
        # sweep 2: evenly spaced timestamps instead of a rate (read as the rate would be)
        g = f["acquisition/data_00002_AD0"]
        n = g["data"].shape[0]
        del g["starting_time"]
        g["timestamps"] = 20.0 + np.arange(n) / RATE
        # sweep 4: irregular timestamps (a simulator's variable step): refused, named
        g = f["acquisition/data_00004_AD0"]
        n = g["data"].shape[0]
        del g["starting_time"]
        steps = np.where(np.arange(n) % 2 == 0, 0.5, 1.5) / RATE
        g["timestamps"] = 40.0 + np.concatenate([[0.0], np.cumsum(steps[:-1])]) ** 1.001
        # sweep 3: an all-NaN stimulus
        d = f["stimulus/presentation/data_00003_DA0/data"]
        d[...] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sweeps = {s["sweep_number"]: s for s in gfr.read_nwb(path)}
    said = " ".join(str(w.message) for w in caught)
    assert 4 not in sweeps and "data_00004_AD0/timestamps" in said and "not evenly spaced" in said
    np.testing.assert_array_equal(sweeps[2]["spike_times_s"], baseline[2]["spike_times_s"])
    # the cell is preprocessed from its good sweeps; the bad ones are named
    reports = gfr.preprocess([701], tmp_path, tmp_path / "data", progress=False)
    assert reports[0]["status"] == "done", reports
    assert reports[0]["sweeps"] == len(baseline) - 2
