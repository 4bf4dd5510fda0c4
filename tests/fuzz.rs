//! Mutation fuzzing of every file reader: processed pickle, fit result, dataset pickle,
//! published JSON, config, IDX and NWB (the network JSON reader is fuzzed in the `gfr`
//! binary's tests). Each reader gets `GFR_FUZZ_ITERS` (default 1500) mutated files and must
//! answer each with a value or an error: no panic, no hang, bounded memory.
//!
//! Long runs: `GFR_FUZZ_ITERS=200000 GFR_FUZZ_SEED=7 cargo test --release --test fuzz`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use gfr::data::{CellRecording, ProcessedSweep};
use gfr::fuzz::{DEFAULT_ITERATIONS, fuzz, iterations, peak_memory_mb};

fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gfr-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs `read` on mutations written to a scratch file named `file`.
fn fuzz_file(name: &str, file: &str, seeds: Vec<Vec<u8>>, read: fn(&std::path::Path)) {
    let path = scratch_file(file);
    let n = iterations(DEFAULT_ITERATIONS);
    let p = path.clone();
    let done = fuzz(name, seeds, n, move |bytes| {
        std::fs::write(&p, bytes).unwrap();
        read(&p);
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(done, n);
    let _ = std::fs::remove_file(path);
    if let Some(mb) = peak_memory_mb() {
        assert!(mb < 3000.0, "fuzz {name}: peak memory {mb:.0} MB");
    }
}

fn small_cell() -> CellRecording {
    let sweep = |name: &str, n: usize| ProcessedSweep {
        stimulus_name: name.into(),
        sampling_rate: 20_000.0,
        current: BTreeMap::from([
            (20, (0..n).map(|i| 10.0 * i as f64).collect()),
            (100, vec![50.0; n / 5]),
        ]),
        firing_rate: BTreeMap::from([
            (20, (0..n).map(|i| 0.01 * (i % 3) as f64).collect()),
            (100, vec![0.02; n / 5]),
        ]),
    };
    CellRecording {
        cell_id: 1,
        sweeps: vec![
            sweep("Long Square", 10),
            sweep("Noise 1", 15),
            sweep("Noise 2", 15),
        ],
        max_firing_rate: 0.2,
    }
}

fn fit_result() -> gfr::fit::FitResult {
    let act = gfr::neuron::ActivationParams {
        max_current: 250.0,
        max_firing_rate: 0.2,
        poly_coeff: vec![0.05, 1.3],
        threshold: 60.0,
        bin_size: 20,
    };
    gfr::fit::FitResult {
        params: gfr::neuron::NeuronParams::initial(20, act),
        evr1: 0.7,
        evr2: 0.6,
        train_losses: vec![0.5, 0.4],
        test_losses: vec![0.6, 0.5],
        bin_size: 20,
        train_loss_padded: Some(0.3),
        meta: Default::default(),
    }
}

fn dataset() -> gfr::dataset::Dataset {
    let mut ds = gfr::dataset::Dataset::default();
    for id in [5, 6] {
        ds.insert(gfr::dataset::DatasetRecord::from_fit(
            id,
            &fit_result(),
            "Sst-IRES-Cre".into(),
        ));
    }
    ds
}

#[test]
fn fuzz_processed_pickle() {
    let p = scratch_file("seed-processed.pickle");
    gfr::data::processed::write_processed(&p, &small_cell().sweeps).unwrap();
    let seed = std::fs::read(&p).unwrap();
    fuzz_file("processed", "processed.pickle", vec![seed], |p| {
        let _ = gfr::data::processed::read_processed(p);
    });
}

#[test]
fn fuzz_fit_result() {
    let p = scratch_file("seed-result.pickle");
    fit_result().save(&p).unwrap();
    let seed = std::fs::read(&p).unwrap();
    fuzz_file("fit-result", "result.pickle", vec![seed], |p| {
        let _ = gfr::fit::FitResult::load(p);
    });
}

#[test]
fn fuzz_dataset_pickle() {
    let p = scratch_file("seed-dataset.pickle");
    dataset().save(&p).unwrap();
    let seed = std::fs::read(&p).unwrap();
    fuzz_file("dataset", "dataset.pickle", vec![seed], |p| {
        if let Ok(ds) = gfr::dataset::Dataset::load(p) {
            // what a loaded dataset is used for must not panic either
            let _ = ds.summary();
            for (&(b, a), recs) in &ds.pairs {
                for r in recs {
                    let _ = ds.record(r.cell_id, b, a);
                    let _ = r.params.predict(&[100.0, 200.0]);
                }
            }
        }
    });
}

#[test]
fn fuzz_published_json() {
    let seed = serde_json::to_vec(&dataset().to_json()).unwrap();
    // as pandas writes it, with NaN
    let pandas = String::from_utf8(seed.clone())
        .unwrap()
        .replacen("\"Sst-IRES-Cre\"", "NaN", 1)
        .into_bytes();
    fuzz_file("json", "dataset.json", vec![seed, pandas], |p| {
        let _ = gfr::dataset::Dataset::load_json(p);
    });
}

#[test]
fn fuzz_config() {
    let seed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/default.json")).unwrap();
    fuzz_file("config", "config.json", vec![seed], |p| {
        let _ = gfr::fit::FitConfig::load(p);
    });
}

#[test]
fn fuzz_idx() {
    use gfr::network::mnist::{parse_images, parse_labels};
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28];
    images.extend((0..3 * 784).map(|i| (i % 251) as u8));
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 3];
    labels.extend([7, 2, 1]);
    let n = iterations(DEFAULT_ITERATIONS);
    fuzz("idx", vec![images, labels], n, |b| {
        let _ = parse_images(b, "images");
        let _ = parse_labels(b, "labels");
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn fuzz_nwb() {
    use rust_hdf5::{H5File, LibverBound};
    let p = scratch_file("seed.nwb");
    {
        let f = H5File::options()
            .libver(LibverBound::Earliest)
            .create(&p)
            .unwrap();
        let root = f.root_group();
        root.create_group("general")
            .unwrap()
            .write_vlen_strings("generated_by", &["version", "1.1"])
            .unwrap();
        let pres = root
            .create_group("stimulus")
            .unwrap()
            .create_group("presentation")
            .unwrap();
        let epochs = root.create_group("epochs").unwrap();
        let spikes = root
            .create_group("analysis")
            .unwrap()
            .create_group("spike_times")
            .unwrap();
        for (n, name) in [(1, "Long Square"), (2, "Noise 1")] {
            let sweep = format!("Sweep_{n}");
            let ts = pres.create_group(&sweep).unwrap();
            let data: Vec<f32> = (0..2000)
                .map(|i| if i > 500 { 1e-10 } else { 0.0 })
                .collect();
            let d = ts
                .new_dataset::<f32>()
                .shape([data.len()])
                .create("data")
                .unwrap();
            d.write_raw(&data).unwrap();
            d.new_attr::<f32>()
                .shape(())
                .create("conversion")
                .unwrap()
                .write_numeric(&1.0f32)
                .unwrap();
            let st = ts
                .new_dataset::<f64>()
                .scalar()
                .create("starting_time")
                .unwrap();
            st.write_raw(&[0.0f64]).unwrap();
            st.new_attr::<f32>()
                .shape(())
                .create("rate")
                .unwrap()
                .write_numeric(&20_000.0f32)
                .unwrap();
            ts.write_vlen_strings("aibs_stimulus_name", &[name])
                .unwrap();
            let es = epochs
                .create_group(&sweep)
                .unwrap()
                .create_group("stimulus")
                .unwrap();
            es.create_soft_link("timeseries", &format!("/stimulus/presentation/{sweep}"))
                .unwrap();
            spikes
                .new_dataset::<f64>()
                .shape([3])
                .create(&sweep)
                .unwrap()
                .write_raw(&[0.03, 0.05, 0.08])
                .unwrap();
        }
        f.close().unwrap();
    }
    assert_eq!(gfr::data::nwb::read_nwb(&p).unwrap().len(), 2);
    let seed = std::fs::read(&p).unwrap();
    fuzz_file("nwb", "fuzz.nwb", vec![seed], |p| {
        if let Ok(sweeps) = gfr::data::nwb::read_nwb(p) {
            for s in &sweeps {
                let _ = gfr::data::bin_sweep(s, &gfr::data::PROCESSED_BIN_SIZES);
            }
            let _ = gfr::data::max_firing_rate(&sweeps);
        }
    });
}
