//! `gfr::run_network`: the network experiment from Rust, and the JSON it writes.

mod common;
use common::*;

use std::cell::RefCell;

use gfr::network::{LrSchedule, ModelKind, NetworkObserver, NetworkRun, NetworkSpec};

/// Collects the notes of a run.
#[derive(Default)]
struct Notes(RefCell<Vec<String>>);

impl NetworkObserver for Notes {
    fn note(&self, line: &str) {
        self.0.borrow_mut().push(line.to_string());
    }
}

/// Burn seeds its CPU backend for the whole process: runs in parallel threads would draw
/// each other's initial weights, so the tests here take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A one-epoch run on a small slice of the built-in sample (an empty MNIST folder, offline).
fn tiny(dir: &std::path::Path) -> NetworkSpec {
    NetworkSpec {
        epochs: 1,
        n_nodes: 8,
        train_limit: Some(128),
        test_limit: Some(64),
        mnist_dir: dir.join("no-mnist"),
        offline: true,
        save_dir: dir.join("runs"),
        ..NetworkSpec::default()
    }
}

/// Every number of a run's JSON but the epochs' timings.
fn without_seconds(mut v: serde_json::Value) -> serde_json::Value {
    for e in v["history"].as_array_mut().unwrap() {
        e.as_object_mut().unwrap().remove("seconds");
    }
    v
}

#[test]
fn run_network_returns_what_it_saves_and_what_the_cli_saves() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("netapi");
    let spec = NetworkSpec {
        diagnose: true,
        ..tiny(&dir)
    };
    let notes = Notes::default();
    let saved = gfr::run_network(&spec, &notes).unwrap().expect("a new run");
    assert_eq!(saved.name, "gfr_l_8_False_False");
    assert_eq!(saved.json, spec.save_dir.join("gfr_l_8_False_False.json"));
    assert!(saved.weights.exists());
    // the returned run is the file, and the file is its serialisation
    let bytes = std::fs::read(&saved.json).unwrap();
    assert_eq!(NetworkRun::load(&saved.json).unwrap(), saved.run);
    assert_eq!(saved.run.to_json().unwrap(), bytes);
    let run = &saved.run;
    assert_eq!((run.model, run.n_nodes, run.epochs), (ModelKind::Gfr, 8, 1));
    assert_eq!((run.n_train, run.n_test), (128, 64));
    assert_eq!(run.mnist, "built-in sample");
    assert_eq!(run.history.len(), 1);
    assert_eq!(run.final_train_loss, run.history[0].train_loss);
    let g = run.gfr.as_ref().expect("a GFR run");
    assert_eq!(g.neurons, "default");
    assert_eq!(g.final_neurons.len(), 8);
    assert!(g.diagnostics.init.is_some() && g.diagnostics.trained.is_some());
    // the notes name settings as the spec does, not as flags
    let notes = notes.0.into_inner();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("(offline;") && n.contains("built-in SAMPLE"))
            && notes.iter().any(|n| n.starts_with("GFR network: H = 8"))
            && notes.iter().all(|n| !n.contains("--")),
        "{notes:?}"
    );

    // `gfr network` with the same settings writes the same file (timings aside)
    let cli = dir.join("cli");
    let out = ok(&gfr(&[
        "network",
        "--epochs",
        "1",
        "--n-nodes",
        "8",
        "--train-limit",
        "128",
        "--test-limit",
        "64",
        "--mnist-dir",
        s(&spec.mnist_dir),
        "--offline",
        "--diagnose",
        "--quiet",
        "--save-dir",
        s(&cli),
    ]));
    assert!(out.contains("saved "), "{out}");
    let from_cli: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cli.join("gfr_l_8_False_False.json")).unwrap())
            .unwrap();
    let from_api: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(without_seconds(from_cli), without_seconds(from_api));

    // resuming a complete run does nothing
    let resume = NetworkSpec {
        resume: true,
        ..spec.clone()
    };
    assert!(gfr::run_network(&resume, &()).unwrap().is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn baselines_and_bad_settings() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("netapi-rnn");
    let spec = NetworkSpec {
        model: ModelKind::Lstm,
        ..tiny(&dir)
    };
    let saved = gfr::run_network(&spec, &()).unwrap().expect("a new run");
    assert_eq!(saved.name, "lstm_l_8");
    assert_eq!(NetworkRun::load(&saved.json).unwrap(), saved.run);
    assert!(saved.run.gfr.is_none() && saved.run.hidden.is_some());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved.json).unwrap()).unwrap();
    assert!(json.get("bio_input").is_none() && json.get("neurons").is_none());

    // errors name the setting
    let bad = NetworkSpec {
        lr: -1.0,
        ..tiny(&dir)
    };
    let e = format!("{:#}", gfr::run_network(&bad, &()).unwrap_err());
    assert!(e.starts_with("lr -1: must be a positive number"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The annealed schedule (the default) trains exactly as the constant one until the last
/// quarter of the steps, then differently; each run's JSON says which it used.
#[test]
fn the_lr_schedule_changes_only_the_last_quarter_of_a_run() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("netapi-sched");
    // 128 digits in batches of 64: 2 steps per epoch, 10 in all; the lr is lowered from step 8
    // (the second-last epoch's), which the last epoch's train loss shows
    let run = |schedule: LrSchedule, sub: &str| {
        let spec = NetworkSpec {
            epochs: 5,
            lr: 5e-3,
            lr_schedule: schedule,
            save_dir: dir.join(sub),
            ..tiny(&dir)
        };
        gfr::run_network(&spec, &())
            .unwrap()
            .expect("a new run")
            .run
    };
    assert_eq!(NetworkSpec::default().lr_schedule, LrSchedule::Anneal);
    let annealed = run(LrSchedule::Anneal, "anneal");
    let constant = run(LrSchedule::Constant, "constant");
    assert_eq!(annealed.lr_schedule, LrSchedule::Anneal);
    assert_eq!(constant.lr_schedule, LrSchedule::Constant);
    let numbers = |e: &gfr::network::EpochStats| {
        (
            e.train_loss,
            e.train_accuracy,
            e.test_accuracy_step1,
            e.test_accuracy_vote,
        )
    };
    for k in 0..4 {
        assert_eq!(
            numbers(&annealed.history[k]),
            numbers(&constant.history[k]),
            "epoch {k}"
        );
    }
    assert_ne!(
        annealed.history[4].train_loss,
        constant.history[4].train_loss
    );
    std::fs::remove_dir_all(dir).unwrap();
}
