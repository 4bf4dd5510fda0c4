//! `gfr preprocess` on NWB files in the Allen layout, written here with chunked + gzip
//! datasets, soft and hard links, scalar and string datasets; binning is compared with an
//! independent computation.

mod common;
use common::*;

use rust_hdf5::{H5File, LibverBound};

const RATE: f64 = 25_000.0;

struct FixtureSweep {
    name: &'static str,
    /// Stimulus in A, stored as f32 (scaled by `conversion` on disk).
    stimulus: Vec<f32>,
    response: Vec<f32>,
    spikes: Vec<f64>,
    /// Experiment (idx_start, count); `None`: no Experiment group.
    experiment: Option<(i32, i32)>,
    conversion: f32,
    old_spike_group: bool,
}

fn secs(s: f64) -> usize {
    (s * RATE) as usize
}

fn sweeps() -> Vec<FixtureSweep> {
    let n = secs(2.0);
    let mut test = vec![0.0f32; secs(0.2)];
    test[secs(0.01)..secs(0.02)]
        .iter_mut()
        .for_each(|x| *x = -1e-11);
    let mut square = vec![0.0f32; n];
    square[secs(0.01)..secs(0.02)]
        .iter_mut()
        .for_each(|x| *x = -1e-11);
    square[secs(0.3)..secs(1.3)]
        .iter_mut()
        .for_each(|x| *x = 1.5e-10);
    let mut ramp = vec![0.0f32; n];
    for k in secs(0.3)..secs(1.5) {
        ramp[k] = (k - secs(0.3)) as f32 * 2e-15;
    }
    let mut ramp_v = vec![-0.07f32; n];
    ramp_v[secs(1.2)..].iter_mut().for_each(|v| *v = 0.0); // the recording ends early
    let mut short = vec![0.0f32; secs(1.0)];
    short[secs(0.5)..secs(0.503)]
        .iter_mut()
        .for_each(|x| *x = 8e-10);
    let mut noise = vec![0.0f32; n];
    let mut x = 0.3f64;
    for s in noise[secs(0.25)..secs(1.75)].iter_mut() {
        x = (x * 3.9 * (1.0 - x)).clamp(0.01, 0.99); // deterministic chaos as "noise"
        *s = (1e-10 * (1.0 + x)) as f32;
    }
    vec![
        FixtureSweep {
            name: "Test",
            stimulus: test,
            response: vec![-0.07; secs(0.2)],
            spikes: vec![],
            experiment: None,
            conversion: 1.0,
            old_spike_group: false,
        },
        FixtureSweep {
            name: "Long Square",
            // stored in pA on disk with conversion 1e-12, as some files do
            stimulus: square.iter().map(|x| x * 1e12).collect(),
            response: vec![-0.07; n],
            spikes: vec![0.3051, 0.3302, 0.3449, 0.61, 1.0, 1.29996],
            experiment: Some((secs(0.05) as i32, (n - secs(0.05)) as i32)),
            conversion: 1e-12,
            old_spike_group: false,
        },
        FixtureSweep {
            name: "Ramp",
            stimulus: ramp,
            response: ramp_v,
            spikes: vec![0.9, 1.0, 1.05, 1.19],
            experiment: Some((secs(0.05) as i32, (n - secs(0.05)) as i32)),
            conversion: 1.0,
            old_spike_group: false,
        },
        FixtureSweep {
            name: "Short Square",
            stimulus: short,
            response: vec![-0.07; secs(1.0)],
            spikes: vec![0.5021],
            experiment: Some((1000, (secs(1.0) - 1000) as i32)),
            conversion: 1.0,
            old_spike_group: false,
        },
        FixtureSweep {
            name: "Noise 1",
            stimulus: noise,
            response: vec![-0.07; n],
            spikes: vec![0.4, 0.41, 0.8, 1.2, 1.6],
            experiment: Some((secs(0.05) as i32, (n - secs(0.05)) as i32)),
            conversion: 1.0,
            old_spike_group: true,
        },
    ]
}

