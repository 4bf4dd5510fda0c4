//! `gfr preprocess` on NWB 2 files in the pynwb / IPFX layout (no stored spikes): spikes are
//! detected from the voltage; currents, spike counts and rates are compared with an
//! independent computation from the fixture and its true spike times.

mod common;
use common::*;

use gfr::data::nwb2::{Nwb2Options, StimulusNames, read_recording};
use gfr::simulate::{AdexParams, FiringType};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use rust_hdf5::{H5File, H5Group, VarLenUnicode};

const RATE: f64 = 50_000.0;

struct Sweep {
    number: u32,
    code: &'static str,
    /// Our name for the stimulus ("" for sweeps that are skipped).
    name: &'static str,
    /// Current in pA (stored with conversion 1e-12).
    current_pa: Vec<f32>,
    /// Voltage in mV (stored with conversion 1e-3); NaN past the recording's end.
    voltage_mv: Vec<f32>,
    /// True spike times (s).
    spikes: Vec<f64>,
    /// The test pulse [a, b) (samples).
    test_pulse: (usize, usize),
    /// Samples recorded (the rest of the voltage is NaN).
    recorded: usize,
}

fn secs(s: f64, rate: f64) -> usize {
    (s * rate).round() as usize
}

/// A cell's sweeps at `rate`: each `seconds` long with a −10 pA test pulse at 10–20 ms, the
/// stimulus from 0.5 s; the voltage of an AdEx neuron with spike waveforms and 0.2 mV noise.
fn sweeps(rate: f64, seconds: f64, seed: u64) -> Vec<Sweep> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut neuron = AdexParams::sample(FiringType::Regular, &mut rng);
    let rheo = neuron.rheobase();
    neuron.noise_std = 0.1 * rheo;
    let n = secs(seconds, rate);
    let on = secs(0.5, rate);
    let off = n - secs(0.5, rate);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let noise = |rng: &mut StdRng| {
        let decay = (-1.0 / (0.005 * rate)).exp();
        let mut x = 0.0;
        (0..n)
            .map(|_| {
                x = x * decay + (1.0 - decay * decay).sqrt() * normal.sample(rng);
                x
            })
            .collect::<Vec<f64>>()
    };
    let frozen = noise(&mut StdRng::seed_from_u64(seed + 1));
    let mut out = Vec::new();
    // the current (pA) at sample k inside `window`, 0 outside
    let shaped = |window: std::ops::Range<usize>, f: &dyn Fn(usize) -> f64| -> Vec<f64> {
        (0..n)
            .map(|k| if window.contains(&k) { f(k) } else { 0.0 })
            .collect()
    };
    let noisy = |k: usize| 1.5 * rheo * (1.0 + 0.5 * frozen[k]);
    let protocol: Vec<(u32, &str, &str, Vec<f64>)> = vec![
        (1, "EXTPSMOKET180424_DA_0", "", vec![0.0; n]),
        (
            2,
            "C1LSCOARSE150216_DA_0",
            "Long Square",
            shaped(on..off, &|_| 0.6 * rheo),
        ),
        (
            3,
            "C1LSCOARSE150216_DA_0",
            "Long Square",
            shaped(on..off, &|_| 1.6 * rheo),
        ),
        (
            4,
            "C1RP25PR1S141203_DA_0",
            "Ramp",
            shaped(on..n, &|k| (k - on) as f64 / rate * 2.5 * rheo),
        ),
        (
            5,
            "C1NSSEED_1150216_DA_0",
            "Noise 1",
            shaped(on..off, &noisy),
        ),
        // above 127: paired through the series names
        (
            300,
            "C1NSSEED_2150216_DA_0[2]",
            "Noise 2",
            shaped(on..off, &noisy),
        ),
        (
            7,
            "C1SSFINEST150112_DA_0",
            "Short Square",
            shaped(on..on + secs(0.003, rate), &|_| 12.0 * rheo),
        ),
        (8, "MYLAB_CHIRP_DA_0", "", shaped(on..n, &|_| 0.5 * rheo)),
    ];
    let pulse = (secs(0.01, rate), secs(0.02, rate));
    for (number, code, name, mut pa) in protocol {
        pa[pulse.0..pulse.1].iter_mut().for_each(|x| *x = -10.0);
        let amps: Vec<f64> = pa.iter().map(|x| x * 1e-12).collect();
        let (mut spikes, v) = neuron.run_with_waveforms(&amps, rate, &mut rng);
        let mut mv: Vec<f32> = v
            .iter()
            .map(|x| (x * 1e3 + 0.2 * normal.sample(&mut rng)) as f32)
            .collect();
        // the Ramp's recording stops (NaN) well before its stimulus ends
        let recorded = if name == "Ramp" {
            // (not within 3 ms after a spike, nor 1 ms before one)
            let mut stop = secs(0.5 + 0.6 * (seconds - 1.0), rate);
            let near = |stop: usize| {
                let t = stop as f64 / rate;
                spikes.iter().any(|&x| x > t - 0.003 && x < t + 0.001)
            };
            while near(stop) {
                stop += secs(0.001, rate);
            }
            mv[stop..].iter_mut().for_each(|x| *x = f32::NAN);
            spikes.retain(|&t| t < stop as f64 / rate);
            stop
        } else {
            n
        };
        out.push(Sweep {
            number,
            code,
            name,
            current_pa: pa.iter().map(|&x| x as f32).collect(),
            voltage_mv: mv,
            spikes,
            test_pulse: pulse,
            recorded,
        });
    }
    out
}

