//! `gfr simulate` + `gfr fit` end to end through the command line.

mod common;
use common::*;

use gfr::data::pickle::{PyValueExt, read_pickle};
use gfr::fit::FitResult;

#[test]
fn simulate_then_fit_two_cells_with_the_test_config() {
    let dir = scratch("e2e");
    let data = dir.join("data");
    let params = dir.join("params");
    let out = ok(&gfr(&[
        "simulate",
        "--cells",
        "2",
        "--seed",
        "3",
        "--data-dir",
        s(&data),
    ]));
    assert!(out.contains("wrote 2 cells"), "{out}");
    // the seed's underscore spellings
    let out = ok(&gfr(&[
        "fit",
        "--bin_size",
        "20",
        "--activation_bin_size",
        "20",
        "--config_path",
        "configs/test.json",
        "--data-dir",
        s(&data),
        "--save_path",
        s(&params),
        "--quiet",
    ]));
    assert!(out.contains("val EVR"), "{out}");
    let ids = gfr::data::read_cell_ids(&data.join("cell_ids.csv")).unwrap();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let r = FitResult::load(&params.join("bin20_actv20").join(format!("{id}.pickle"))).unwrap();
        assert_eq!(r.bin_size, 20);
        assert_eq!(r.params.alpha.len(), 8);
        assert_eq!(r.train_losses.len(), 10);
        assert_eq!(r.test_losses.len(), 10);
        assert!(r.evr1.is_finite() && r.evr2.is_finite());
        assert!(r.params.activation.max_firing_rate > 0.0);
        // the published loss (padded length) is recorded beside gfr's own
        let padded = r.train_loss_padded.expect("train_loss_padded recorded");
        assert!(padded.is_finite() && padded != r.final_train_loss());
    }
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(params.join("bin20_actv20/fit_summary.json")).unwrap(),
    )
    .unwrap();
    let rows = summary.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "saved" && r["test_evr"].is_number())
    );

    if let Some(py) = python() {
        let script = format!(
            "import pickle\nr = pickle.load(open('{}', 'rb'))\n\
             assert set(r) == {{'params','evr1','evr2','train_losses','test_losses','bin_size','train_loss_padded','config_name','config_hash','actv_bin_size_requested'}}, r.keys()\n\
             assert r['config_name'] == 'test' and r['actv_bin_size_requested'] == 20\n\
             p = r['params']; g = p['g']\n\
             assert len(p['a']) == 1 and len(p['a'][0]) == 8 and len(p['ds']) == 8\n\
             assert set(g) == {{'max_current','max_firing_rate','poly_coeff','b','bin_size'}}\n\
             d = pickle.load(open('{}', 'rb'))\n\
             assert isinstance(d, list) and set(d[0]['current']) == {{10, 20, 50, 100}}\n\
             print('python ok')",
            s(&params
                .join("bin20_actv20")
                .join(format!("{}.pickle", ids[0]))),
            s(&data.join(format!(
                "processed_data/processed_I_and_firing_rate_{}.pickle",
                ids[0]
            ))),
        );
        run_python(py, &script);
    } else {
        eprintln!("SKIPPED python pickle check: python3 not found");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_cell_is_reported_and_the_others_are_fitted() {
    let dir = scratch("badcell");
    let data = dir.join("data");
    let params = dir.join("params");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "3",
        "--data-dir",
        s(&data),
        "--first-id",
        "11",
    ]));
    // cell 12: truncated pickle; cell 13: NaN in the data; cell 14: no files at all
    let p12 = data.join("processed_data/processed_I_and_firing_rate_12.pickle");
    let bytes = std::fs::read(&p12).unwrap();
    std::fs::write(&p12, &bytes[..bytes.len() / 2]).unwrap();
    let p13 = data.join("processed_data/processed_I_and_firing_rate_13.pickle");
    let mut sweeps = gfr::data::processed::read_processed(&p13).unwrap();
    sweeps[0].current.get_mut(&20).unwrap()[3] = f64::NAN;
    gfr::data::processed::write_processed(&p13, &sweeps).unwrap();
    std::fs::write(data.join("cell_ids.csv"), "11,12,13,14\n").unwrap();

    // the others are done; the bad cells fail (exit 3), each named with its file
    let out = exits_with(&fit("configs/test.json", &data, &params, &[]), 3);
    assert!(
        out.contains("4 cells: 1 saved, 0 kept previous, 0 skipped, 3 failed"),
        "{out}"
    );
    assert!(
        params.join("bin20_actv20").join("11.pickle").exists(),
        "{out}"
    );
    for id in [12, 13, 14] {
        assert!(
            !params
                .join("bin20_actv20")
                .join(format!("{id}.pickle"))
                .exists()
        );
    }
    assert!(
        out.contains("processed_I_and_firing_rate_12.pickle"),
        "{out}"
    );
    assert!(
        out.contains("processed_I_and_firing_rate_13.pickle") && out.contains("non-finite"),
        "{out}"
    );
    assert!(
        out.contains("processed_I_and_firing_rate_14.pickle"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_better_saved_result_is_never_replaced() {
    let dir = scratch("better");
    let data = dir.join("data");
    let params = dir.join("params");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "1",
        "--data-dir",
        s(&data),
        "--first-id",
        "5",
    ]));
    let args = [
        "fit",
        "--config-path",
        "configs/test.json",
        "--data-dir",
        s(&data),
        "--save-path",
        s(&params),
        "--quiet",
    ];
    ok(&gfr(&args));
    let path = params.join("bin20_actv20").join("5.pickle");
    let mut r = FitResult::load(&path).unwrap();
    r.evr1 = 0.999;
    r.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let out = ok(&gfr(&args));
    assert!(out.contains("kept-previous"), "{out}");
    assert_eq!(std::fs::read(&path).unwrap(), before);

    // retrain_model = false: the cell is skipped outright
    let cfg = config(
        &dir,
        "noretrain.json",
        r#"{"activation_epochs": 5, "activation_repeats": 1, "hparams": [{"lr": 0.01, "epochs": 2}], "retrain_model": false}"#,
    );
    let out = ok(&fit(s(&cfg), &data, &params, &[]));
    assert!(out.contains("retrain_model is false"), "{out}");
    assert_eq!(
        read_pickle(&path)
            .unwrap()
            .get("evr1")
            .unwrap()
            .as_f64()
            .unwrap(),
        0.999
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_flags_and_configs_name_what_is_wrong() {
    let dir = scratch("flags");
    let e = fails(&gfr(&[
        "fit",
        "--bin-size",
        "30",
        "--config-path",
        "configs/test.json",
        "--data-dir",
        s(&dir),
    ]));
    assert!(e.contains("--bin-size 30"), "{e}");
    let e = fails(&gfr(&["fit", "--config-path", s(&dir.join("nope.json"))]));
    assert!(e.contains("nope.json"), "{e}");
    let cfg = config(
        &dir,
        "bad.json",
        r#"{"hparams": [{"lr": -1, "epochs": 2}]}"#,
    );
    let e = fails(&gfr(&["fit", "--config-path", s(&cfg)]));
    assert!(e.contains("bad.json") && e.contains("hparams[0].lr"), "{e}");
    let cfg = config(
        &dir,
        "margin.json",
        r#"{"hparams": [{"lr": 1e-2, "epochs": 2}, {"lr": 1e-3, "epochs": 2, "from_best": true, "min_gain": -0.1}]}"#,
    );
    let e = fails(&gfr(&["fit", "--config-path", s(&cfg)]));
    assert!(
        e.contains("margin.json") && e.contains("hparams[1].min_gain"),
        "{e}"
    );
    let cfg = config(&dir, "broken.json", r#"{"hparams": [}"#);
    let e = fails(&gfr(&["fit", "--config-path", s(&cfg)]));
    assert!(e.contains("broken.json"), "{e}");
    let e = fails(&gfr(&[
        "fit",
        "--config-path",
        "configs/test.json",
        "--data-dir",
        s(&dir),
    ]));
    assert!(e.contains("cell_ids.csv"), "{e}");
    // a cell list but no data there: an error naming the flag, not every cell skipped and exit 0
    std::fs::write(dir.join("ids.csv"), "565871768\n").unwrap();
    let e = fails(&gfr(&[
        "fit",
        s(&dir.join("ids.csv")),
        "--config-path",
        "configs/test.json",
        "--data-dir",
        s(&dir.join("nodata")),
        "--save-path",
        s(&dir.join("params")),
    ]));
    assert!(
        e.contains(&format!("--data-dir {}", dir.join("nodata").display()))
            && e.contains("processed_data"),
        "{e}"
    );
    assert!(!dir.join("params").exists(), "nothing written: {e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn shards_split_the_cells() {
    let dir = scratch("shard");
    let data = dir.join("data");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "3",
        "--data-dir",
        s(&data),
        "--first-id",
        "21",
    ]));
    let cfg = config(
        &dir,
        "tiny.json",
        r#"{"activation_epochs": 5, "activation_repeats": 1, "hparams": [{"lr": 0.01, "epochs": 2}]}"#,
    );
    for (shard, want) in [("0/2", vec![21, 23]), ("1/2", vec![22])] {
        let p = dir.join(shard.replace('/', "of"));
        ok(&fit(s(&cfg), &data, &p, &["--shard", shard]));
        for id in 21..=23 {
            assert_eq!(
                p.join("bin20_actv20").join(format!("{id}.pickle")).exists(),
                want.contains(&id),
                "shard {shard}, cell {id}"
            );
        }
    }
    let e = fails(&gfr(&["fit", "--shard", "2/2", "--data-dir", s(&data)]));
    assert!(e.contains("--shard") && e.contains("0 ≤ K < N"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn finetune_starts_from_the_saved_neuron() {
    let dir = scratch("finetune");
    let data = dir.join("data");
    let params = dir.join("params");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "1",
        "--data-dir",
        s(&data),
        "--first-id",
        "31",
    ]));
    ok(&fit("configs/test.json", &data, &params, &[]));
    let path = params.join("bin20_actv20").join("31.pickle");
    let mut r = FitResult::load(&path).unwrap();
    r.params.activation.threshold = 123.0; // a marker the activation fit would not produce
    r.params.alpha[3] = 0.5;
    r.evr1 = -1.0; // so that any new result replaces it
    r.save(&path).unwrap();
    let cfg = config(
        &dir,
        "ft.json",
        r#"{"activation_epochs": 5, "activation_repeats": 1, "hparams": [{"lr": 1e-6, "epochs": 1}], "finetune": true}"#,
    );
    let out = ok(&fit(s(&cfg), &data, &params, &[]));
    assert!(out.contains("saved"), "{out}");
    let new = FitResult::load(&path).unwrap();
    assert_eq!(
        new.params.activation.threshold, 123.0,
        "activation kept (frozen) from the saved neuron"
    );
    assert!(
        (new.params.alpha[3] - 0.5).abs() < 1e-3,
        "filters start from the saved neuron: {}",
        new.params.alpha[3]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn batched_fitting_gives_the_one_at_a_time_results() {
    let dir = scratch("batched");
    let data = dir.join("data");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "4",
        "--data-dir",
        s(&data),
        "--first-id",
        "41",
    ]));
    let cfg = config(
        &dir,
        "two-runs.json",
        r#"{"activation_epochs": 30, "activation_repeats": 2, "hparams": [{"lr": 0.01, "epochs": 15}, {"lr": 0.001, "epochs": 5}]}"#,
    );
    let (one, many) = (dir.join("one"), dir.join("many"));
    ok(&fit(s(&cfg), &data, &one, &["--batch-cells", "1"]));
    ok(&fit(s(&cfg), &data, &many, &["--batch-cells", "3"]));
    for id in 41..=44 {
        let a = FitResult::load(&one.join("bin20_actv20").join(format!("{id}.pickle"))).unwrap();
        let b = FitResult::load(&many.join("bin20_actv20").join(format!("{id}.pickle"))).unwrap();
        assert_eq!(a.params, b.params, "cell {id}");
        assert_eq!((a.evr1, a.evr2), (b.evr1, b.evr2), "cell {id}");
        assert_eq!(a.train_losses, b.train_losses, "cell {id}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Cells that cannot give a neuron are skipped with their reason and nothing is saved; such a
/// run exits 0 (every cell done or skipped for a stated reason); a cell that fails makes it
/// exit 3 once the others are done.
#[test]
fn cells_that_cannot_give_a_neuron_are_skipped_with_a_reason() {
    let dir = scratch("noneuron");
    let data = dir.join("data");
    let params = dir.join("params");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "4",
        "--data-dir",
        s(&data),
        "--first-id",
        "51",
    ]));
    let dd = gfr::data::DataDir::new(&data);
    // 51: maximum firing rate 0
    gfr::data::pickle::write_pickle(
        &dd.max_firing_rate(51),
        &gfr::data::pickle::PyValue::F64(0.0),
    )
    .unwrap();
    // 52: every Long Square current 0
    let mut sweeps = gfr::data::processed::read_processed(&dd.processed(52)).unwrap();
    for sw in sweeps
        .iter_mut()
        .filter(|s| s.stimulus_name == "Long Square")
    {
        sw.current.values_mut().for_each(|c| c.fill(0.0));
    }
    gfr::data::processed::write_processed(&dd.processed(52), &sweeps).unwrap();
    // 53: Noise 1 never fires, so its validation EVR is 0/0
    let mut sweeps = gfr::data::processed::read_processed(&dd.processed(53)).unwrap();
    for sw in sweeps.iter_mut().filter(|s| s.stimulus_name == "Noise 1") {
        sw.firing_rate.values_mut().for_each(|c| c.fill(0.0));
    }
    gfr::data::processed::write_processed(&dd.processed(53), &sweeps).unwrap();
    let out = ok(&fit("configs/test.json", &data, &params, &[]));
    assert!(params.join("bin20_actv20/54.pickle").exists(), "{out}");
    for id in [51, 52, 53] {
        assert!(
            !params.join(format!("bin20_actv20/{id}.pickle")).exists(),
            "{id}: {out}"
        );
    }
    assert!(out.contains("maximum firing rate is 0"), "{out}");
    assert!(out.contains("every Long Square has 0 pA"), "{out}");
    assert!(out.contains("validation EVR is NaN"), "{out}");

    assert!(
        out.contains("4 cells: 1 saved, 0 kept previous, 3 skipped, 0 failed"),
        "{out}"
    );

    // only cells skipped for a stated reason: exit 0, the counts said
    let ids = dir.join("bad.csv");
    std::fs::write(&ids, "51,52\n").unwrap();
    let mut args = vec![s(&ids)];
    args.extend(["--batch-cells", "1"]);
    let out = exits_with(&fit("configs/test.json", &data, &params, &args), 0);
    assert!(
        out.contains("2 cells: 0 saved, 0 kept previous, 2 skipped, 0 failed"),
        "{out}"
    );

    // a cell whose result cannot be written fails; the others are done; exit 3
    let fresh = dir.join("fresh");
    std::fs::create_dir_all(fresh.join("bin20_actv20/54.pickle")).unwrap();
    let ids = dir.join("two.csv");
    std::fs::write(&ids, "53,54\n").unwrap();
    let e = exits_with(&fit("configs/test.json", &data, &fresh, &[s(&ids)]), 3);
    assert!(e.contains("1 of 2 cells failed"), "{e}");
    assert!(
        e.contains("2 cells: 0 saved, 0 kept previous, 1 skipped, 1 failed"),
        "{e}"
    );
    // processed data that is missing or cannot be read fails its cell (not "skipped"): exit 3
    std::fs::write(dd.processed(53), b"\x80\x04truncated").unwrap();
    let ids = dir.join("unreadable.csv");
    std::fs::write(&ids, "53,54,99\n").unwrap();
    let e = exits_with(
        &fit("configs/test.json", &data, &dir.join("third"), &[s(&ids)]),
        3,
    );
    assert!(
        e.contains("3 cells: 1 saved, 0 kept previous, 0 skipped, 2 failed"),
        "{e}"
    );
    assert!(e.contains("processed_I_and_firing_rate_53.pickle"), "{e}");
    assert!(e.contains("processed_I_and_firing_rate_99.pickle"), "{e}");
    // a usage error exits 1
    exits_with(&gfr(&["fit", "--bin-size", "x"]), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Bad flags and negative numbers after flags give errors that name the flag.
#[test]
fn bad_numeric_flags_are_refused() {
    let dir = scratch("numflags");
    std::fs::write(dir.join("ids.csv"), "1\n").unwrap();
    let ids = dir.join("ids.csv");
    for (flag, value, says) in [
        ("--C", "-1", "--C -1"),
        ("--degree", "0", "--degree 0"),
        ("--batch-cells", "0", "--batch-cells 0"),
    ] {
        let e = fails(&gfr(&[
            "fit",
            s(&ids),
            "--config-path",
            "configs/test.json",
            "--data-dir",
            s(&dir),
            flag,
            value,
        ]));
        assert!(e.contains(says) && !e.contains("panicked"), "{flag}: {e}");
    }
    let e = fails(&gfr(&["network", "--history-scale", "-1", "--offline"]));
    assert!(e.contains("--history-scale -1"), "{e}");
    let e = fails(&gfr(&["network", "--train-limit", "0", "--offline"]));
    assert!(e.contains("--train-limit"), "{e}");
    let e = exits_with(
        &gfr(&[
            "simulate",
            "--cells",
            "2",
            "--first-id",
            "18446744073709551615",
            "--data-dir",
            s(&dir.join("ovf")),
        ]),
        1,
    );
    assert!(e.contains("--first-id 18446744073709551615"), "{e}");
    assert!(!dir.join("ovf").exists(), "nothing written: {e}");
    let e = exits_with(&gfr(&["spikes", "--cell-id", "5", "--dv-cutoff", "-1"]), 1);
    assert!(
        e.contains("--dv-cutoff -1"),
        "the flag before the file: {e}"
    );
    for flag in ["--n-nodes", "--batch-size", "--epochs"] {
        let e = exits_with(&gfr(&["bench", "--network", flag, "0"]), 1);
        assert!(
            e.contains(&format!("{flag} 0")) && !e.contains("panicked"),
            "{e}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// finetune over saved neurons with λ rounded to float32 (as PyTorch saves it) or of another
/// degree, batched with fresh cells: no panic; the other degree is fitted afresh.
#[test]
fn finetune_over_float32_or_other_degree_results_does_not_panic() {
    let dir = scratch("finetune32");
    let data = dir.join("data");
    let params = dir.join("params");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "3",
        "--data-dir",
        s(&data),
        "--first-id",
        "61",
    ]));
    let ids = dir.join("first.csv");
    std::fs::write(&ids, "61\n").unwrap();
    ok(&fit("configs/test.json", &data, &params, &[s(&ids)]));
    let path = params.join("bin20_actv20/61.pickle");
    let mut r = FitResult::load(&path).unwrap();
    r.params.lambda = r.params.lambda.iter().map(|&l| l as f32 as f64).collect();
    r.evr1 = -1.0;
    r.save(&path).unwrap();
    let cfg = config(
        &dir,
        "ft.json",
        r#"{"activation_epochs": 5, "activation_repeats": 1, "hparams": [{"lr": 1e-3, "epochs": 2}], "finetune": true}"#,
    );
    let out = ok(&fit(s(&cfg), &data, &params, &["--batch-cells", "3"]));
    assert!(!out.contains("panicked"), "{out}");
    for id in 61..=63 {
        assert!(
            params.join(format!("bin20_actv20/{id}.pickle")).exists(),
            "{id}: {out}"
        );
    }
    let mut r = FitResult::load(&path).unwrap();
    r.evr1 = -1.0;
    r.save(&path).unwrap();
    let out = ok(&fit(s(&cfg), &data, &params, &["--degree", "2"]));
    assert!(out.contains("does not match --degree 2"), "{out}");
    assert_eq!(
        FitResult::load(&path)
            .unwrap()
            .params
            .activation
            .poly_coeff
            .len(),
        3
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `gfr bench` over several batches of cells says where each batch leaves the run, and its
/// JSON report counts the time spent waiting for the device: none on the CPU; on wgpu some,
/// and less than the whole (skipped, saying so, without an adapter).
#[test]
fn bench_reports_each_batch_and_the_device_wait() {
    let dir = scratch("bench-batches");
    let mut devices = vec!["cpu"];
    if gfr::device::wgpu_available() {
        devices.push("wgpu");
    } else {
        eprintln!("SKIPPED bench_reports_each_batch_and_the_device_wait on wgpu: no wgpu adapter");
    }
    for device in devices {
        let json = dir.join(format!("{device}.json"));
        let out = ok(&gfr(&[
            "bench",
            "--cells",
            "3",
            "--batch-cells",
            "2",
            "--config-path",
            "configs/test.json",
            "--device",
            device,
            "--json",
            s(&json),
        ]));
        for done in ["batch done: 2 of 3 cells", "batch done: 3 of 3 cells"] {
            assert!(out.contains(done), "{device}: {out}");
        }
        let b: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(b["cells"], 3, "{b}");
        // the last batch's line gives the whole run's median test EVR
        let last = out.lines().find(|l| l.contains("3 of 3 cells")).unwrap();
        let median = format!(
            "median test EVR {:.3},",
            b["median_test_evr"].as_f64().unwrap()
        );
        assert!(last.contains(&median), "{device}: {last} / {median}");
        let (wait, per_cell) = (
            b["device_wait_per_cell"].as_f64().unwrap(),
            b["seconds_per_cell"].as_f64().unwrap(),
        );
        if device == "cpu" {
            assert_eq!(wait, 0.0, "{b}");
        } else {
            assert!(wait > 0.0 && wait < per_cell, "{b}");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
