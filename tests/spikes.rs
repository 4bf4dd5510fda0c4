//! Spike detection from the voltage (IPFX's detector) on simulated traces with known spike
//! times: AdEx neurons of every firing type with spike waveforms, at 50 and 200 kHz, with
//! intrinsic and recording noise; and sub-threshold traces that must give no spikes.

use gfr::data::spikes::{
    SpikeParams, bessel_sos, detect_spikes, filtfilt, match_score, sample_time, spike_times,
};
use gfr::simulate::{AdexParams, FiringType};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

#[path = "common/sequential_filter.rs"]
mod sequential_filter;

/// White recording noise of `sd` volts.
fn add_noise(v: &mut [f64], sd: f64, rng: &mut StdRng) {
    let normal = Normal::new(0.0, sd).unwrap();
    v.iter_mut().for_each(|x| *x += normal.sample(rng));
}

/// 0.5 s rest, then 2 s of a step at `amp` pA, or of noisy current around it.
fn stimulus(amp: f64, noisy: bool, rate: f64, rng: &mut StdRng) -> Vec<f64> {
    let n = (2.5 * rate) as usize;
    let on = (0.5 * rate) as usize;
    let normal = Normal::new(0.0, 1.0).unwrap();
    let decay = (-1.0 / (0.005 * rate)).exp(); // 5 ms correlation
    let mut x = 0.0;
    (0..n)
        .map(|k| {
            x = x * decay + (1.0 - decay * decay).sqrt() * normal.sample(rng);
            if k < on {
                0.0
            } else if noisy {
                amp * (1.0 + 0.6 * x) * 1e-12
            } else {
                amp * 1e-12
            }
        })
        .collect()
}

#[test]
fn bessel_filter_has_unit_dc_gain_and_keeps_constants() {
    for rate in [25_000.0, 50_000.0, 200_000.0] {
        let sos = bessel_sos(rate, 10_000.0).unwrap();
        for s in sos {
            let [b0, b1, b2, a1, a2] = s;
            assert!(((b0 + b1 + b2) / (1.0 + a1 + a2) - 1.0).abs() < 1e-12);
            // stable: poles inside the unit circle
            assert!(a2 < 1.0 && a2 > 0.0);
        }
        let y = filtfilt(&sos, &[-65.0; 1000]);
        assert!(y.iter().all(|v| (v + 65.0).abs() < 1e-9));
        // a 1 kHz sine passes, a 40 kHz one (where the rate allows) is attenuated
        let sine = |f: f64| -> f64 {
            let x: Vec<f64> = (0..20_000)
                .map(|k| (2.0 * std::f64::consts::PI * f * k as f64 / rate).sin())
                .collect();
            let y = filtfilt(&sos, &x);
            y[5000..15_000].iter().map(|v| v * v).sum::<f64>()
                / x[5000..15_000].iter().map(|v| v * v).sum::<f64>()
        };
        assert!(sine(1000.0) > 0.95, "{rate}: {}", sine(1000.0));
        if rate > 80_000.0 {
            assert!(sine(40_000.0) < 0.01, "{rate}: {}", sine(40_000.0));
        }
    }
    // no filter at or below 20 kHz (10 kHz is not below Nyquist)
    assert!(bessel_sos(20_000.0, 10_000.0).is_none());
}

/// Long traces are filtered in stretches side by side: the result must match a sequential
/// pass to rounding at every rate, length and stretch boundary.
#[test]
fn stretch_parallel_filter_matches_a_sequential_pass() {
    let mut rng = StdRng::seed_from_u64(5);
    let normal = Normal::new(0.0, 1.0).unwrap();
    for rate in [25_000.0, 50_000.0, 100_000.0, 200_000.0, 500_000.0] {
        let sos = bessel_sos(rate, 10_000.0).unwrap();
        for n in [16, 999, 4_000, 25_001, 100_003, 1_000_000] {
            // a random walk with steps: wide-band, with a drifting baseline
            let mut v = -65.0;
            let x: Vec<f64> = (0..n)
                .map(|k| {
                    v += normal.sample(&mut rng) + if k % 7919 == 0 { 30.0 } else { 0.0 };
                    v
                })
                .collect();
            let got = filtfilt(&sos, &x);
            let want = sequential_filter::filtfilt_sequential(&sos, &x);
            let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= 1e-12 * scale,
                "{rate} Hz, {n} samples: off by {worst} (scale {scale})"
            );
        }
    }
}

