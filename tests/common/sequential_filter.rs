//! An independent, sequential `filtfilt` through second-order sections, written from scipy's
//! definition (odd extension by 15 samples, steady-state start, forwards then backwards), to
//! check the library's stretch-parallel filter against (tests) and to time it (benches).

use gfr::data::spikes::Sos;

/// One section over `x` in place (direct form II transposed), from the steady state of the
/// first sample (unit DC gain).
fn section(s: &Sos, x: &mut [f64]) {
    let [b0, b1, b2, a1, a2] = *s;
    let c = x[0];
    let (mut z0, mut z1) = ((b1 - a1 + b2 - a2) * c, (b2 - a2) * c);
    for u in x.iter_mut() {
        let y = b0 * *u + z0;
        z0 = b1 * *u - a1 * y + z1;
        z1 = b2 * *u - a2 * y;
        *u = y;
    }
}

/// `scipy.signal.filtfilt` with `sos` (at least 16 samples).
pub fn filtfilt_sequential(sos: &[Sos; 2], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    let mut e: Vec<f64> = (1..=15).rev().map(|k| 2.0 * x[0] - x[k]).collect();
    e.extend_from_slice(x);
    e.extend((1..=15).map(|k| 2.0 * x[n - 1] - x[n - 1 - k]));
    for s in sos {
        section(s, &mut e);
    }
    e.reverse();
    for s in sos {
        section(s, &mut e);
    }
    e.reverse();
    e[15..15 + n].to_vec()
}
