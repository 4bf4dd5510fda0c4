//! Nothing lost, nothing mislabeled: results per bin-size pair, overlapping runs, shards,
//! interruptions, run names, unwritable folders and the activation-fallback label.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gfr::dataset::Dataset;
use gfr::fit::FitResult;
use gfr::neuron::{ActivationParams, NeuronParams};

/// A tiny fitting config (seconds per cell).
fn tiny(dir: &Path) -> PathBuf {
    config(
        dir,
        "tiny.json",
        r#"{"config_name": "tiny", "activation_epochs": 5, "activation_repeats": 1, "hparams": [{"lr": 0.01, "epochs": 3}]}"#,
    )
}

fn simulate(data: &Path, cells: usize, first_id: u64) {
    ok(&gfr(&[
        "simulate",
        "--cells",
        &cells.to_string(),
        "--data-dir",
        s(data),
        "--first-id",
        &first_id.to_string(),
    ]));
}

/// A result that meets the dataset criteria, fitted at `bin` with the activation asked for at
/// `asked` and fitted at `used`.
fn result(evr1: f64, bin: u32, asked: u32, used: u32) -> FitResult {
    let act = ActivationParams {
        max_current: 250.0,
        max_firing_rate: 0.2,
        poly_coeff: vec![0.05, 1.3],
        threshold: 60.0,
        bin_size: used,
    };
    FitResult {
        params: NeuronParams::initial(bin, act),
        evr1,
        evr2: evr1 - 0.05,
        train_losses: vec![0.9, 0.3],
        test_losses: vec![0.8, 0.5],
        bin_size: bin,
        train_loss_padded: Some(0.3),
        meta: gfr::fit::FitMeta {
            actv_bin_size_requested: Some(asked),
            ..Default::default()
        },
    }
}

/// Makes a saved result pass the dataset criteria (the tiny config's fits do not).
fn make_good(path: &Path, evr1: f64) {
    let mut r = FitResult::load(path).unwrap();
    r.evr1 = evr1;
    *r.train_losses.last_mut().unwrap() = 0.2;
    r.train_loss_padded = Some(0.2); // the loss the criteria use
    r.save(path).unwrap();
}

fn build(dirs: &[&Path], out: &Path) -> (String, Dataset) {
    let mut args = vec!["dataset", "build", "--out", s(out)];
    for d in dirs {
        args.extend(["--params-dir", s(d)]);
    }
    let text = ok(&gfr(&args));
    (text, Dataset::load(out).unwrap())
}

/// The `val EVR` printed for each cell on the per-cell lines of `gfr fit --quiet`.
fn reported_evrs(out: &str) -> Vec<(u64, String, f64)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("cell ")?;
            let (id, rest) = rest.split_once(": ")?;
            let (status, rest) = rest.split_once(" (val EVR ")?;
            let evr = rest.split(',').next()?.parse().ok()?;
            Some((id.parse().ok()?, status.to_string(), evr))
        })
        .collect()
}

