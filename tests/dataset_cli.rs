//! `gfr dataset …` and `gfr predict` through the command line.

mod common;
use common::*;

use gfr::dataset::Dataset;
use gfr::fit::FitResult;
use gfr::neuron::{ActivationParams, NeuronParams};

fn result(evr1: f64, last_train: f64, bin: u32, act_bin: u32) -> FitResult {
    let act = ActivationParams {
        max_current: 250.0,
        max_firing_rate: 0.2,
        poly_coeff: vec![0.05, 1.3],
        threshold: 60.0,
        bin_size: act_bin,
    };
    let mut params = NeuronParams::initial(bin, act);
    params.alpha[1] = 1.5;
    params.beta[3] = -0.02;
    FitResult {
        params,
        evr1,
        evr2: evr1 - 0.05,
        train_losses: vec![0.9, last_train],
        test_losses: vec![0.8, 0.5],
        bin_size: bin,
        train_loss_padded: Some(last_train),
        meta: Default::default(),
    }
}

/// 565871768 is an Oxtr-T2A-Cre mouse cell and 525011903 a human cell in data/metadata.csv.
fn params_dirs(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = dir.join("shard0");
    let b = dir.join("shard1");
    result(0.8, 0.3, 20, 20)
        .save(&a.join("565871768.pickle"))
        .unwrap();
    result(0.4, 0.3, 20, 20).save(&a.join("1.pickle")).unwrap(); // val EVR too low
    result(0.9, 0.5, 20, 20).save(&b.join("2.pickle")).unwrap(); // train loss too high
    result(0.7, 0.2, 50, 100)
        .save(&b.join("525011903.pickle"))
        .unwrap();
    std::fs::write(b.join("fit_summary.json"), "[]").unwrap();
    (a, b)
}