/// A file of the current Allen pipeline (version 1.1 and later: `conversion` applies).
fn write_fixture(path: &std::path::Path, sweeps: &[FixtureSweep]) {
    write_versioned_fixture(
        path,
        sweeps,
        Some(&["institution", "Allen Institute", "version", "1.1"]),
    )
}

/// `generated_by`: the key/value list of `general/generated_by`; `None` leaves it out.
fn write_versioned_fixture(
    path: &std::path::Path,
    sweeps: &[FixtureSweep],
    generated_by: Option<&[&str]>,
) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = H5File::options()
        .libver(LibverBound::Earliest)
        .create(path)
        .unwrap();
    f.write_vlen_strings("session_description", &["gfr test fixture"])
        .unwrap();
    let root = f.root_group();
    if let Some(g) = generated_by {
        root.create_group("general")
            .unwrap()
            .write_vlen_strings("generated_by", g)
            .unwrap();
    }
    let pres = root
        .create_group("stimulus")
        .unwrap()
        .create_group("presentation")
        .unwrap();
    let acq = root
        .create_group("acquisition")
        .unwrap()
        .create_group("timeseries")
        .unwrap();
    let epochs = root.create_group("epochs").unwrap();
    let analysis = root.create_group("analysis").unwrap();
    let (new_spikes, old_spikes) = (
        analysis.create_group("spike_times").unwrap(),
        analysis.create_group("aibs_spike_times").unwrap(),
    );
    for (i, s) in sweeps.iter().enumerate() {
        let n = i + 1;
        let name = format!("Sweep_{n}");
        let series = |g: &rust_hdf5::H5Group, data: &[f32], conversion: f32| {
            let ts = g.create_group(&name).unwrap();
            let d = ts
                .new_dataset::<f32>()
                .shape([data.len()])
                .chunk(&[4096])
                .deflate(4)
                .create("data")
                .unwrap();
            d.write_raw(data).unwrap();
            d.new_attr::<f32>()
                .shape(())
                .create("conversion")
                .unwrap()
                .write_numeric(&conversion)
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
                .write_numeric(&(RATE as f32))
                .unwrap();
            ts
        };
        let stim = series(&pres, &s.stimulus, s.conversion);
        stim.write_vlen_strings("aibs_stimulus_name", &[s.name])
            .unwrap();
        series(&acq, &s.response, 1.0);
        let ep = epochs.create_group(&name).unwrap();
        let es = ep.create_group("stimulus").unwrap();
        es.create_soft_link("timeseries", &format!("/stimulus/presentation/{name}"))
            .unwrap();
        es.new_dataset::<i32>()
            .scalar()
            .create("idx_start")
            .unwrap()
            .write_raw(&[0i32])
            .unwrap();
        es.new_dataset::<i32>()
            .scalar()
            .create("count")
            .unwrap()
            .write_raw(&[s.stimulus.len() as i32])
            .unwrap();
        let er = ep.create_group("response").unwrap();
        er.link("timeseries", &format!("/acquisition/timeseries/{name}"))
            .unwrap(); // hard link
        if let Some((start, count)) = s.experiment {
            let ex = epochs
                .create_group(&format!("Experiment_{n}"))
                .unwrap()
                .create_group("stimulus")
                .unwrap();
            ex.new_dataset::<i32>()
                .scalar()
                .create("idx_start")
                .unwrap()
                .write_raw(&[start])
                .unwrap();
            ex.new_dataset::<i32>()
                .scalar()
                .create("count")
                .unwrap()
                .write_raw(&[count])
                .unwrap();
        }
        let g = if s.old_spike_group {
            &old_spikes
        } else {
            &new_spikes
        };
        if s.spikes.is_empty() {
            continue; // sweeps without spikes have no spike-time dataset
        }
        g.new_dataset::<f64>()
            .shape([s.spikes.len()])
            .create(&name)
            .unwrap()
            .write_raw(&s.spikes)
            .unwrap();
    }
    f.close().unwrap();
}