fn string_attr(g: &H5Group, name: &str, value: &str) {
    g.set_attr_string(name, value).unwrap();
}

/// An NWB 2 file as pynwb writes an Allen/IPFX patch-clamp recording: root attributes,
/// `/general/intracellular_ephys/electrode_0`, `CurrentClampSeries` `data_NNNNN_AD0` in
/// `/acquisition` and `CurrentClampStimulusSeries` `data_NNNNN_DA0` in
/// `/stimulus/presentation`, with `sweep_number` and `stimulus_description` attributes.
fn write_nwb2(path: &std::path::Path, sweeps: &[Sweep], rate: f64, chunked: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let f = H5File::create(path).unwrap();
    f.set_attr_string("nwb_version", "2.2.5").unwrap();
    f.set_attr_string("namespace", "core").unwrap();
    f.set_attr_string("neurodata_type", "NWBFile").unwrap();
    for (k, v) in [
        ("identifier", "gfr-fixture"),
        ("session_description", "gfr NWB 2 test fixture"),
        ("session_start_time", "2020-01-01T00:00:00+00:00"),
        ("timestamps_reference_time", "2020-01-01T00:00:00+00:00"),
    ] {
        f.write_vlen_strings(k, &[v]).unwrap();
    }
    let root = f.root_group();
    let general = root.create_group("general").unwrap();
    let ice = general.create_group("intracellular_ephys").unwrap();
    let el = ice.create_group("electrode_0").unwrap();
    string_attr(&el, "neurodata_type", "IntracellularElectrode");
    el.write_vlen_strings("description", &["headstage 0"])
        .unwrap();
    let acq = root.create_group("acquisition").unwrap();
    let pres = root
        .create_group("stimulus")
        .unwrap()
        .create_group("presentation")
        .unwrap();
    // a voltage-clamp series, which is ignored
    let vc = acq.create_group("data_00000_AD0").unwrap();
    string_attr(&vc, "neurodata_type", "VoltageClampSeries");
    vc.set_attr_numeric("sweep_number", &0u32).unwrap();
    vc.new_dataset::<f32>()
        .shape([10])
        .create("data")
        .unwrap()
        .write_raw(&[0.0f32; 10])
        .unwrap();
    for s in sweeps {
        for (parent, kind, suffix, data, conversion, unit) in [
            (
                &acq,
                "CurrentClampSeries",
                "AD0",
                &s.voltage_mv,
                1e-3f32,
                "volts",
            ),
            (
                &pres,
                "CurrentClampStimulusSeries",
                "DA0",
                &s.current_pa,
                1e-12f32,
                "amperes",
            ),
        ] {
            let g = parent
                .create_group(&format!("data_{:05}_{suffix}", s.number))
                .unwrap();
            string_attr(&g, "neurodata_type", kind);
            string_attr(&g, "namespace", "core");
            string_attr(&g, "stimulus_description", s.code);
            string_attr(&g, "description", "PLACEHOLDER");
            g.set_attr_numeric("sweep_number", &s.number).unwrap();
            let b = g.new_dataset::<f32>().shape([data.len()]);
            let d = if chunked {
                b.chunk(&[65_536]).deflate(1).create("data").unwrap()
            } else {
                b.create("data").unwrap()
            };
            d.write_raw(data).unwrap();
            d.new_attr::<f32>()
                .shape(())
                .create("conversion")
                .unwrap()
                .write_numeric(&conversion)
                .unwrap();
            d.new_attr::<f32>()
                .shape(())
                .create("resolution")
                .unwrap()
                .write_numeric(&f32::NAN)
                .unwrap();
            d.new_attr::<VarLenUnicode>()
                .shape(())
                .create("unit")
                .unwrap()
                .write_string(unit)
                .unwrap();
            let st = g
                .new_dataset::<f64>()
                .scalar()
                .create("starting_time")
                .unwrap();
            st.write_raw(&[s.number as f64 * 10.0]).unwrap();
            st.new_attr::<f32>()
                .shape(())
                .create("rate")
                .unwrap()
                .write_numeric(&(rate as f32))
                .unwrap();
            st.new_attr::<VarLenUnicode>()
                .shape(())
                .create("unit")
                .unwrap()
                .write_string("seconds")
                .unwrap();
            g.new_dataset::<f32>()
                .scalar()
                .create("gain")
                .unwrap()
                .write_raw(&[1.0f32])
                .unwrap();
            g.create_soft_link("electrode", "/general/intracellular_ephys/electrode_0")
                .unwrap();
        }
    }
    f.close().unwrap();
}

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