#[test]
fn sample_times_bin_to_their_sample() {
    for rate in [10_000.0, 25_000.0, 50_000.0, 200_000.0, 199_999.0] {
        for k in 0..200_000usize {
            let t = sample_time(k, rate);
            assert_eq!((t * rate).floor() as usize, k);
        }
    }
}

#[test]
fn detects_simulated_spikes_with_f1_above_0_99() {
    let p = SpikeParams::default();
    let mut rng = StdRng::seed_from_u64(7);
    let (mut detected_all, mut true_all, mut hits_f1) = (0usize, 0usize, Vec::new());
    for rate in [50_000.0, 200_000.0] {
        for kind in FiringType::ALL {
            for noisy in [false, true] {
                let mut neuron = AdexParams::sample(kind, &mut rng);
                let rheo = neuron.rheobase();
                neuron.noise_std = 0.1 * rheo;
                let stim = stimulus(1.8 * rheo, noisy, rate, &mut rng);
                let (truth, mut v) = neuron.run_with_waveforms(&stim, rate, &mut rng);
                add_noise(&mut v, 0.3e-3, &mut rng);
                let t0 = std::time::Instant::now();
                let got = spike_times(&v, rate, &p);
                let secs = t0.elapsed().as_secs_f64();
                let (precision, recall, f1) = match_score(&got, &truth, 1e-3);
                println!(
                    "{:>6.0} kHz {:<12} {:<5}: {:>4} true, {:>4} detected, precision {precision:.4}, recall {recall:.4}, F1 {f1:.4} ({:.1} ms for {} samples)",
                    rate / 1e3,
                    kind.name(),
                    if noisy { "noise" } else { "step" },
                    truth.len(),
                    got.len(),
                    secs * 1e3,
                    v.len()
                );
                assert!(truth.len() >= 5, "the cell fires: {}", truth.len());
                assert!(f1 >= 0.99, "{kind:?} at {rate} Hz: F1 {f1}");
                detected_all += got.len();
                true_all += truth.len();
                hits_f1.push(f1);
            }
        }
    }
    let mean_f1 = hits_f1.iter().sum::<f64>() / hits_f1.len() as f64;
    println!("{true_all} true spikes, {detected_all} detected; mean F1 {mean_f1:.4}");
}

#[test]
fn no_spikes_below_threshold() {
    let p = SpikeParams::default();
    let mut rng = StdRng::seed_from_u64(11);
    for rate in [50_000.0, 200_000.0] {
        for kind in FiringType::ALL {
            // a depolarising step below rheobase, without intrinsic noise, plus recording noise
            let neuron = AdexParams::sample(kind, &mut rng);
            let rheo = neuron.rheobase();
            let stim = stimulus(0.8 * rheo, false, rate, &mut rng);
            let (truth, mut v) = neuron.run_with_waveforms(&stim, rate, &mut rng);
            assert!(truth.is_empty());
            add_noise(&mut v, 0.3e-3, &mut rng);
            assert_eq!(spike_times(&v, rate, &p), Vec::<f64>::new(), "{kind:?}");
        }
        // a fast EPSP-like depolarisation (dV/dt up to 67 mV/ms) that peaks near −47 mV:
        // rejected by the minimum peak
        let n = (1.0 * rate) as usize;
        let mut v: Vec<f64> = (0..n)
            .map(|k| {
                let t = k as f64 / rate - 0.3;
                if t < 0.0 {
                    -70e-3
                } else {
                    -70e-3 + 40e-3 * ((-t / 3e-3).exp() - (-t / 0.5e-3).exp())
                }
            })
            .collect();
        add_noise(&mut v, 0.3e-3, &mut rng);
        let mv: Vec<f64> = v.iter().map(|x| x * 1e3).collect();
        let dv = gfr::data::spikes::dvdt(&mv, rate, &p);
        assert!(dv.iter().cloned().fold(0.0, f64::max) > 20.0);
        assert!(detect_spikes(&mv, rate, &p).is_empty());
        // with the minimum peak lowered it counts as a spike
        let low = SpikeParams {
            min_peak: -60.0,
            ..SpikeParams::default()
        };
        assert_eq!(detect_spikes(&mv, rate, &low).len(), 1);
    }
}