#[test]
fn the_activation_bin_size_is_recorded_and_the_dataset_files_it_under_its_pair() {
    let dir = scratch("actvbin");
    let (data, params) = (dir.join("data"), dir.join("params"));
    simulate(&data, 1, 61);
    let cfg = tiny(&dir);
    ok(&fit(
        s(&cfg),
        &data,
        &params,
        &["--bin-size", "20", "--activation-bin-size", "100"],
    ));
    let path = params.join("bin20_actv100/61.pickle");
    let r = FitResult::load(&path).unwrap();
    assert_eq!(r.bin_size, 20);
    assert_eq!(r.params.bin_size, 20);
    assert_eq!(
        r.params.activation.bin_size, 100,
        "g.bin_size is the activation bin"
    );
    assert_eq!(r.pair(), (20, 100));
    assert_eq!(r.activation_fallback(), None);
    assert_eq!(r.meta.config_name.as_deref(), Some("tiny"));
    make_good(&path, 0.8);
    let (_, ds) = build(&[&params], &dir.join("ds.pickle"));
    assert_eq!(
        ds.pairs.keys().copied().collect::<Vec<_>>(),
        vec![(20, 100)]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn two_bin_sizes_in_one_save_path_keep_both_results() {
    let dir = scratch("twobins");
    let (data, params) = (dir.join("data"), dir.join("params"));
    simulate(&data, 2, 71);
    let cfg = tiny(&dir);
    ok(&fit(s(&cfg), &data, &params, &["--bin-size", "20"]));
    let first = std::fs::read(params.join("bin20_actv20/71.pickle")).unwrap();
    // a bin-50 run is no rival of the bin-20 results, whatever their EVRs
    make_good(&params.join("bin20_actv20/71.pickle"), 0.999);
    let first_good = std::fs::read(params.join("bin20_actv20/71.pickle")).unwrap();
    assert_ne!(first, first_good);
    let out = ok(&fit(s(&cfg), &data, &params, &["--bin-size", "50"]));
    assert!(!out.contains("kept-previous"), "{out}");
    assert_eq!(
        std::fs::read(params.join("bin20_actv20/71.pickle")).unwrap(),
        first_good
    );
    for id in [71, 72] {
        assert_eq!(
            FitResult::load(&params.join(format!("bin50_actv20/{id}.pickle")))
                .unwrap()
                .bin_size,
            50
        );
    }
    assert!(params.join("bin20_actv20/fit_summary.json").exists());
    assert!(params.join("bin50_actv20/fit_summary.json").exists());
    make_good(&params.join("bin50_actv20/71.pickle"), 0.7);
    let (text, ds) = build(&[&params], &dir.join("ds.pickle"));
    assert_eq!(
        ds.pairs.keys().copied().collect::<Vec<_>>(),
        vec![(20, 20), (50, 20)],
        "{text}"
    );
    assert!(text.contains("2 fit summaries: 4 saved"), "{text}");
    // plot fit finds the pair folders; with two pairs it asks which
    let plot = |extra: &[&str]| {
        let mut a = vec![
            "plot",
            "fit",
            "--cell-id",
            "71",
            "--params-dir",
            s(&params),
            "--data-dir",
            s(&data),
            "--out",
        ];
        let figs = dir.join("figs");
        let figs = s(&figs).to_string();
        a.push(&figs);
        a.extend_from_slice(extra);
        gfr(&a)
    };
    let e = fails(&plot(&[]));
    assert!(
        e.contains("(20, 20)") && e.contains("(50, 20)") && e.contains("--bin-size"),
        "{e}"
    );
    let out = ok(&plot(&["--bin-size", "50"]));
    assert!(out.contains("wrote"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn overlapping_runs_keep_the_best_result() {
    let dir = scratch("overlap");
    let (data, params) = (dir.join("data"), dir.join("params"));
    simulate(&data, 6, 81);
    let cfg = tiny(&dir);
    // two runs of different seeds on one save path at the same time
    let spawn = |seed: &str| {
        Command::new(env!("CARGO_BIN_EXE_gfr"))
            .args([
                "fit",
                "--config-path",
                s(&cfg),
                "--data-dir",
                s(&data),
                "--save-path",
                s(&params),
                "--quiet",
                "--batch-cells",
                "1",
                "--seed",
                seed,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("1"), spawn("2"));
    let outs: Vec<String> = [a, b]
        .into_iter()
        .map(|c| ok(&c.wait_with_output().unwrap()))
        .collect();
    let reported: Vec<Vec<(u64, String, f64)>> = outs.iter().map(|o| reported_evrs(o)).collect();
    assert_eq!(reported[0].len(), 6, "{}", outs[0]);
    assert_eq!(reported[1].len(), 6, "{}", outs[1]);
    for id in 81..=86u64 {
        let best = reported
            .iter()
            .flat_map(|r| r.iter().filter(|x| x.0 == id).map(|x| x.2))
            .fold(f64::NEG_INFINITY, f64::max);
        let saved = FitResult::load(&params.join(format!("bin20_actv20/{id}.pickle"))).unwrap();
        assert!(
            (saved.evr1 - best).abs() < 6e-4,
            "cell {id}: saved evr1 {} but the best run reported {best}\n{}\n{}",
            saved.evr1,
            outs[0],
            outs[1]
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn save_if_better_keeps_the_best_whatever_the_order() {
    let dir = scratch("savebetter");
    let path = dir.join("bin20_actv20/1.pickle");
    let (good, bad) = (result(0.8, 20, 20, 20), result(0.6, 20, 20, 20));
    use gfr::fit::{SaveOutcome, save_if_better};
    assert_eq!(save_if_better(&path, &good).unwrap(), SaveOutcome::Written);
    assert_eq!(
        save_if_better(&path, &bad).unwrap(),
        SaveOutcome::KeptSaved(0.8)
    );
    assert_eq!(FitResult::load(&path).unwrap().evr1, 0.8);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(save_if_better(&path, &bad).unwrap(), SaveOutcome::Written);
    assert_eq!(save_if_better(&path, &good).unwrap(), SaveOutcome::Written);
    assert_eq!(FitResult::load(&path).unwrap().evr1, 0.8);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn shards_at_once_write_their_own_summaries() {
    let dir = scratch("shardsum");
    let (data, params) = (dir.join("data"), dir.join("params"));
    simulate(&data, 3, 91);
    let cfg = tiny(&dir);
    let spawn = |shard: &str| {
        Command::new(env!("CARGO_BIN_EXE_gfr"))
            .args([
                "fit",
                "--config-path",
                s(&cfg),
                "--data-dir",
                s(&data),
                "--save-path",
                s(&params),
                "--quiet",
                "--shard",
                shard,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("0/2"), spawn("1/2"));
    for c in [a, b] {
        ok(&c.wait_with_output().unwrap());
    }
    let rows = |name: &str| -> Vec<u64> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(params.join("bin20_actv20").join(name)).unwrap())
                .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["cell_id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(rows("fit_summary.shard-0-of-2.json"), vec![91, 93]);
    assert_eq!(rows("fit_summary.shard-1-of-2.json"), vec![92]);
    assert!(!params.join("bin20_actv20/fit_summary.json").exists());
    make_good(&params.join("bin20_actv20/92.pickle"), 0.9);
    let (text, _) = build(&[&params], &dir.join("ds.pickle"));
    assert!(text.contains("2 fit summaries: 3 saved"), "{text}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_killed_fit_resumes_where_it_stopped_and_stale_temporaries_go() {
    let dir = scratch("resume");
    let (data, params) = (dir.join("data"), dir.join("params"));
    simulate(&data, 6, 101);
    // slow enough to be killed in the middle
    let cfg = config(
        &dir,
        "slow.json",
        r#"{"config_name": "slow", "activation_epochs": 20, "activation_repeats": 1, "hparams": [{"lr": 0.01, "epochs": 40}]}"#,
    );
    let pair = params.join("bin20_actv20");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gfr"))
        .args([
            "fit",
            "--config-path",
            s(&cfg),
            "--data-dir",
            s(&data),
            "--save-path",
            s(&params),
            "--quiet",
            "--batch-cells",
            "1",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !pair.join("101.pickle").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no result appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done: Vec<u64> = (101..=106)
        .filter(|id| pair.join(format!("{id}.pickle")).exists())
        .collect();
    // a temporary left by a process killed between write and rename
    let stale = pair.join(format!(".106.pickle.{}.tmp", child.id()));
    std::fs::write(&stale, b"partial").unwrap();
    let saved: Vec<Vec<u8>> = done
        .iter()
        .map(|id| std::fs::read(pair.join(format!("{id}.pickle"))).unwrap())
        .collect();
    let out = ok(&fit(
        s(&cfg),
        &data,
        &params,
        &["--resume", "--batch-cells", "1"],
    ));
    assert!(!stale.exists(), "{out}");
    assert!(out.contains("no longer runs"), "{out}");
    for (id, bytes) in done.iter().zip(&saved) {
        assert!(
            out.contains(&format!("cell {id}: skipped")) && out.contains("--resume skips it"),
            "{out}"
        );
        assert_eq!(
            &std::fs::read(pair.join(format!("{id}.pickle"))).unwrap(),
            bytes
        );
    }
    for id in 101..=106u64 {
        let r = FitResult::load(&pair.join(format!("{id}.pickle"))).unwrap();
        assert_eq!(r.meta.config_name.as_deref(), Some("slow"));
        if !done.contains(&id) {
            assert!(out.contains(&format!("cell {id}: saved")), "{out}");
        }
    }
    // another config is not the saved results' config: --resume fits the cells again
    let out = ok(&fit(s(&tiny(&dir)), &data, &params, &["--resume"]));
    assert!(!out.contains("--resume skips it"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_unwritable_save_path_is_found_before_any_work_and_write_errors_name_the_file() {
    let dir = scratch("unwritable");
    let data = dir.join("data");
    simulate(&data, 2, 111);
    let cfg = tiny(&dir);
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = fails(&fit(s(&cfg), &data, &file.join("params"), &[]));
    assert!(e.contains("--save-path") && e.contains("a-file"), "{e}");
    assert!(!e.contains("cell 111"), "no cell was fitted: {e}");
    // a write that fails mid-run: the cell says which file and why; the table still prints
    let params = dir.join("params");
    std::fs::create_dir_all(params.join("bin20_actv20/111.pickle")).unwrap();
    let out = fit(s(&cfg), &data, &params, &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("cell id") && text.contains("failed"),
        "{text}"
    );
    assert!(text.contains("111.pickle"), "{text}");
    assert!(
        params.join("bin20_actv20/112.pickle").exists(),
        "the other cell is saved: {text}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(params.join("bin20_actv20"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_activation_fallback_is_labelled_and_duplicates_keep_the_best() {
    let dir = scratch("fallback");
    let (a, b) = (dir.join("a"), dir.join("b"));
    // cell 1 asked for 20 ms, fitted at 100 ms: filed under (20, 20), flagged
    result(0.8, 20, 20, 100)
        .save(&a.join("bin20_actv20/1.pickle"))
        .unwrap();
    // cell 2: three results of one pair in two folders (one in the old flat layout)
    result(0.7, 20, 20, 20).save(&a.join("2.pickle")).unwrap();
    result(0.9, 20, 20, 20)
        .save(&b.join("bin20_actv20/2.pickle"))
        .unwrap();
    // and one of another pair, which is not a duplicate
    result(0.75, 50, 100, 100)
        .save(&b.join("bin50_actv100/2.pickle"))
        .unwrap();
    let (text, ds) = build(&[&a, &b], &dir.join("ds.pickle"));
    assert!(text.contains("1 duplicate results dropped"), "{text}");
    assert!(text.contains(s(&a.join("2.pickle"))), "{text}");
    assert!(
        text.contains("1 included cells had their activation fitted at 100 ms"),
        "{text}"
    );
    let r1 = ds.record(1, 20, 20).unwrap();
    assert_eq!(r1.actv_fallback, Some(100));
    assert_eq!(r1.params.activation.bin_size, 100);
    assert_eq!(ds.record(2, 20, 20).unwrap().val_evr, 0.9);
    assert_eq!(ds.record(2, 50, 100).unwrap().val_evr, 0.75);
    if let Some(py) = python() {
        run_python(
            py,
            &format!(
                "import pickle\nd = pickle.load(open('{}', 'rb'))\n\
                 r = [x for x in d[(20, 20)] if x['cell_id'] == 1][0]\n\
                 assert r['actv_bin_size'] == 20 and r['actv_bin_size_used'] == 100, r\n\
                 assert r['params']['g']['bin_size'] == 100\n\
                 assert 'actv_bin_size_used' not in d[(20, 20)][1]",
                s(&dir.join("ds.pickle"))
            ),
        );
    }
    // the fit summary table says so too
    let report = gfr::fit::CellReport {
        cell_id: 1,
        status: gfr::fit::CellStatus::Saved,
        val_evr: Some(0.8),
        test_evr: Some(0.75),
        train_loss: Some(0.3),
        seconds: 1.0,
        message: String::new(),
        activation_fallback: Some(100),
    };
    let table = gfr::fit::summary_table(&[report]);
    assert!(
        table.contains("note 1: activation fitted at 100 ms"),
        "{table}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dataset_build_and_simulate_never_replace_silently() {
    let dir = scratch("noreplace");
    let out = dir.join("ds.pickle");
    let params = dir.join("params");
    result(0.8, 20, 20, 20)
        .save(&params.join("bin20_actv20/1.pickle"))
        .unwrap();
    build(&[&params], &out);
    let before = std::fs::read(&out).unwrap();
    // an empty folder: an error, the dataset stays
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = fails(&gfr(&[
        "dataset",
        "build",
        "--params-dir",
        s(&empty),
        "--out",
        s(&out),
    ]));
    assert!(
        e.contains("no readable fit results") && e.contains("empty"),
        "{e}"
    );
    // results that all fail the criteria: refused without --overwrite
    let weak = dir.join("weak");
    result(0.1, 20, 20, 20)
        .save(&weak.join("bin20_actv20/1.pickle"))
        .unwrap();
    let args = [
        "dataset",
        "build",
        "--params-dir",
        s(&weak),
        "--out",
        s(&out),
    ];
    let e = fails(&gfr(&args));
    assert!(e.contains("--overwrite"), "{e}");
    assert_eq!(std::fs::read(&out).unwrap(), before);
    ok(&gfr(&[&args[..], &["--overwrite"]].concat()));
    assert_eq!(Dataset::load(&out).unwrap().n_records(), 0);

    // simulate over a cell_ids.csv of other cells
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("cell_ids.csv"), "565871768\n").unwrap();
    let e = fails(&gfr(&["simulate", "--cells", "1", "--data-dir", s(&data)]));
    assert!(
        e.contains("cell_ids.csv") && e.contains("--overwrite"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("cell_ids.csv")).unwrap(),
        "565871768\n"
    );
    // the same cells again are fine
    ok(&gfr(&[
        "simulate",
        "--cells",
        "1",
        "--data-dir",
        s(&data),
        "--overwrite",
    ]));
    ok(&gfr(&["simulate", "--cells", "1", "--data-dir", s(&data)]));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `gfr network` on a small slice of the built-in sample, 8 neurons.
fn network(dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    small_network(dir, "8", extra)
}

#[test]
fn network_runs_of_other_settings_are_never_replaced_silently() {
    let dir = scratch("netnames");
    let (_, first) = network(&dir, &["--epochs", "1", "--seed", "0"]);
    let base = dir.join("gfr_l_8_False_False.json");
    let before = std::fs::read(&base).unwrap();
    let (out, second) = network(&dir, &["--epochs", "1", "--seed", "1"]);
    assert!(out.contains("gfr_l_8_False_False_run2"), "{out}");
    assert!(dir.join("gfr_l_8_False_False_run2.json").exists());
    assert!(dir.join("gfr_l_8_False_False_run2.bpk").exists());
    assert_eq!(std::fs::read(&base).unwrap(), before);
    assert_eq!(
        (first["seed"].as_u64(), second["seed"].as_u64()),
        (Some(0), Some(1))
    );
    // the same settings again replace their own run
    let (out, _) = network(&dir, &["--epochs", "1", "--seed", "1"]);
    assert!(out.contains("_run2.json"), "{out}");
    assert!(!dir.join("gfr_l_8_False_False_run3.json").exists());
    // --overwrite takes the name
    let (out, j) = network(&dir, &["--epochs", "1", "--seed", "2", "--overwrite"]);
    assert!(out.contains("saved") && !out.contains("_run"), "{out}");
    assert_eq!(j["seed"].as_u64(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_killed_network_run_resumes_from_its_checkpoint() {
    let dir = scratch("netresume");
    let (a, b) = (dir.join("a"), dir.join("b"));
    let extra = ["--epochs", "4", "--seed", "5", "--train-limit", "1280"];
    let (_, whole) = network(&a, &extra);
    assert!(!a.join("gfr_l_8_False_False.checkpoint").exists());
    // the same run, killed after its first checkpoint
    let state = b.join("gfr_l_8_False_False.checkpoint/state.json");
    let mut killed = false;
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(&b);
        let mut args = vec![
            "network",
            "--save-dir",
            s(&b),
            "--quiet",
            "--offline",
            "--test-limit",
            "200",
            "--n-nodes",
            "8",
        ];
        args.extend_from_slice(&extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_gfr"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !state.exists() && t0.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if !b.join("gfr_l_8_False_False.json").exists() && state.exists() {
            killed = true;
            break;
        }
    }
    assert!(killed, "could not interrupt the run");
    // without --resume the checkpoint is not thrown away
    let mut args = vec!["network", "--save-dir", s(&b), "--quiet", "--offline"];
    args.extend(["--test-limit", "200", "--n-nodes", "8"]);
    args.extend_from_slice(&extra);
    let e = fails(&gfr(&args));
    assert!(e.contains("--resume"), "{e}");
    let (out, resumed) = network(&b, &[&extra[..], &["--resume"]].concat());
    assert!(out.contains("resuming"), "{out}");
    let h = |j: &serde_json::Value| -> Vec<(f64, f64, f64)> {
        j["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["train_loss"].as_f64().unwrap(),
                    e["train_accuracy"].as_f64().unwrap(),
                    e["test_accuracy_step1"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (x, y) = (h(&whole), h(&resumed));
    assert_eq!(x.len(), 4);
    assert_eq!(y.len(), 4);
    for (p, q) in x.iter().zip(&y) {
        assert!((p.0 - q.0).abs() < 1e-5, "{x:?} vs {y:?}");
        assert!(
            (p.1 - q.1).abs() < 1e-9 && (p.2 - q.2).abs() < 1e-9,
            "{x:?} vs {y:?}"
        );
    }
    assert_eq!(whole["final_neurons"], resumed["final_neurons"]);
    assert!(!b.join("gfr_l_8_False_False.checkpoint").exists());
    // a resumed run that is complete has nothing to do
    let mut args = vec!["network", "--save-dir", s(&b), "--quiet", "--offline"];
    args.extend(["--test-limit", "200", "--n-nodes", "8", "--resume"]);
    args.extend_from_slice(&extra);
    let out = ok(&gfr(&args));
    assert!(out.contains("nothing to resume"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Three runs of a few epochs: a fit with results between its runs.
fn three_runs(dir: &Path) -> PathBuf {
    config(
        dir,
        "three.json",
        r#"{"config_name": "three", "activation_epochs": 30, "activation_repeats": 2, "hparams": [{"lr": 0.01, "epochs": 12}, {"lr": 0.003, "epochs": 12}, {"lr": 0.001, "epochs": 12}]}"#,
    )
}

/// Every number of two results, compared exactly.
fn assert_same_fit(a: &FitResult, b: &FitResult, what: &str) {
    assert_eq!(a.params, b.params, "{what}: params");
    assert_eq!(a.evr1.to_bits(), b.evr1.to_bits(), "{what}: evr1");
    assert_eq!(a.evr2.to_bits(), b.evr2.to_bits(), "{what}: evr2");
    assert_eq!(a.train_losses, b.train_losses, "{what}: train losses");
    assert_eq!(a.test_losses, b.test_losses, "{what}: test losses");
    assert_eq!(
        a.train_loss_padded, b.train_loss_padded,
        "{what}: padded loss"
    );
    assert_eq!(a.meta, b.meta, "{what}: meta");
}

/// Stops a fit (by panicking, as a kill would stop it) when run `stop` starts.
struct StopAtRun(usize);
impl gfr::fit::FitProgress for StopAtRun {
    fn run_started(&self, run: usize, _runs: usize, _epochs: usize) {
        if run == self.0 {
            panic!("stopped at run {run}");
        }
    }
}

#[test]
fn a_fit_stopped_between_runs_keeps_its_best_so_far_and_resumes_to_the_same_result() {
    use gfr::fit::{FitConfig, FitOptions, fit_and_save_batch};
    let dir = scratch("partial");
    let data = dir.join("data");
    simulate(&data, 3, 121);
    let config = FitConfig::load(&three_runs(&dir)).unwrap();
    let ids = [121u64, 122, 123];
    let opts = |save: &str| {
        let mut o = FitOptions::new(
            gfr::data::DataDir::new(data.clone()),
            dir.join(save),
            config.clone(),
            gfr::device::cpu(),
        );
        o.batch_cells = 3;
        o
    };
    // uninterrupted
    let whole = opts("whole");
    for r in fit_and_save_batch(&ids, &whole, &()) {
        assert_eq!(r.status, "saved", "{}", r.message);
    }
    // stopped as run 3 of 3 starts: runs 1 and 2 are on disk, marked partial
    let stopped = opts("stopped");
    let caught = std::panic::catch_unwind(|| fit_and_save_batch(&ids, &stopped, &StopAtRun(2)));
    assert!(caught.is_err());
    for id in ids {
        let r = FitResult::load(&stopped.result_path(id)).unwrap();
        let p = r.meta.partial.expect("a partial result");
        assert_eq!(p.runs_done, 2, "cell {id}");
        assert!(r.evr1.is_finite() && r.params.alpha.iter().all(|a| a.is_finite()));
    }
    // the dataset leaves partial results out and says how to end them
    let out = fails(&gfr(&[
        "dataset",
        "build",
        "--params-dir",
        s(&dir.join("stopped")),
        "--out",
        s(&dir.join("ds.pickle")),
    ]));
    assert!(
        out.contains("3 partial results left out") && out.contains("only partial ones"),
        "{out}"
    );
    assert!(!dir.join("ds.pickle").exists());
    // without --resume a partial result is not skipped; with it, the fit goes on from run 3 and
    // ends where the uninterrupted fit ended, number for number
    let resumed = FitOptions {
        resume: true,
        ..stopped.clone()
    };
    let reports = fit_and_save_batch(&ids, &resumed, &StopAtRun(99));
    for (id, r) in ids.iter().zip(&reports) {
        assert_eq!(r.status, "saved", "cell {id}: {}", r.message);
        let a = FitResult::load(&whole.result_path(*id)).unwrap();
        let b = FitResult::load(&resumed.result_path(*id)).unwrap();
        assert!(b.meta.partial.is_none());
        assert_same_fit(&a, &b, &format!("cell {id}"));
    }
    // once complete, --resume skips them
    for r in fit_and_save_batch(&ids, &resumed, &StopAtRun(0)) {
        assert_eq!(r.status, "skipped", "{}", r.message);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_fit_killed_mid_batch_resumes_from_its_partial_results() {
    let dir = scratch("killbatch");
    let data = dir.join("data");
    simulate(&data, 3, 131);
    let cfg = config(
        &dir,
        "four.json",
        r#"{"config_name": "four", "activation_epochs": 30, "activation_repeats": 1, "hparams": [{"lr": 0.01, "epochs": 40}, {"lr": 0.003, "epochs": 40}, {"lr": 0.001, "epochs": 40}, {"lr": 0.0003, "epochs": 40}]}"#,
    );
    let (killed, whole) = (dir.join("killed"), dir.join("whole"));
    let pair = killed.join("bin20_actv20");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gfr"))
        .args(["fit", "--config-path", s(&cfg), "--data-dir", s(&data)])
        .args(["--save-path", s(&killed), "--quiet", "--batch-cells", "3"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let partial_on_disk = || {
        (131..=133).any(|id| {
            FitResult::load(&pair.join(format!("{id}.pickle")))
                .is_ok_and(|r| r.meta.partial.is_some())
        })
    };
    while !partial_on_disk() {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "no partial result appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fit ended before a partial result was seen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL, mid-batch
    child.wait().unwrap();
    let out = ok(&fit(
        s(&cfg),
        &data,
        &killed,
        &["--resume", "--batch-cells", "3"],
    ));
    assert!(out.contains("going on from its partial result"), "{out}");
    ok(&fit(s(&cfg), &data, &whole, &["--batch-cells", "3"]));
    for id in 131..=133u64 {
        let a = FitResult::load(&whole.join(format!("bin20_actv20/{id}.pickle"))).unwrap();
        let b = FitResult::load(&pair.join(format!("{id}.pickle"))).unwrap();
        assert_same_fit(&a, &b, &format!("cell {id}"));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