/// Spec §2 written out directly, for comparison (stimulus scaled by `conversion`).
fn expected(s: &FixtureSweep, bin: u32) -> (Vec<f64>, Vec<f64>) {
    expected_scaled(s, bin, s.conversion as f64)
}

fn expected_scaled(s: &FixtureSweep, bin: u32, conversion: f64) -> (Vec<f64>, Vec<f64>) {
    let i: Vec<f64> = s
        .stimulus
        .iter()
        .map(|&x| x as f64 * conversion * 1e12)
        .collect();
    let len = i.len();
    let (start, mut end) = match s.experiment {
        Some((a, c)) => (a as usize, (a + c - 1) as usize),
        None => (0, len - 1),
    };
    if s.name == "Ramp" {
        let last_v = s.response.iter().rposition(|&v| v != 0.0).unwrap();
        let mut argmax = 0;
        for k in 0..len {
            if i[k] > i[argmax] {
                argmax = k;
            }
        }
        end = end.min(last_v);
        if argmax > start {
            end = end.min(argmax);
        }
    }
    let seg_start = if s.name == "Test" {
        start
    } else {
        (start..end - 1).find(|&k| i[k + 1] != i[k]).unwrap()
    };
    let m = (bin as f64 * 0.001 * RATE) as usize;
    let n_bins = (end - seg_start) / m;
    let spikes: Vec<usize> = s
        .spikes
        .iter()
        .map(|t| (t * RATE).floor() as usize)
        .collect();
    let cur = (0..n_bins)
        .map(|b| {
            i[seg_start + b * m..seg_start + (b + 1) * m]
                .iter()
                .sum::<f64>()
                / m as f64
        })
        .collect();
    let rate = (0..n_bins)
        .map(|b| {
            let (lo, hi) = (seg_start + b * m, seg_start + (b + 1) * m);
            let mut ks: Vec<usize> = spikes
                .iter()
                .copied()
                .filter(|&k| k >= lo && k < hi)
                .collect();
            ks.dedup();
            ks.len() as f64 / bin as f64
        })
        .collect();
    (cur, rate)
}

