//! `gfr preprocess` on NWB 2 files in the pynwb / IPFX layout (no stored spikes): spikes are
//! detected from the voltage; currents, spike counts and rates are compared with an
//! independent computation from the fixture and its true spike times.

mod common;
use common::*;

#[path = "common/nwb2_fixture.rs"]
mod nwb2_fixture;
use nwb2_fixture::*;

use gfr::data::nwb2::{Nwb2Options, StimulusNames, read_recording};
use rust_hdf5::H5File;

/// Spec §2 with the NWB 2 epochs written out directly: the experiment range starts after
/// IPFX's test epoch (the pulse [a, b) padded by a on both sides: last index a + b − 1) and
/// ends at the last recorded sample. Returns (current pA, rate from the true spikes) per bin.
fn expected(s: &Sweep, bin: u32, rate: f64) -> (Vec<f64>, Vec<f64>) {
    let i: Vec<f64> = s
        .current_pa
        .iter()
        .map(|&x| (x as f64 * 1e-12f32 as f64) * 1e12)
        .collect();
    let start = s.test_pulse.0 + s.test_pulse.1;
    let mut end = s.recorded - 1;
    if s.name == "Ramp" {
        let argmax = (0..i.len()).fold(0, |b, k| if i[k] > i[b] { k } else { b });
        if argmax > start {
            end = end.min(argmax);
        }
    }
    let first = (start..end - 1).find(|&k| i[k + 1] != i[k]).unwrap();
    let m = (bin as f64 * 0.001 * rate) as usize;
    let n_bins = (end - first) / m;
    let cur = (0..n_bins)
        .map(|b| i[first + b * m..first + (b + 1) * m].iter().sum::<f64>() / m as f64)
        .collect();
    let rates = (0..n_bins)
        .map(|b| {
            let (lo, hi) = (first + b * m, first + (b + 1) * m);
            s.spikes
                .iter()
                .filter(|&&t| {
                    let k = (t * rate).floor() as usize;
                    k >= lo && k < hi
                })
                .count() as f64
                / bin as f64
        })
        .collect();
    (cur, rates)
}

