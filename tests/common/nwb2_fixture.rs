//! An NWB 2 file in the pynwb / IPFX layout, written from simulated AdEx sweeps with spike
//! waveforms: the fixture of `tests/nwb2.rs` and `benches/preprocess_nwb2.rs` (included by
//! path; not a test crate of its own).
#![allow(dead_code)]

use gfr::data::nwb2_write::{Nwb2Sweep, Nwb2Writer};
use gfr::simulate::{AdexParams, FiringType};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use rust_hdf5::H5Group;

pub const RATE: f64 = 50_000.0;

pub struct Sweep {
    pub number: u32,
    pub code: &'static str,
    /// Our name for the stimulus ("" for sweeps that are skipped).
    pub name: &'static str,
    /// Current in pA (stored with conversion 1e-12).
    pub current_pa: Vec<f32>,
    /// Voltage in mV (stored with conversion 1e-3); NaN past the recording's end.
    pub voltage_mv: Vec<f32>,
    /// True spike times (s).
    pub spikes: Vec<f64>,
    /// The test pulse [a, b) (samples).
    pub test_pulse: (usize, usize),
    /// Samples recorded (the rest of the voltage is NaN).
    pub recorded: usize,
}

pub fn secs(s: f64, rate: f64) -> usize {
    (s * rate).round() as usize
}

/// A cell's sweeps at `rate`: each `seconds` long with a −10 pA test pulse at 10–20 ms, the
/// stimulus from 0.5 s; the voltage of an AdEx neuron with spike waveforms and 0.2 mV noise.
pub fn sweeps(rate: f64, seconds: f64, seed: u64) -> Vec<Sweep> {
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

pub fn string_attr(g: &H5Group, name: &str, value: &str) {
    g.set_attr_string(name, value).unwrap();
}

/// An NWB 2 file as pynwb writes an Allen/IPFX patch-clamp recording (the library's writer,
/// [`gfr::data::nwb2_write`]), plus a voltage-clamp series `data_00000_AD0` in
/// `/acquisition`, which the reader must ignore.
pub fn write_nwb2(path: &std::path::Path, sweeps: &[Sweep], rate: f64, chunked: bool) {
    let w = Nwb2Writer::create(path, "gfr-fixture", rate, chunked).unwrap();
    let vc = w.acquisition().create_group("data_00000_AD0").unwrap();
    string_attr(&vc, "neurodata_type", "VoltageClampSeries");
    vc.set_attr_numeric("sweep_number", &0u32).unwrap();
    vc.new_dataset::<f32>()
        .shape([10])
        .create("data")
        .unwrap()
        .write_raw(&[0.0f32; 10])
        .unwrap();
    for s in sweeps {
        w.sweep(&Nwb2Sweep {
            number: s.number,
            stimulus_code: s.code.to_string(),
            current_pa: s.current_pa.clone(),
            voltage_mv: s.voltage_mv.clone(),
        })
        .unwrap();
    }
    w.close().unwrap();
}