/// Benchmark, not an assertion: preprocessing a ~100 MB NWB 2 file (200 kHz, float32,
/// uncompressed) in-process. `cargo test --release --test nwb2 -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_preprocess_100mb() {
    let dir = scratch("nwb2bench");
    let nwb = dir.join("nwb");
    let rate = 200_000.0;
    let mut fixture = Vec::new();
    for k in 0..3 {
        let mut s = sweeps(rate, 3.0, 100 + k);
        s.retain(|x| !x.name.is_empty());
        for (j, x) in s.iter_mut().enumerate() {
            x.number = 10 + (k as u32) * 10 + j as u32;
        }
        fixture.extend(s);
    }
    write_nwb2(&nwb.join("41.nwb"), &fixture, rate, false);
    let mb = std::fs::metadata(nwb.join("41.nwb")).unwrap().len() as f64 / 1e6;
    let data = gfr::data::DataDir::new(dir.join("data"));
    let t0 = std::time::Instant::now();
    let (outcome, _) =
        gfr::data::preprocess::preprocess_cell_with(&nwb, &data, 41, &Nwb2Options::default());
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "preprocessed a {mb:.0} MB NWB 2 file ({} sweeps at 200 kHz) in {secs:.2} s: {:.2} s per 100 MB; {outcome:?}",
        fixture.len(),
        secs / mb * 100.0
    );
    // the parts: reading + detection, binning
    let t0 = std::time::Instant::now();
    let rec = read_recording(&nwb.join("41.nwb"), &Nwb2Options::default()).unwrap();
    let read = t0.elapsed().as_secs_f64();
    let t0 = std::time::Instant::now();
    for (_, s) in &rec.sweeps {
        gfr::data::bin_sweep(s, &gfr::data::PROCESSED_BIN_SIZES);
    }
    println!(
        "read + spike detection: {read:.2} s ({} spikes); binning: {:.2} s",
        rec.sweeps
            .iter()
            .map(|(_, s)| s.spike_times.len())
            .sum::<usize>(),
        t0.elapsed().as_secs_f64()
    );
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