#[test]
fn build_applies_the_criteria_and_python_reads_tuple_keys() {
    let dir = scratch("dsbuild");
    let (a, b) = params_dirs(&dir);
    let out = dir.join("ds.pickle");
    let json = dir.join("ds.json");
    let text = ok(&gfr(&[
        "dataset",
        "build",
        "--params-dir",
        s(&a),
        "--params-dir",
        s(&b),
        "--out",
        s(&out),
        "--json",
        s(&json),
    ]));
    assert!(text.contains("2 results included, 2 excluded"), "{text}");
    let ds = Dataset::load(&out).unwrap();
    assert_eq!(ds.n_records(), 2);
    let r = ds.record(565871768, 20, 20).unwrap();
    assert_eq!(r.cre_line, "Oxtr-T2A-Cre");
    assert_eq!(r.train_loss, 0.3);
    assert_eq!(ds.record(525011903, 50, 100).unwrap().cre_line, "");
    assert!(ds.record(1, 20, 20).is_err() && ds.record(2, 20, 20).is_err());

    if let Some(py) = python() {
        let script = format!(
            "import pickle\nd = pickle.load(open('{}', 'rb'))\nassert set(d) == {{(20, 20), (50, 100)}}, d.keys()\n\
             recs = d[(20, 20)]\nassert len(recs) == 1\nr = recs[0]\n\
             assert set(r) == {{'cell_id','cre-line','bin_size','actv_bin_size','val_evr','test_evr','train_loss','test_loss','train_loss_padded','params'}}\n\
             assert r['cell_id'] == 565871768 and r['cre-line'] == 'Oxtr-T2A-Cre' and r['val_evr'] > 0.5 and r['train_loss'] < 0.45\n\
             assert r['params']['g']['poly_coeff'] == [[0.05, 1.3]]\n\
             try:\n    import pandas\n    assert len(pandas.DataFrame(d[(50, 100)])) == 1\nexcept ImportError:\n    pass\n",
            s(&out)
        );
        run_python(py, &script);
    }

    // JSON round trip: import gives back the same dataset; summary and show work
    let back = dir.join("back.pickle");
    ok(&gfr(&["dataset", "import", s(&json), "--out", s(&back)]));
    assert_eq!(Dataset::load(&back).unwrap(), ds);
    let text = ok(&gfr(&["dataset", "summary", "--dataset", s(&back)]));
    assert!(
        text.contains("|      20       |            20            | 1"),
        "{text}"
    );
    let text = ok(&gfr(&[
        "dataset",
        "show",
        "565871768",
        "--bin-size",
        "20",
        "--activation-bin-size",
        "20",
        "--dataset",
        s(&back),
    ]));
    assert!(
        text.contains("Oxtr-T2A-Cre") && text.contains("val EVR 0.8000"),
        "{text}"
    );
    let e = fails(&gfr(&["dataset", "show", "99", "--dataset", s(&back)]));
    assert!(e.contains("cell 99"), "{e}");
    let e = fails(&gfr(&[
        "dataset",
        "show",
        "565871768",
        "--bin-size",
        "10",
        "--dataset",
        s(&back),
    ]));
    assert!(e.contains("(bin_size 10, activation_bin_size 20)"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn malformed_json_and_pickles_name_the_file_and_record() {
    let dir = scratch("dsbad");
    let j = dir.join("bad.json");
    std::fs::write(&j, r#"[{"cell_id": 5, "cre-line": null, "bin_size": 20, "actv_bin_size": 20, "val_evr": 0.7, "test_evr": 0.6,
        "train_loss": 0.3, "test_loss": 0.4, "params": {"a": [[1.0]], "b": [[0.0]], "ds": [1.0], "bin_size": 20}}]"#).unwrap();
    let e = fails(&gfr(&[
        "dataset",
        "import",
        s(&j),
        "--out",
        s(&dir.join("x.pickle")),
    ]));
    assert!(
        e.contains("bad.json")
            && e.contains("record 0")
            && e.contains("cell_id 5")
            && e.contains("`g`"),
        "{e}"
    );
    std::fs::write(&j, "[{").unwrap();
    let e = fails(&gfr(&["dataset", "import", s(&j)]));
    assert!(
        e.contains("bad.json") && e.contains("not valid JSON"),
        "{e}"
    );
    assert!(!dir.join("x.pickle").exists());

    let p = dir.join("bad.pickle");
    gfr::data::pickle::write_pickle(
        &p,
        &gfr::data::pickle::dict([("20", gfr::data::pickle::PyValue::List(vec![]))]),
    )
    .unwrap();
    let e = fails(&gfr(&["dataset", "summary", "--dataset", s(&p)]));
    assert!(e.contains("bad.pickle") && e.contains("tuple"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn predict_matches_an_independent_implementation() {
    let dir = scratch("predict");
    let (a, _) = params_dirs(&dir);
    let ds = dir.join("ds.pickle");
    ok(&gfr(&[
        "dataset",
        "build",
        "--params-dir",
        s(&a),
        "--out",
        s(&ds),
    ]));
    let current: Vec<f64> = (0..200)
        .map(|t| 80.0 + 60.0 * ((t as f64) * 0.13).sin() + if t % 17 == 0 { 90.0 } else { 0.0 })
        .collect();
    let cur = dir.join("current.csv");
    std::fs::write(
        &cur,
        format!(
            "current_pA\n{}\n",
            current
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    )
    .unwrap();
    let out = dir.join("rates.csv");
    ok(&gfr(&[
        "predict",
        "--cell-id",
        "565871768",
        "--bin-size",
        "20",
        "--activation-bin-size",
        "20",
        "--dataset",
        s(&ds),
        "--current",
        s(&cur),
        "--out",
        s(&out),
    ]));
    let text = std::fs::read_to_string(&out).unwrap();
    let rates: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(rates.len(), 200);
    // the scan's own forward pass is a separate implementation of spec §1
    let p = Dataset::load(&ds)
        .unwrap()
        .record(565871768, 20, 20)
        .unwrap()
        .params
        .clone();
    let scan = gfr::scan::predict(&p, &current);
    for (a, b) in rates.iter().zip(&scan) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    assert!(rates.iter().any(|&r| r > 0.01), "the neuron fires");
    // and a NumPy-free Python rendering of spec §1
    if let Some(py) = python() {
        let script = format!(
            "import math, pickle\nd = pickle.load(open('{ds}', 'rb'))\np = [r for r in d[(20, 20)] if r['cell_id'] == 565871768][0]['params']\n\
             a, b, lam, g = p['a'][0], p['b'][0], p['ds'], p['g']\nn = len(lam)\nh = [0.0]*n; f = 0.0; out = []\n\
             for line in open('{cur}').read().split()[1:]:\n    I = float(line)\n    h = [(1-lam[i])*h[i] + a[i]*I + 1000*b[i]*f for i in range(n)]\n\
             \x20   x = (sum(h)/n - g['b'][0]) / g['max_current'][0]\n    z = sum(c*c*x**k for k, c in enumerate(g['poly_coeff'][0]))\n\
             \x20   f = g['max_firing_rate'][0] * max(0.0, math.tanh(z))\n    out.append(f)\n\
             got = [float(l.split(',')[2]) for l in open('{out}').read().split()[1:]]\n\
             assert len(got) == len(out)\nassert max(abs(x - y) for x, y in zip(got, out)) < 1e-4, max(abs(x - y) for x, y in zip(got, out))\n",
            ds = s(&ds),
            cur = s(&cur),
            out = s(&out)
        );
        run_python(py, &script);
    }
    // --params takes a per-cell result directly; a bad current names the file and value
    let text = ok(&gfr(&[
        "predict",
        "--params",
        s(&a.join("565871768.pickle")),
        "--current",
        s(&cur),
    ]));
    assert_eq!(text.lines().count(), 201);
    std::fs::write(&cur, "1.0\nabc\n").unwrap();
    let e = fails(&gfr(&[
        "predict",
        "--params",
        s(&a.join("565871768.pickle")),
        "--current",
        s(&cur),
    ]));
    assert!(e.contains("current.csv") && e.contains("value 2"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn load_gfr_model_gives_a_layer_that_runs_the_neuron() {
    use burn::tensor::{Tensor, TensorData};
    let mut ds = Dataset::default();
    let r =
        gfr::dataset::DatasetRecord::from_fit(42, &result(0.8, 0.3, 20, 20), "Sst-IRES-Cre".into());
    ds.insert(r.clone());
    let device = gfr::device::cpu();
    let layer = gfr::dataset::load_gfr_model(&ds, 42, 20, 20, &device).unwrap();
    let current: Vec<f64> = (0..50).map(|t| 40.0 + 3.0 * t as f64).collect();
    let input = Tensor::<3>::from_data(
        TensorData::new(
            current.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            [1, 50, 1],
        ),
        &device,
    );
    let rates: Vec<f32> = layer
        .sequence(input)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let want = r.params.predict(&current);
    for (a, b) in rates.iter().zip(&want) {
        assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
    }
    let e = gfr::dataset::load_gfr_model(&ds, 7, 20, 20, &device)
        .unwrap_err()
        .to_string();
    assert!(e.contains("cell 7"), "{e}");
}

/// The criteria use the loss the published filter saw (averaged over the padded length), not
/// gfr's per-valid-bin loss; results saved without it fall back to the latter.
#[test]
fn criteria_use_the_padded_length_train_loss() {
    let dir = scratch("dspadded");
    let p = dir.join("params");
    let with = |valid: f64, padded: Option<f64>| FitResult {
        train_loss_padded: padded,
        ..result(0.8, valid, 20, 20)
    };
    with(0.6, Some(0.3)).save(&p.join("11.pickle")).unwrap(); // in: published loss 0.3
    with(0.3, Some(0.6)).save(&p.join("12.pickle")).unwrap(); // out: published loss 0.6
    with(0.3, None).save(&p.join("13.pickle")).unwrap(); // older result: in by its own loss
    with(0.6, None).save(&p.join("14.pickle")).unwrap(); // older result: out
    let out = dir.join("ds.pickle");
    let text = ok(&gfr(&[
        "dataset",
        "build",
        "--params-dir",
        s(&p),
        "--out",
        s(&out),
    ]));
    assert!(text.contains("2 results included, 2 excluded"), "{text}");
    let ds = Dataset::load(&out).unwrap();
    let ids: Vec<u64> = ds.pairs[&(20, 20)].iter().map(|r| r.cell_id).collect();
    assert_eq!(ids, vec![11, 13]);
    let r = ds.record(11, 20, 20).unwrap();
    // each field keeps its meaning
    assert_eq!((r.train_loss, r.train_loss_padded), (0.6, Some(0.3)));
    std::fs::remove_dir_all(dir).unwrap();
}

/// pandas writes a human cell's empty cre line (and other missing numbers) as a bare NaN.
#[test]
fn import_reads_json_as_pandas_writes_it() {
    let dir = scratch("dspandas");
    let j = dir.join("gfr_dataset.json");
    let params = r#"{"a": [[8.0, 1.5, 0, 0, 0, 0, 0, 0]], "b": [[0, 0, 0, -0.02, 0, 0, 0, 0]],
        "ds": [1.0, 0.6321205588285577, 0.3296799539643607, 0.18126924692201818, 0.09516258196404048, 0.03921056084767682, 0.019801326693244747, 0.009950166250831893],
        "bin_size": 20, "g": {"max_current": [250.0], "max_firing_rate": [0.2], "poly_coeff": [[0.05, 1.3]], "b": [60.0], "bin_size": 20}}"#;
    std::fs::write(
        &j,
        format!(
            r#"[{{"cell_id":525011903,"cre-line":NaN,"bin_size":20,"actv_bin_size":20,"val_evr":0.71,"test_evr":0.66,"train_loss":0.31,"test_loss":NaN,"params":{params}}},
               {{"cell_id":565871768,"cre-line":"Oxtr-T2A-Cre","bin_size":20,"actv_bin_size":20,"val_evr":0.8,"test_evr":-Infinity,"train_loss":0.2,"test_loss":0.4,"params":{params}}},
               {{"cell_id":7,"cre-line":"a \"NaN\" line","bin_size":20,"actv_bin_size":20,"val_evr":0.8,"test_evr":0.5,"train_loss":0.2,"test_loss":0.4,"params":{params}}}]"#
        ),
    )
    .unwrap();
    let out = dir.join("ds.pickle");
    ok(&gfr(&["dataset", "import", s(&j), "--out", s(&out)]));
    let ds = Dataset::load(&out).unwrap();
    let human = ds.record(525011903, 20, 20).unwrap();
    assert_eq!(human.cre_line, "");
    assert!(human.test_loss.is_nan());
    // the published train loss is the padded-length one
    assert_eq!(human.train_loss_padded, Some(0.31));
    assert!(ds.record(565871768, 20, 20).unwrap().test_evr.is_nan());
    // NaN inside a string stays text
    assert_eq!(ds.record(7, 20, 20).unwrap().cre_line, "a \"NaN\" line");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn build_checks_its_output_folders_first() {
    let dir = scratch("dsbuildout");
    let (a, _) = params_dirs(&dir);
    let file = dir.join("afile");
    std::fs::write(&file, "not a folder").unwrap();
    for (flag, bad) in [("--out", "--json"), ("--json", "--out")] {
        let target = file.join("ds.out");
        let good = dir.join(format!("good{flag}"));
        let text = fails(&gfr(&[
            "dataset",
            "build",
            "--params-dir",
            s(&a),
            flag,
            s(&target),
            bad,
            s(&good),
        ]));
        assert!(
            text.contains(&format!("{flag} {} cannot be written", target.display())),
            "{text}"
        );
        // checked before any work: no fit summaries read, nothing written
        assert!(!text.contains("results included"), "{text}");
        assert!(!good.exists());
    }
}

#[test]
fn a_params_dir_named_twice_is_read_once() {
    let dir = scratch("dstwice");
    let (_, b) = params_dirs(&dir);
    let out = dir.join("ds.pickle");
    let again = format!("{}/.", s(&b));
    let text = ok(&gfr(&[
        "dataset",
        "build",
        "--params-dir",
        s(&b),
        "--params-dir",
        &again,
        "--out",
        s(&out),
    ]));
    assert!(text.contains("given twice: read once"), "{text}");
    assert!(!text.contains("duplicate results dropped"), "{text}");
    assert!(text.contains("1 results included, 1 excluded"), "{text}");
    assert_eq!(Dataset::load(&out).unwrap().n_records(), 1);
}

/// A pickle given to `dataset import` is named as such, and so is a binary file.
#[test]
fn import_of_a_pickle_or_binary_file_says_it_is_not_json() {
    let dir = scratch("importpickle");
    let pickle = dir.join("ds.pickle");
    std::fs::write(&pickle, b"\x80\x04N.").unwrap();
    let e = fails(&gfr(&[
        "dataset",
        "import",
        s(&pickle),
        "--out",
        s(&dir.join("o.pickle")),
    ]));
    assert!(e.contains("is a pickle, not a JSON file"), "{e}");
    let binary = dir.join("ds.bin");
    std::fs::write(&binary, [0xffu8, 0xfe, 0x00, 0x9f]).unwrap();
    let e = fails(&gfr(&[
        "dataset",
        "import",
        s(&binary),
        "--out",
        s(&dir.join("o.pickle")),
    ]));
    assert!(e.contains("is not a JSON file"), "{e}");
    assert!(!dir.join("o.pickle").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// A sharded fit with a shard missing: `dataset build` names the missing shards and writes
/// nothing; `--allow-missing` builds from what is there and says what is missing.
#[test]
fn build_refuses_a_sharded_fit_with_missing_shards() {
    let dir = scratch("shards");
    let data = dir.join("data");
    let params = dir.join("params");
    ok(&gfr(&["simulate", "--cells", "3", "--data-dir", s(&data)]));
    ok(&fit(
        "configs/test.json",
        &data,
        &params,
        &["--shard", "1/3"],
    ));
    let out = dir.join("ds.pickle");
    let build = |extra: &[&str]| {
        let mut args = vec![
            "dataset",
            "build",
            "--params-dir",
            s(&params),
            "--out",
            s(&out),
        ];
        args.extend_from_slice(extra);
        args.extend(["--min-val-evr", "-1e9", "--max-train-loss", "1e9"]);
        gfr(&args)
    };
    let e = exits_with(&build(&[]), 1);
    assert!(
        e.contains("shard 0 of 3") && e.contains("shard 2 of 3") && !e.contains("shard 1 of 3"),
        "{e}"
    );
    assert!(e.contains("--allow-missing"), "{e}");
    assert!(!out.exists());
    let text = ok(&build(&["--allow-missing"]));
    assert!(text.contains("built without the missing shards"), "{text}");
    assert_eq!(Dataset::load(&out).unwrap().n_records(), 1);
    // with every shard there it builds as before
    ok(&fit(
        "configs/test.json",
        &data,
        &params,
        &["--shard", "0/3"],
    ));
    ok(&fit(
        "configs/test.json",
        &data,
        &params,
        &["--shard", "2/3"],
    ));
    ok(&build(&[]));
    assert_eq!(Dataset::load(&out).unwrap().n_records(), 3);
    std::fs::remove_dir_all(dir).unwrap();
}
