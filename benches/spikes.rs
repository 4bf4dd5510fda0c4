//! Spike detection speed on one 10 s, 50 kHz sweep of a firing cell (the sweep of
//! `benches/spikes_vs_ipfx.py`): the zero-phase filter (stretch-parallel, and an independent
//! sequential pass for comparison), dV/dt and the whole detector.
//!
//!     cargo bench --bench spikes
//!
//! Prints the best of 20 runs, in ms per sweep.

#[path = "../tests/common/sequential_filter.rs"]
mod sequential_filter;

use gfr::data::spikes::{SpikeParams, bessel_sos, detect_spikes, filtfilt};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

const RATE: f64 = 50_000.0;

/// A leaky integrate-and-fire cell with spike waveforms, driven by a noisy step (mV).
fn sweep(seconds: f64) -> Vec<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let n = (seconds * RATE) as usize;
    let waveform: Vec<f64> = (0..15)
        .map(|k| -50.0 + 80.0 * k as f64 / 14.0)
        .chain((0..60).map(|k| 30.0 - 95.0 * k as f64 / 59.0))
        .collect();
    let (dt, tau, el, vth, reset, gain) = (1000.0 / RATE, 10.0, -70.0, -50.0, -65.0, 0.21);
    let (mut v, mut x, mut k, mut drive) = (Vec::with_capacity(n), el, 0, 0.0);
    while k < n {
        drive = 0.98 * drive + 0.2 * normal.sample(&mut rng);
        let i = if k > n / 20 && k < n - n / 20 {
            150.0 + 60.0 * drive
        } else {
            0.0
        };
        x += dt * (-(x - el) + gain * i) / tau;
        if x >= vth {
            v.extend(waveform.iter().take(n - k));
            k = v.len();
            x = reset;
            continue;
        }
        v.push(x);
        k += 1;
    }
    v.iter()
        .map(|x| x + 0.15 * normal.sample(&mut rng))
        .collect()
}

fn best_ms(mut f: impl FnMut()) -> f64 {
    (0..20)
        .map(|_| {
            let t0 = std::time::Instant::now();
            f();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let v = sweep(std::env::var("SECONDS").map_or(10.0, |s| s.parse().unwrap()));
    let sos = bessel_sos(RATE, 10_000.0).unwrap();
    let p = SpikeParams::default();
    let spikes = detect_spikes(&v, RATE, &p).len();
    let seq = best_ms(|| {
        std::hint::black_box(sequential_filter::filtfilt_sequential(&sos, &v));
    });
    let par = best_ms(|| {
        std::hint::black_box(filtfilt(&sos, &v));
    });
    let dv = best_ms(|| {
        std::hint::black_box(gfr::data::spikes::dvdt(&v, RATE, &p));
    });
    let all = best_ms(|| {
        std::hint::black_box(detect_spikes(&v, RATE, &p));
    });
    println!(
        "one {:.0} s, 50 kHz sweep ({} samples, {spikes} spikes): filter {par:.2} ms \
         (sequential {seq:.2} ms, {:.1}x), filter + dV/dt {dv:.2} ms, whole detector {all:.2} ms",
        v.len() as f64 / RATE,
        v.len(),
        seq / par
    );
}