#[test]
fn preprocess_bins_nwb_sweeps_like_the_spec() {
    let dir = scratch("nwb");
    let nwb = dir.join("cell_types");
    let fixture = sweeps();
    write_fixture(&nwb.join("specimen_7/ephys.nwb"), &fixture);
    write_fixture(&nwb.join("8.nwb"), &fixture[1..3]);
    // a truncated file
    write_fixture(&nwb.join("9.nwb"), &fixture);
    let bytes = std::fs::read(nwb.join("9.nwb")).unwrap();
    std::fs::write(nwb.join("9.nwb"), &bytes[..bytes.len() / 3]).unwrap();
    let ids = dir.join("ids.csv");
    std::fs::write(&ids, "7,8,9,10\n").unwrap();
    let data = dir.join("data");
    // two cells fail, the others are done: exit 3
    let out = exits_with(
        &gfr(&[
            "preprocess",
            "--cell-ids",
            s(&ids),
            "--nwb-dir",
            s(&nwb),
            "--data-dir",
            s(&data),
            "--quiet",
        ]),
        3,
    );
    assert!(
        out.contains("2 done, 0 skipped (outputs exist), 2 failed"),
        "{out}"
    );
    assert!(out.contains("9.nwb"), "the truncated file is named: {out}");
    assert!(out.contains("failed 10: no recording"), "{out}");

    let cell = gfr::data::CellRecording::load(&gfr::data::DataDir::new(&data), 7).unwrap();
    assert_eq!(cell.sweeps.len(), fixture.len());
    for (got, want) in cell.sweeps.iter().zip(&fixture) {
        assert_eq!(got.stimulus_name, want.name);
        for bin in [10, 20, 50, 100] {
            let (cur, rate) = expected(want, bin);
            let (gc, gr) = got.traces(bin).unwrap();
            assert_eq!(gc.len(), cur.len(), "{} at {bin} ms", want.name);
            for (a, b) in gc.iter().zip(&cur) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                    "{} current at {bin} ms: {a} vs {b}",
                    want.name
                );
            }
            assert_eq!(gr, &rate[..], "{} rate at {bin} ms", want.name);
        }
    }
    // the Ramp is cut where its voltage recording ends (1.2 s), from the onset at 0.3 s
    assert_eq!(cell.sweeps[2].current[&100].len(), 8);
    // the largest 1/ISI: 0.3302 → 0.3449 s in the Long Square… and 0.4 → 0.41 s in Noise 1
    assert!(
        (cell.max_firing_rate - 1.0 / 10.0).abs() < 1e-9,
        "{}",
        cell.max_firing_rate
    );

    // outputs that exist are skipped, and say so (the two bad cells fail again: exit 3)
    let out = exits_with(
        &gfr(&[
            "preprocess",
            "--cell-ids",
            s(&ids),
            "--nwb-dir",
            s(&nwb),
            "--data-dir",
            s(&data),
            "--quiet",
        ]),
        3,
    );
    assert!(out.contains("0 done, 2 skipped"), "{out}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn download_fails_fast_with_where_to_put_files() {
    let dir = scratch("nwbdl");
    std::fs::write(dir.join("ids.csv"), "1\n").unwrap();
    let data = dir.join("data");
    let e = fails(&gfr(&[
        "preprocess",
        "--cell-ids",
        s(&dir.join("ids.csv")),
        "--nwb-dir",
        s(&dir),
        "--data-dir",
        s(&data),
        "--download",
    ]));
    assert!(e.contains("specimen_{id}/ephys.nwb"), "{e}");
    // nothing was preprocessed: no cell list that a later `gfr fit` or `gfr simulate` would
    // take for this folder's
    assert!(!data.join("cell_ids.csv").exists(), "{e}");
    // a mistyped NWB folder (no --download) is named at once: no list of every cell of the
    // metadata table is written, to fail each
    let typo = dir.join("nwb-typo");
    let e = fails(&gfr(&[
        "preprocess",
        "--nwb-dir",
        s(&typo),
        "--data-dir",
        s(&data),
    ]));
    assert!(
        e.contains(&format!("--nwb-dir {}: no such folder", typo.display())),
        "{e}"
    );
    assert!(!data.join("cell_ids.csv").exists(), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The Allen SDK applies `conversion` only to files of pipeline version 1.1 and later
/// (`general/generated_by`); older files and files without a version are read as stored.
#[test]
fn conversion_applies_only_from_pipeline_version_1_1() {
    let dir = scratch("nwbversion");
    let nwb = dir.join("cell_types");
    let fixture = sweeps();
    // the Long Square is stored in pA with conversion 1e-12
    assert_eq!(fixture[1].conversion, 1e-12);
    let cases: [(u64, Option<&[&str]>, bool); 6] = [
        (1, None, false),
        (2, Some(&["version", "1.0"]), false),
        (3, Some(&["institution", "AI", "version", "1.1"]), true),
        (4, Some(&["version", "2.3.1"]), true),
        (5, Some(&["version", "1"]), false), // one number: the SDK falls back to 0.0
        (6, Some(&["version", "x.y"]), false),
    ];
    for (id, g, _) in &cases {
        write_versioned_fixture(&nwb.join(format!("{id}.nwb")), &fixture, *g);
    }
    let ids = dir.join("ids.csv");
    std::fs::write(&ids, "1,2,3,4,5,6\n").unwrap();
    let data = dir.join("data");
    ok(&gfr(&[
        "preprocess",
        "--cell-ids",
        s(&ids),
        "--nwb-dir",
        s(&nwb),
        "--data-dir",
        s(&data),
        "--quiet",
    ]));
    for (id, g, converted) in cases {
        let cell = gfr::data::CellRecording::load(&gfr::data::DataDir::new(&data), id).unwrap();
        for (got, want) in cell.sweeps.iter().zip(&fixture) {
            let scale = if converted {
                want.conversion as f64
            } else {
                1.0
            };
            let (cur, _) = expected_scaled(want, 20, scale);
            let (gc, _) = got.traces(20).unwrap();
            assert_eq!(gc.len(), cur.len());
            for (a, b) in gc.iter().zip(&cur) {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1e-3),
                    "cell {id} ({g:?}) {}: {a} vs {b}",
                    want.name
                );
            }
        }
        // 150 pA in a new file; 1.5e14 "pA" read as stored in an old one
        let top = cell.sweeps[1].current[&100]
            .iter()
            .cloned()
            .fold(0.0, f64::max);
        let want = if converted { 150.0 } else { 150.0e12 };
        assert!((top - want).abs() < 1e-6 * want, "cell {id}: {top}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A sweep the fit uses whose current never changes has no onset: it is skipped with a note
/// naming it, and the cell's other sweeps are kept; a cell with no usable sweep left fails
/// (exit 3, the other cells done).
#[test]
fn a_sweep_without_onset_is_skipped_naming_it() {
    let dir = scratch("nwbonset");
    let nwb = dir.join("cell_types");
    let mut fixture = sweeps();
    fixture[4].stimulus.iter_mut().for_each(|x| *x = 1e-10); // Noise 1, Sweep_5: flat
    write_fixture(&nwb.join("11.nwb"), &fixture);
    write_fixture(&nwb.join("12.nwb"), &sweeps());
    let mut flat = sweeps();
    flat.iter_mut()
        .for_each(|s| s.stimulus.iter_mut().for_each(|x| *x = 1e-10));
    write_fixture(&nwb.join("13.nwb"), &flat);
    let ids = dir.join("ids.csv");
    std::fs::write(&ids, "11,12,13\n").unwrap();
    let out = exits_with(
        &gfr(&[
            "preprocess",
            "--cell-ids",
            s(&ids),
            "--nwb-dir",
            s(&nwb),
            "--data-dir",
            s(&dir.join("data")),
            "--quiet",
        ]),
        3,
    );
    assert!(
        out.contains("2 done, 0 skipped (outputs exist), 1 failed"),
        "{out}"
    );
    assert!(
        out.contains("cell 11: Sweep_5 (Noise 1): skipped, no stimulus onset found"),
        "the sweep is named: {out}"
    );
    assert!(
        out.contains("failed 13:") && out.contains("no usable sweep"),
        "{out}"
    );
    let dd = gfr::data::DataDir::new(dir.join("data"));
    let kept = gfr::data::processed::read_processed(&dd.processed(11)).unwrap();
    let all = gfr::data::processed::read_processed(&dd.processed(12)).unwrap();
    assert_eq!(kept.len(), all.len() - 1, "the other sweeps are kept");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn gfr_spikes_reports_the_stored_spikes_of_nwb1_files() {
    let dir = scratch("nwb1-spikes");
    let nwb = dir.join("cell_types");
    let fixture = sweeps();
    write_fixture(&nwb.join("specimen_7/ephys.nwb"), &fixture);
    let csv = dir.join("spikes.csv");
    let out = ok(&gfr(&[
        "spikes",
        "--cell-id",
        "7",
        "--nwb-dir",
        s(&nwb),
        "--out",
        s(&csv),
    ]));
    assert!(
        out.contains("F1: detected against stored spike times"),
        "{out}"
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let stored: Vec<f64> = text
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(3) == Some("stored"))
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    let want: Vec<f64> = fixture.iter().flat_map(|f| f.spikes.clone()).collect();
    assert_eq!(stored.len(), want.len(), "{out}");
    for (a, b) in stored.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    // the fixture's voltage is flat: nothing is detected, and F1 says so
    assert!(!text.contains(",detected,"), "{text}");
    // a truncated file is an error naming it
    let bytes = std::fs::read(nwb.join("specimen_7/ephys.nwb")).unwrap();
    std::fs::write(nwb.join("9.nwb"), &bytes[..bytes.len() / 3]).unwrap();
    let err = fails(&gfr(&["spikes", "--cell-id", "9", "--nwb-dir", s(&nwb)]));
    assert!(err.contains("9.nwb"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
