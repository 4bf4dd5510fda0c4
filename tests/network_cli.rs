//! `gfr network`: freeze flags, saved parameters, baselines, MNIST input handling.

mod common;
use common::*;

use gfr::network::{GfrNetwork, default_neuron};
use serde_json::Value;

/// Runs `gfr network` on a small slice of the built-in sample (16 neurons); `extra` overrides
/// the defaults.
fn run(dir: &std::path::Path, extra: &[&str]) -> Value {
    small_network(dir, "16", extra).1
}

fn neurons(j: &Value) -> Vec<Value> {
    j["final_neurons"].as_array().unwrap().clone()
}

#[test]
fn freeze_flags_leave_the_frozen_parameters_unchanged() {
    let dir = scratch("netfreeze");
    let both = run(&dir, &["--epochs", "1", "--seed", "1"]);
    let frozen_n = run(&dir, &["--epochs", "1", "--freeze-neurons"]);
    let frozen_a = run(&dir, &["--epochs", "1", "--freeze-activations"]);
    // parameter counts: α, β are 2·H·4, b and c are H + 2H
    let t = |j: &Value| j["trainable_params"].as_u64().unwrap();
    assert_eq!(both["total_params"], frozen_n["total_params"]);
    assert_eq!(t(&both) - t(&frozen_n), 2 * 16 * 4);
    assert_eq!(t(&both) - t(&frozen_a), 16 * 3);
    for n in neurons(&frozen_n) {
        assert_eq!(n["a"], serde_json::json!([[4.0, 0.0, 0.0, 0.0]]));
        assert_eq!(n["b"], serde_json::json!([[0.0, 0.0, 0.0, 0.0]]));
    }
    assert!(
        neurons(&frozen_n)
            .iter()
            .any(|n| n["g"]["poly_coeff"] != serde_json::json!([[0.0, 1.0]])),
        "activations train"
    );
    for n in neurons(&frozen_a) {
        assert_eq!(n["g"]["poly_coeff"], serde_json::json!([[0.0, 1.0]]));
        assert_eq!(n["g"]["b"], serde_json::json!([0.0]));
    }
    assert!(
        neurons(&frozen_a)
            .iter()
            .any(|n| n["a"] != serde_json::json!([[4.0, 0.0, 0.0, 0.0]])),
        "neurons train"
    );
    // the seed's positional form, Python booleans in the file name
    let j = run(&dir, &["1e-3", "1", "64", "16", "True", "True"]);
    assert_eq!(
        (
            j["freeze_neurons"].as_bool(),
            j["freeze_activations"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(
        dir.join("gfr_l_16_True_True.json").exists() && dir.join("gfr_l_16_True_True.bpk").exists()
    );
    assert_eq!(t(&j), t(&both) - 2 * 16 * 4 - 16 * 3);

    // the Burn record loads back into a network with the same neurons
    use burn::module::Module;
    let device = gfr::device::cpu();
    let net = GfrNetwork::new(&vec![default_neuron(); 16], false, &device)
        .load_file(dir.join("gfr_l_16_False_True.bpk"));
    let alpha = net.neurons.to_params(0)[3].alpha.clone();
    let saved: Vec<f64> = serde_json::from_value(neurons(&frozen_a)[3]["a"][0].clone()).unwrap();
    for (x, y) in alpha.iter().zip(&saved) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn trainable_neurons_train_stably() {
    let dir = scratch("netstable");
    let args = [
        "--epochs",
        "4",
        "--n-nodes",
        "64",
        "--lr",
        "3e-3",
        "--train-limit",
        "2000",
    ];
    let j = run(&dir, &args);
    let h = j["history"].as_array().unwrap();
    let loss: Vec<f64> = h
        .iter()
        .map(|e| e["train_loss"].as_f64().unwrap())
        .collect();
    assert!(loss.iter().all(|l| l.is_finite()), "{loss:?}");
    assert!(loss[3] < loss[0] - 0.3, "loss falls: {loss:?}");
    assert!(
        j["final_test_accuracy_step1"].as_f64().unwrap() > 0.3,
        "{j}"
    );
    assert_eq!(j["history_scale"], 10.0);
    // the published parameterisation (1000 · β · f with β trained directly) does not learn
    let published = run(&dir, &[&args[..], &["--history-scale", "1000"]].concat());
    let acc = published["final_test_accuracy_step1"].as_f64().unwrap();
    assert!(
        acc < 0.25,
        "history scale 1000 should stay near chance: {acc}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn baselines_and_saved_neurons() {
    let dir = scratch("netbase");
    for model in ["rnn", "lstm"] {
        let j = run(&dir, &["--epochs", "1", "--model", model]);
        assert_eq!(j["model"], model);
        // matched to the GFR network's trainable count (1,082 at H = 16) within one hidden unit
        let n = j["trainable_params"].as_u64().unwrap() as f64;
        assert!((n - 1082.0).abs() / 1082.0 < 0.1, "{model}: {n}");
    }
    // neurons taken from a saved network, shuffled
    let first = run(
        &dir,
        &["--epochs", "1", "--freeze-activations", "--seed", "3"],
    );
    let file = dir.join("gfr_l_16_False_True.json");
    let again = run(
        &dir,
        &[
            "--epochs",
            "1",
            "--neurons",
            s(&file),
            "--shuffle-neurons",
            "--freeze-neurons",
            "--freeze-activations",
        ],
    );
    let mut a: Vec<String> = neurons(&first).iter().map(|n| n["a"].to_string()).collect();
    let mut b: Vec<String> = neurons(&again).iter().map(|n| n["a"].to_string()).collect();
    assert_ne!(a, b, "shuffled");
    a.sort();
    b.sort();
    assert_eq!(a, b, "the same neurons, frozen");
    // a wrong flag is said before MNIST is read or downloaded
    let mnist = dir.join("mnist");
    let e = fails(&gfr(&[
        "network",
        "--neurons",
        s(&dir.join("nope.json")),
        "--save-dir",
        s(&dir),
        "--mnist-dir",
        s(&mnist),
    ]));
    assert!(e.contains("nope.json") && !e.contains("MNIST"), "{e}");
    assert!(!mnist.exists(), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// One epoch of a tiny network on the MNIST files in `mnist`.
fn tiny_run<'a>(mnist: &'a std::path::Path, save: &'a std::path::Path) -> [&'a str; 14] {
    [
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
        s(mnist),
        "--save-dir",
        s(save),
        "--quiet",
    ]
}

#[test]
fn mnist_from_a_folder_and_corrupt_files() {
    let dir = scratch("netmnist");
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    for f in std::fs::read_dir(&sample).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, mnist.join(f.file_name().unwrap())).unwrap();
    }
    let args = tiny_run(&mnist, &dir);
    let out = ok(&gfr(&args));
    assert!(
        out.contains(&format!("MNIST from {}", mnist.display())),
        "{out}"
    );
    // a truncated (uncompressed) label file
    std::fs::remove_file(mnist.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(
        mnist.join("t10k-labels-idx1-ubyte"),
        [0, 0, 8, 1, 0, 0, 3, 232, 7, 2],
    )
    .unwrap();
    let e = fails(&gfr(&args));
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("truncated"),
        "{e}"
    );
    // a missing file is named (offline, or when its download fails)
    std::fs::remove_file(mnist.join("t10k-labels-idx1-ubyte")).unwrap();
    let mut offline = args.to_vec();
    offline.push("--offline");
    let e = fails(&gfr(&offline));
    assert!(e.contains("t10k-labels-idx1-ubyte[.gz] is missing"), "{e}");
    // an empty folder, offline: the built-in sample, labelled as such
    let empty = dir.join("empty");
    let mut sample_args = offline.clone();
    let at = sample_args
        .iter()
        .position(|a| *a == "--mnist-dir")
        .unwrap();
    sample_args[at + 1] = s(&empty);
    let out = ok(&gfr(&sample_args));
    assert!(
        out.contains("built-in SAMPLE") && out.contains("--offline"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn biological_neurons_come_from_the_dataset() {
    use gfr::dataset::{Dataset, DatasetRecord};
    use gfr::neuron::{ActivationParams, NeuronParams};
    let dir = scratch("netbio");
    let mut ds = Dataset::default();
    for (id, b) in [(1u64, 20.0), (2, 40.0), (3, 60.0)] {
        let act = ActivationParams {
            max_current: 300.0,
            max_firing_rate: 0.2,
            poly_coeff: vec![0.1, 1.5],
            threshold: b,
            bin_size: 20,
        };
        let r = gfr::fit::FitResult::with_final_loss(NeuronParams::initial(20, act), 0.8, 0.8, 0.3);
        ds.insert(DatasetRecord::from_fit(id, &r, String::new()));
    }
    let path = dir.join("ds.pickle");
    ds.save(&path).unwrap();
    let j = run(
        &dir,
        &[
            "--epochs",
            "1",
            "--n-nodes",
            "6",
            "--neurons",
            "bio",
            "--dataset",
            s(&path),
            "--freeze-neurons",
            "--freeze-activations",
        ],
    );
    assert_eq!(j["neurons"], "bio");
    let thresholds: Vec<f64> = neurons(&j)
        .iter()
        .map(|n| n["g"]["b"][0].as_f64().unwrap())
        .collect();
    assert!(
        thresholds.iter().all(|b| [20.0, 40.0, 60.0].contains(b)),
        "{thresholds:?}"
    );
    assert!(
        neurons(&j)
            .iter()
            .all(|n| n["bin_size"] == 20 && n["ds"].as_array().unwrap().len() == 8)
    );
    let e = fails(&gfr(&[
        "network",
        "--neurons",
        "bio",
        "--bio-pair",
        "50/100",
        "--dataset",
        s(&path),
        "--save-dir",
        s(&dir),
    ]));
    assert!(e.contains("bin size 50, activation bin size 100"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// `tests/fixtures/fitted_neurons.json`: a published-layout JSON of neurons gfr fitted.
const FITTED_NEURONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/fitted_neurons.json"
);

/// [`FITTED_NEURONS`] imported as `DIR/ds.pickle` (`gfr dataset import`).
fn fitted_dataset(dir: &std::path::Path) -> std::path::PathBuf {
    let ds = dir.join("ds.pickle");
    ok(&gfr(&[
        "dataset",
        "import",
        FITTED_NEURONS,
        "--out",
        s(&ds),
    ]));
    ds
}

/// Neurons that gfr fitted to 60 simulated AdEx cells (`tests/fixtures/fitted_neurons.json`,
/// 43 pass the dataset criteria; thresholds b between 0.56 σ and 0.89 σ). With the published
/// input scaling every neuron is silent at the readout and the network stays at chance; with the
/// relative input (the default) it learns.
#[test]
fn biological_networks_learn_with_the_relative_input_not_the_published_one() {
    let dir = scratch("netbiolearn");
    let ds = fitted_dataset(&dir);
    let fixture = FITTED_NEURONS;
    let args = |input: &'static str| -> Vec<String> {
        [
            "--neurons",
            "bio",
            "--dataset",
            s(&ds),
            "--bio-input",
            input,
            "--freeze-neurons",
            "--freeze-activations",
            "--epochs",
            "4",
            "--train-limit",
            "2000",
            "--test-limit",
            "500",
            "--n-nodes",
            "64",
            "--diagnose",
            "--seed",
            "2",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let run_with = |input| {
        let a = args(input);
        run(&dir, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let published = run_with("published");
    let init = &published["diagnostics"]["init"];
    assert_eq!(init["neurons_active_at_readout"], 0, "{init}");
    assert_eq!(init["input_gradient_norm"], 0.0);
    let acc = |j: &Value| j["final_test_accuracy_step1"].as_f64().unwrap();
    assert!(acc(&published) < 0.2, "published: {}", acc(&published));
    assert_eq!(published["bio_input"], "published");

    let relative = run_with("relative");
    let init = &relative["diagnostics"]["init"];
    assert!(
        init["neurons_active_at_readout"].as_u64().unwrap() >= 32,
        "{init}"
    );
    let readout = init["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(readout["step"], 29);
    assert!(
        readout["active_fraction"].as_f64().unwrap() > 0.3,
        "{readout}"
    );
    assert!(init["input_gradient_norm"].as_f64().unwrap() > 1e-4);
    assert!(acc(&relative) > 0.3, "relative: {}", acc(&relative));
    assert_eq!(relative["activations_frozen"], true);
    // the frozen neurons leave as they came
    let before: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let thresholds: Vec<f64> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["params"]["g"]["b"][0].as_f64().unwrap())
        .collect();
    for n in neurons(&relative) {
        let b = n["g"]["b"][0].as_f64().unwrap();
        assert!(
            thresholds.iter().any(|t| (t - b).abs() <= 1e-4 * t.abs()),
            "{b}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Trainable biological neurons: in physical units (b in pA, the published
/// parameterisation) ten Adam steps move a fitted threshold of hundreds of pA by at most
/// 10 · lr pA; in relative units (the default) by up to 10 · lr drive units, hundreds of times
/// more. The JSON says which; relative units need the relative input.
#[test]
fn biological_neurons_train_in_their_own_units() {
    let dir = scratch("netbiounits");
    let ds = fitted_dataset(&dir);
    let fixture = FITTED_NEURONS;
    let run_with = |units: &str| {
        let save = dir.join(units);
        run(
            &save,
            &[
                "--neurons",
                "bio",
                "--dataset",
                s(&ds),
                "--bio-units",
                units,
                "--epochs",
                "1",
                "--train-limit",
                "640",
                "--test-limit",
                "100",
                "--n-nodes",
                "32",
                "--seed",
                "1",
            ],
        )
    };
    let thresholds = |j: &Value| -> Vec<f64> {
        neurons(j)
            .iter()
            .map(|n| n["g"]["b"][0].as_f64().unwrap())
            .collect()
    };
    let physical = run_with("physical");
    assert_eq!(physical["bio_units"], "physical");
    let fitted: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    let fitted: Vec<f64> = fitted
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["params"]["g"]["b"][0].as_f64().unwrap())
        .collect();
    for b in thresholds(&physical) {
        assert!(fitted.iter().any(|t| (t - b).abs() <= 0.011), "{b}");
    }
    let relative = run_with("relative");
    assert_eq!(relative["bio_units"], "relative");
    let mut moved: Vec<f64> = thresholds(&relative)
        .iter()
        .zip(thresholds(&physical))
        .map(|(r, p)| (r - p).abs())
        .collect();
    moved.sort_by(f64::total_cmp);
    assert!(moved[moved.len() / 2] > 0.1, "{moved:?}");
    // the JSON records the units applied: none for default neurons, physical for the
    // published input and for frozen neurons (nothing to train in other units)
    let short = |name: &str, extra: &[&str]| {
        let mut args = vec!["--epochs", "1", "--train-limit", "64", "--test-limit", "64"];
        args.extend_from_slice(extra);
        run(&dir.join(name), &args)
    };
    assert!(short("default", &[])["bio_units"].is_null());
    let bio = ["--neurons", "bio", "--dataset", s(&ds)];
    let published = short(
        "published",
        &[&bio[..], &["--bio-input", "published"]].concat(),
    );
    assert_eq!(published["bio_units"], "physical");
    let frozen = [&bio[..], &["--freeze-neurons", "--freeze-activations"]].concat();
    assert_eq!(short("frozen", &frozen)["bio_units"], "physical");
    let e = fails(&gfr(&[
        "network",
        "--neurons",
        "bio",
        "--dataset",
        s(&ds),
        "--bio-input",
        "published",
        "--bio-units",
        "relative",
        "--save-dir",
        s(&dir),
    ]));
    assert!(
        e.contains("--bio-units relative needs --bio-input relative"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A local MNIST mirror on 127.0.0.1 serving the sample's files over HTTP for `requests`
/// connections; files not in `serves` get 404. Returns the port and the number of files sent.
fn mirror(
    serves: &'static [&'static str],
    requests: usize,
) -> (u16, std::thread::JoinHandle<usize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist-sample");
    let server = std::thread::spawn(move || {
        let mut sent = 0;
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            reader.read_line(&mut line).unwrap();
            // drain the headers
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
            }
            let name = line
                .split_whitespace()
                .nth(1)
                .unwrap()
                .trim_start_matches('/');
            if serves.iter().any(|s| name.starts_with(s)) {
                let body = std::fs::read(sample.join(name)).unwrap();
                write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .unwrap();
                stream.write_all(&body).unwrap();
                sent += 1;
            } else {
                write!(
                    stream,
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
            }
        }
        sent
    });
    (port, server)
}

/// An empty --mnist-dir is filled by a download (from a local mirror, through
/// GFR_MNIST_MIRROR), and the run reads the downloaded files. A download that fails part-way
/// leaves the folder empty (the run uses the built-in sample, saying why), and the next run
/// completes it.
#[test]
fn mnist_is_downloaded_into_an_empty_folder() {
    let dir = scratch("netdownload");
    let mnist = dir.join("mnist");
    let run = |port: u16| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gfr"))
            .args(tiny_run(&mnist, &dir))
            .env("GFR_MNIST_MIRROR", format!("http://127.0.0.1:{port}"))
            .output()
            .unwrap()
    };
    // the mirror has the training files only
    let (port, server) = mirror(&["train-"], 3);
    let text = ok(&run(port));
    assert!(
        text.contains("download failed") && text.contains("built-in SAMPLE"),
        "{text}"
    );
    assert_eq!(server.join().unwrap(), 2);
    let in_folder = |stem: &str| mnist.join(format!("{stem}.gz")).is_file();
    assert!(
        !in_folder("train-images-idx3-ubyte"),
        "nothing moves in before all files are there"
    );
    // the next run fetches only what is missing
    let (port, server) = mirror(&["t10k-"], 2);
    let text = ok(&run(port));
    assert!(text.contains("downloading"), "{text}");
    assert!(
        text.contains(&format!("MNIST from {}", mnist.display())),
        "{text}"
    );
    assert_eq!(server.join().unwrap(), 2);
    for stem in ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        assert!(in_folder(stem), "{stem}.gz downloaded");
    }
    assert!(
        !mnist.join(".download").exists(),
        "the staging folder is removed"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// Without a terminal (output to a file or pipe) and without --quiet, every epoch still
/// prints its line.
#[test]
fn epoch_lines_are_printed_without_a_terminal() {
    let dir = scratch("netlog");
    let out = ok(&gfr(&[
        "network",
        "--epochs",
        "2",
        "--train-limit",
        "64",
        "--test-limit",
        "32",
        "--n-nodes",
        "8",
        "--offline",
        "--save-dir",
        s(&dir),
    ]));
    assert!(
        out.contains("epoch   1: train loss") && out.contains("epoch   2: train loss"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn flags_that_do_not_apply_are_said_and_a_missing_dataset_names_the_flag() {
    let dir = scratch("netflags");
    let base = [
        "network",
        "--epochs",
        "1",
        "--train-limit",
        "128",
        "--test-limit",
        "64",
        "--offline",
        "--save-dir",
    ];
    let with = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.push(s(&dir));
        args.extend_from_slice(extra);
        gfr(&args)
    };
    let missing = dir.join("none.pickle");
    let e = fails(&with(&["--neurons", "bio", "--dataset", s(&missing)]));
    assert!(
        e.contains(&format!("--dataset {}", missing.display())) && e.contains("gfr dataset build"),
        "{e}"
    );
    let out = ok(&with(&["--model", "rnn", "--n-nodes", "8", "--diagnose"]));
    assert!(out.contains("--diagnose looks at GFR neurons"), "{out}");
    // neurons of an earlier run: their count is H, whatever --n-nodes says, and gfr says so
    let out = ok(&with(&["--n-nodes", "6"]));
    let json = out
        .lines()
        .find_map(|l| l.strip_prefix("saved "))
        .and_then(|l| l.split(" and ").next())
        .unwrap()
        .to_string();
    let out = ok(&with(&["--neurons", &json, "--n-nodes", "9"]));
    assert!(
        out.contains("note: 6 neurons from") && out.contains("--n-nodes 9 is not used"),
        "{out}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