#[test]
fn preprocess_reads_nwb2_and_detects_spikes() {
    let dir = scratch("nwb2");
    let nwb = dir.join("nwb");
    let fixture = sweeps(RATE, 3.0, 3);
    write_nwb2(&nwb.join("specimen_21/ephys.nwb"), &fixture, RATE, true);
    write_nwb2(&nwb.join("22.nwb"), &fixture, RATE, false);
    let ids = dir.join("ids.csv");
    std::fs::write(&ids, "21,22\n").unwrap();
    let data = dir.join("data");
    let out = ok(&gfr(&[
        "preprocess",
        "--cell-ids",
        s(&ids),
        "--nwb-dir",
        s(&nwb),
        "--data-dir",
        s(&data),
        "--quiet",
    ]));
    assert!(out.contains("2 done"), "{out}");
    // the unknown code is skipped with a message naming it
    assert!(
        out.contains("stimulus code `MYLAB_CHIRP` is in neither"),
        "{out}"
    );

    let mut kept: Vec<&Sweep> = fixture.iter().filter(|s| !s.name.is_empty()).collect();
    kept.sort_by_key(|s| s.number); // sweeps come in sweep-number order
    // spike counts per sweep, from the library reader
    let rec = read_recording(&nwb.join("22.nwb"), &Nwb2Options::default()).unwrap();
    assert_eq!(rec.sweeps.len(), kept.len());
    assert_eq!(rec.notes.len(), 1, "{:?}", rec.notes);
    for ((n, got), want) in rec.sweeps.iter().zip(&kept) {
        assert_eq!(*n, want.number);
        assert_eq!(got.stimulus_name, want.name);
        let (a, b) = (got.spike_times.len() as f64, want.spikes.len() as f64);
        assert!(
            (a - b).abs() <= 0.02 * b,
            "sweep {n} ({}): {a} spikes detected, {b} true",
            want.name
        );
        println!(
            "sweep {n:>3} {:<12}: {a:>3} detected, {b:>3} true",
            want.name
        );
    }
    assert!(kept.iter().map(|s| s.spikes.len()).sum::<usize>() > 50);

    for id in [21, 22] {
        let cell = gfr::data::CellRecording::load(&gfr::data::DataDir::new(&data), id).unwrap();
        assert_eq!(cell.sweeps.len(), kept.len());
        let (mut equal, mut total) = (0, 0);
        for (got, want) in cell.sweeps.iter().zip(&kept) {
            assert_eq!(got.stimulus_name, want.name);
            assert_eq!(got.sampling_rate, RATE);
            for bin in [10, 20, 50, 100] {
                let (cur, rate) = expected(want, bin, RATE);
                let (gc, gr) = got.traces(bin).unwrap();
                assert_eq!(gc.len(), cur.len(), "{} at {bin} ms", want.name);
                for (a, b) in gc.iter().zip(&cur) {
                    assert!(
                        (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                        "{} current at {bin} ms: {a} vs {b}",
                        want.name
                    );
                }
                if bin == 20 {
                    total += gr.len();
                    equal += gr.iter().zip(&rate).filter(|(a, b)| a == b).count();
                }
            }
        }
        let frac = equal as f64 / total as f64;
        println!("cell {id}: {equal} of {total} 20 ms rate bins equal ({frac:.4})");
        assert!(frac >= 0.98, "{frac}");
    }
    // the Ramp ends where its recording ends (NaN), not where its stimulus does
    let ramp = kept.iter().position(|s| s.name == "Ramp").unwrap();
    let cell = gfr::data::CellRecording::load(&gfr::data::DataDir::new(&data), 22).unwrap();
    let (want, _) = expected(kept[ramp], 100, RATE);
    assert_eq!(cell.sweeps[ramp].current[&100].len(), want.len());
    assert!(want.len() < ((3.0 - 0.5) * 10.0) as usize);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn user_mapping_names_other_labs_codes() {
    let dir = scratch("nwb2map");
    let nwb = dir.join("nwb");
    let fixture = sweeps(RATE, 2.0, 5);
    write_nwb2(&nwb.join("31.nwb"), &fixture, RATE, false);
    let path = nwb.join("31.nwb");
    let names = StimulusNames::allen().with("MYLAB_", "Long Square");
    let rec = read_recording(
        &path,
        &Nwb2Options {
            names,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(rec.notes.is_empty(), "{:?}", rec.notes);
    let (_, mine) = rec.sweeps.iter().find(|(n, _)| *n == 8).unwrap();
    assert_eq!(mine.stimulus_name, "Long Square");
    // the same from a CSV file in the NWB folder, through `gfr preprocess`
    std::fs::write(
        nwb.join("stimulus_names.csv"),
        "prefix,name\n# my lab\nMYLAB_CHIRP,Noise 1\n",
    )
    .unwrap();
    std::fs::write(dir.join("ids.csv"), "31\n").unwrap();
    let out = ok(&gfr(&[
        "preprocess",
        "--cell-ids",
        s(&dir.join("ids.csv")),
        "--nwb-dir",
        s(&nwb),
        "--data-dir",
        s(&dir.join("data")),
        "--quiet",
    ]));
    assert!(!out.contains("MYLAB_CHIRP"), "{out}");
    let cell =
        gfr::data::CellRecording::load(&gfr::data::DataDir::new(dir.join("data")), 31).unwrap();
    // sweep 8 comes before sweep 300
    assert_eq!(cell.sweeps[cell.sweeps.len() - 2].stimulus_name, "Noise 1");
    // a JSON mapping
    let j = dir.join("names.json");
    std::fs::write(&j, r#"{"MYLAB": "Ramp"}"#).unwrap();
    let names = StimulusNames::allen().with_file(&j).unwrap();
    assert_eq!(names.name("MYLAB_CHIRP_DA_0").as_deref(), Some("Ramp"));
    assert_eq!(
        names.name("C1LSCOARSE150216[3]").as_deref(),
        Some("Long Square")
    );
    assert_eq!(names.name("X3LP_Rheo").as_deref(), Some("Long Square"));
    assert_eq!(names.name("C2CHIRP180503"), None);
    std::fs::remove_dir_all(dir).unwrap();
}

/// NWB 1 files still go through the NWB 1 reader.
#[test]
fn nwb1_and_nwb2_are_told_apart() {
    use gfr::data::nwb2::{NwbVersion, nwb_version};
    let dir = scratch("nwb2ver");
    let fixture = sweeps(RATE, 1.5, 9);
    write_nwb2(&dir.join("a.nwb"), &fixture[..3], RATE, false);
    let f = H5File::open(dir.join("a.nwb")).unwrap();
    assert_eq!(nwb_version(&f), NwbVersion::Two("2.2.5".into()));
    let g = H5File::create(dir.join("b.nwb")).unwrap();
    g.write_vlen_strings("nwb_version", &["NWB-1.0.5"]).unwrap();
    g.close().unwrap();
    let g = H5File::open(dir.join("b.nwb")).unwrap();
    assert_eq!(nwb_version(&g), NwbVersion::One);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gfr_spikes_writes_the_detected_times_and_a_figure() {
    let dir = scratch("spikes-cli");
    let nwb = dir.join("nwb");
    let fixture = sweeps(RATE, 3.0, 5);
    write_nwb2(&nwb.join("31.nwb"), &fixture, RATE, false);
    let mut kept: Vec<&Sweep> = fixture.iter().filter(|s| !s.name.is_empty()).collect();
    kept.sort_by_key(|s| s.number);
    let spiking = kept
        .iter()
        .find(|s| s.spikes.len() >= 3)
        .expect("a sweep that fires");
    let csv = dir.join("out/spikes.csv");
    let figures = dir.join("figs");
    let out = ok(&gfr(&[
        "spikes",
        "--cell-id",
        "31",
        "--nwb-dir",
        s(&nwb),
        "--out",
        s(&csv),
        "--plot-sweep",
        &spiking.number.to_string(),
        "--figures",
        s(&figures),
    ]));
    // one CSV row per detected spike, in seconds, matching the true times within 1 ms
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("cell_id,sweep_number,stimulus_name,source,spike_time_s")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for want in &kept {
        let got: Vec<f64> = rows
            .iter()
            .filter(|r| r[1] == want.number.to_string())
            .map(|r| {
                assert_eq!((r[0], r[2], r[3]), ("31", want.name, "detected"));
                r[4].parse().unwrap()
            })
            .collect();
        let (_, _, f1) = gfr::data::spikes::match_score(&got, &want.spikes, 1e-3);
        assert!(
            want.spikes.is_empty() && got.is_empty() || f1 >= 0.99,
            "sweep {}: F1 {f1}, {} detected, {} true\n{out}",
            want.number,
            got.len(),
            want.spikes.len()
        );
    }
    let fig = figures.join(format!("cell_31_sweep_{}_spikes.png", spiking.number));
    assert!(std::fs::metadata(&fig).unwrap().len() > 10_000, "{out}");
    // the detector's settings apply to NWB 2 files too: no spike peaks above +100 mV
    ok(&gfr(&[
        "spikes",
        "--cell-id",
        "31",
        "--nwb-dir",
        s(&nwb),
        "--out",
        s(&csv),
        "--min-peak",
        "100",
    ]));
    assert_eq!(std::fs::read_to_string(&csv).unwrap().lines().count(), 1);
    // a sweep that is not there is an error that lists the sweeps
    let err = fails(&gfr(&[
        "spikes",
        "--cell-id",
        "31",
        "--nwb-dir",
        s(&nwb),
        "--out",
        s(&csv),
        "--plot-sweep",
        "9999",
    ]));
    assert!(
        err.contains("--plot-sweep 9999: no such current-clamp sweep"),
        "{err}"
    );
    // …checked before anything is written
    let fresh = dir.join("never.csv");
    fails(&gfr(&[
        "spikes",
        "--cell-id",
        "31",
        "--nwb-dir",
        s(&nwb),
        "--out",
        s(&fresh),
        "--plot-sweep",
        "9999",
    ]));
    assert!(!fresh.exists(), "the CSV was written before the check");
    // a cell without a file names both places looked at
    let err = fails(&gfr(&["spikes", "--cell-id", "32", "--nwb-dir", s(&nwb)]));
    assert!(err.contains("no NWB file for cell 32"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn preprocess_cells_from_rust_reports_every_cell() {
    use gfr::data::preprocess::preprocess_cells;
    let dir = scratch("preprocess-api");
    let nwb = dir.join("nwb");
    write_nwb2(&nwb.join("41.nwb"), &sweeps(RATE, 3.0, 7), RATE, false);
    let data = gfr::data::DataDir::new(dir.join("data"));
    // one cell without a file does not stop the run
    let s = preprocess_cells(&nwb, &data, &[41, 42], &()).unwrap();
    assert_eq!(s.done.len(), 1);
    assert_eq!(s.done[0].0, 41);
    assert_eq!(s.failed.len(), 1);
    assert!(
        s.failed[0].0 == 42 && s.failed[0].1.contains("no recording"),
        "{:?}",
        s.failed
    );
    assert!(gfr::data::CellRecording::load(&data, 41).is_ok());
    // a second run keeps what exists
    let s = preprocess_cells(&nwb, &data, &[41], &()).unwrap();
    assert_eq!((s.done.len(), s.skipped.len(), s.total()), (0, 1, 1));
    std::fs::remove_dir_all(dir).unwrap();
}

/// `gfr simulate --nwb-dir` writes NWB 2 files whose detected spikes are the simulated ones,
/// sweep for sweep, and the pipeline runs from them: preprocess, then fit.
#[test]
fn simulated_nwb2_cells_run_through_the_pipeline() {
    use gfr::data::spikes::match_score;
    use gfr::simulate::{NWB_SAMPLING_RATE, simulate_nwb_cell};
    // the library: every firing type, the true spikes found again from the written file
    let dir = scratch("simnwb");
    for index in 0..4 {
        let cell = simulate_nwb_cell(500 + index as u64, index, 9);
        let path = dir.join(format!("{}.nwb", cell.cell_id));
        gfr::data::nwb2_write::write_nwb2(&path, "t", &cell.sweeps, NWB_SAMPLING_RATE).unwrap();
        let rec = read_recording(&path, &Nwb2Options::default()).unwrap();
        assert!(!rec.spikes_stored);
        assert_eq!(rec.sweeps.len(), cell.sweeps.len(), "{:?}", rec.notes);
        let names: Vec<&str> = rec
            .sweeps
            .iter()
            .map(|(_, s)| s.stimulus_name.as_str())
            .collect();
        for name in ["Long Square", "Ramp", "Noise 1", "Noise 2"] {
            assert!(names.contains(&name), "{names:?}");
        }
        let mut total = 0;
        for ((number, sweep), truth) in rec.sweeps.iter().zip(&cell.spike_times) {
            let (_, _, f1) = match_score(&sweep.spike_times, truth, 1e-3);
            assert!(
                truth.is_empty() && sweep.spike_times.is_empty() || f1 >= 0.99,
                "{}: sweep {number}: F1 {f1} ({} detected, {} true)",
                cell.description,
                sweep.spike_times.len(),
                truth.len()
            );
            total += truth.len();
        }
        assert!(total > 100, "{}: {total} spikes", cell.description);
    }
    // the CLI, from another folder: simulate, preprocess, fit
    let nwb = dir.join("cell_types");
    let data = dir.join("data");
    let out = ok(&gfr(&[
        "simulate",
        "--cells",
        "2",
        "--seed",
        "4",
        "--nwb-dir",
        s(&nwb),
    ]));
    assert!(out.contains("wrote 2 NWB 2 files"), "{out}");
    assert!(nwb.join("900000001.nwb").is_file() && nwb.join("900000002.nwb").is_file());
    assert!(!dir.join("data").exists(), "no processed data is written");
    // a list of other cells is kept unless --overwrite
    let err = exits_with(&gfr(&["simulate", "--cells", "3", "--nwb-dir", s(&nwb)]), 1);
    assert!(
        err.contains("cell_ids.csv exists") && err.contains("--nwb-dir"),
        "{err}"
    );
    // no lists given: preprocess takes NWB_DIR/cell_ids.csv and writes DATA_DIR/cell_ids.csv,
    // which fit reads
    let out = ok(&gfr(&[
        "preprocess",
        "--nwb-dir",
        s(&nwb),
        "--data-dir",
        s(&data),
    ]));
    assert!(
        out.contains("2 done") && out.contains("2 cells from"),
        "{out}"
    );
    let listed = std::fs::read_to_string(data.join("cell_ids.csv")).unwrap();
    assert_eq!(
        listed,
        std::fs::read_to_string(nwb.join("cell_ids.csv")).unwrap()
    );
    let out = ok(&gfr(&[
        "fit",
        "--data-dir",
        s(&data),
        "--config-path",
        "configs/test.json",
        "--save-path",
        s(&dir.join("params")),
        "--quiet",
    ]));
    assert!(out.contains("2 cells: 2 saved"), "{out}");
    // a list of other cells in DATA_DIR is kept, and said so
    let one = dir.join("one.csv");
    std::fs::write(&one, "900000001\n").unwrap();
    let out = ok(&gfr(&[
        "preprocess",
        "--nwb-dir",
        s(&nwb),
        "--cell-ids",
        s(&one),
        "--data-dir",
        s(&data),
    ]));
    assert!(out.contains("lists other cells (2): kept"), "{out}");
    assert_eq!(
        std::fs::read_to_string(data.join("cell_ids.csv")).unwrap(),
        listed
    );
    // --truth gfr has no voltage to write
    let err = exits_with(
        &gfr(&["simulate", "--truth", "gfr", "--nwb-dir", s(&dir.join("x"))]),
        1,
    );
    assert!(
        err.contains("--truth") || err.contains("--nwb-dir"),
        "{err}"
    );
}
