//! Spike detection from the membrane potential, after IPFX (`ipfx.spike_detector` and
//! `SpikeFeatureExtractor.process`, the Allen Institute's feature extractor, whose threshold
//! times are the spike times stored in the Allen Cell Types NWB 1 files).
//!
//! The steps, with IPFX's defaults in [`SpikeParams::default`]:
//! 1. **Filter**: a 4-pole low-pass Bessel filter at 10 kHz (`scipy.signal.bessel(4, Wn)`,
//!    phase-normalised analog prototype, bilinear transform with pre-warping), run forwards
//!    and backwards (`filtfilt`: zero phase, odd extension of 15 samples at each end, steady
//!    state initial conditions). Here as a cascade of two second-order sections, which is the
//!    same filter as IPFX's transfer-function form up to rounding.
//! 2. **dV/dt** of the filtered voltage (mV/ms), by forward differences.
//! 3. **Putative spikes**: upward crossings of `dv_cutoff` (20 mV/ms); a crossing counts only if
//!    dV/dt went below zero since the previous crossing (`detect_putative_spikes`).
//! 4. **Peaks**: the largest (raw) voltage from each crossing to the next (`find_peak_indexes`).
//! 5. **Filtering** (`filter_putative_spikes`): where dV/dt never goes negative between a peak
//!    and the next crossing, the two events are merged; then events whose peak is below
//!    `min_peak` (−30 mV) or less than `min_height` (2 mV) above the crossing are dropped.
//! 6. **Thresholds** (`find_upstroke_indexes`, `refine_threshold_indexes`): the upstroke is the
//!    largest dV/dt between crossing and peak; the threshold is the last sample before it
//!    (searching back to the previous upstroke) where dV/dt ≤ `thresh_frac` (5 %) of the mean
//!    upstroke.
//! 7. **Checks** (`check_thresholds_and_peaks`): overlapping threshold/peak pairs are merged;
//!    a peak `max_interval` (5 ms) or more after its threshold gets its threshold searched
//!    again within that interval, or else its peak within twice the interval, or is dropped.
//!
//! Spike times are the threshold times, in s from the first sample.
//!
//! Deviations from IPFX: at sampling rates of 20 kHz or less (where a 10 kHz cutoff is not
//! below the Nyquist frequency) IPFX raises an error; here the voltage is then differentiated
//! unfiltered. Where IPFX would raise because a search window reaches past the start or end of
//! the trace (step 7), the window is clipped. Non-finite samples are replaced by the previous
//! finite one (IPFX would propagate NaN through the filter). The `clipped` flag of the last
//! spike (which does not remove spikes) is not computed.

use std::f64::consts::PI;

/// Detector settings; [`Default`] gives IPFX's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SpikeParams {
    /// Cutoff of the 4-pole Bessel low-pass (kHz); `None`: no filtering.
    pub filter_khz: Option<f64>,
    /// dV/dt level whose upward crossing marks a putative spike (mV/ms = V/s).
    pub dv_cutoff: f64,
    /// Smallest accepted peak voltage (mV).
    pub min_peak: f64,
    /// Smallest accepted height from the crossing to the peak (mV).
    pub min_height: f64,
    /// Threshold: this fraction of the mean upstroke dV/dt.
    pub thresh_frac: f64,
    /// Longest accepted time from threshold to peak (s).
    pub max_interval: f64,
}

impl Default for SpikeParams {
    fn default() -> Self {
        Self {
            filter_khz: Some(10.0),
            dv_cutoff: 20.0,
            min_peak: -30.0,
            min_height: 2.0,
            thresh_frac: 0.05,
            max_interval: 0.005,
        }
    }
}

impl SpikeParams {
    /// Checks the settings a user gives (errors are [`crate::error::Invalid`] and name them
    /// as `name` does).
    pub fn check(&self, name: &dyn Fn(&str) -> String) -> anyhow::Result<()> {
        let bad = |field: &str, value: f64, what: &str| {
            Err(crate::error::invalid(format!(
                "{} {value}: must be {what}",
                name(field)
            )))
        };
        if !(self.dv_cutoff > 0.0 && self.dv_cutoff.is_finite()) {
            return bad("dv_cutoff", self.dv_cutoff, "a positive number (mV/ms)");
        }
        if !self.min_peak.is_finite() {
            return bad("min_peak", self.min_peak, "a number (mV)");
        }
        if let Some(k) = self.filter_khz
            && !(k > 0.0 && k.is_finite())
        {
            return bad(
                "filter_khz",
                k,
                "a positive number (kHz), or none for no filter",
            );
        }
        Ok(())
    }
}

/// Threshold times (s from the first sample) of the spikes in a voltage trace (mV) sampled
/// at `rate_hz`, as IPFX detects them ([`detect_spikes`]); the settings and the rate are
/// checked first (settings named as `name` does).
pub fn threshold_times(
    v_mv: &[f64],
    rate_hz: f64,
    p: &SpikeParams,
    name: &dyn Fn(&str) -> String,
) -> anyhow::Result<Vec<f64>> {
    p.check(name)?;
    if !(rate_hz > 0.0 && rate_hz.is_finite()) {
        return Err(crate::error::invalid(format!(
            "{} {rate_hz}: must be a positive number (Hz)",
            name("rate_hz")
        )));
    }
    Ok(detect_spikes(v_mv, rate_hz, p)
        .iter()
        .map(|s| sample_time(s.threshold, rate_hz))
        .collect())
}

/// One detected spike: sample indexes of its threshold, upstroke (largest dV/dt) and peak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spike {
    /// Sample index of the threshold.
    pub threshold: usize,
    /// Sample index of the upstroke (largest dV/dt between the dV/dt crossing and the peak).
    pub upstroke: usize,
    /// Sample index of the peak.
    pub peak: usize,
}

/// A second-order section `[b0, b1, b2, a1, a2]` (a0 = 1).
pub type Sos = [f64; 5];

/// The 4-pole low-pass Bessel filter of `scipy.signal.bessel(4, cutoff / (rate / 2))` as two
/// second-order sections, each of unit gain at DC; `None` when the cutoff is not below the
/// Nyquist frequency.
pub fn bessel_sos(rate_hz: f64, cutoff_hz: f64) -> Option<[Sos; 2]> {
    let wn = cutoff_hz / (rate_hz / 2.0);
    if !(wn > 0.0 && wn < 1.0) {
        return None;
    }
    // poles of the phase-normalised 4th-order Bessel prototype (`besselap(4, 'phase')`): the
    // roots of s⁴ + 10 s³ + 45 s² + 105 s + 105, scaled by 105^(−1/4)
    const POLES: [(f64, f64); 2] = [
        (-0.657_211_171_671_883, 0.830_161_435_004_873_5),
        (-0.904_758_796_788_245_1, 0.270_918_733_003_874_65),
    ];
    // scipy designs at fs = 2: pre-warp, then the bilinear transform z = (4 + p) / (4 − p)
    let warped = 4.0 * (PI * wn / 2.0).tan();
    let mut sos = [[0.0; 5]; 2];
    for (s, &(re, im)) in sos.iter_mut().zip(&POLES) {
        let (pr, pi) = (re * warped, im * warped);
        let (nr, ni) = (4.0 + pr, pi);
        let (dr, di) = (4.0 - pr, -pi);
        let d2 = dr * dr + di * di;
        let (zr, zi) = ((nr * dr + ni * di) / d2, (ni * dr - nr * di) / d2);
        let (a1, a2) = (-2.0 * zr, zr * zr + zi * zi);
        let g = (1.0 + a1 + a2) / 4.0;
        *s = [g, 2.0 * g, g, a1, a2];
    }
    Some(sos)
}

/// The state of the two sections of a cascade (direct form II transposed).
#[derive(Clone, Copy)]
struct Cascade([[f64; 2]; 2]);

impl Cascade {
    /// The steady state for a constant input `c` (every section has unit DC gain, so each
    /// one's steady state is `c`).
    fn steady(sos: &[Sos; 2], c: f64) -> Self {
        Self(sos.map(|[_, b1, b2, a1, a2]| [(b1 - a1 + b2 - a2) * c, (b2 - a2) * c]))
    }

    /// Filters one sample.
    #[inline(always)]
    fn step(&mut self, sos: &[Sos; 2], u: f64) -> f64 {
        let [[b0, b1, b2, a1, a2], [d0, d1, d2, c1, c2]] = *sos;
        let [[s0, s1], [t0, t1]] = &mut self.0;
        let y = b0 * u + *s0;
        *s0 = b1 * u - a1 * y + *s1;
        *s1 = b2 * u - a2 * y;
        let w = d0 * y + *t0;
        *t0 = d1 * y - c1 * w + *t1;
        *t1 = d2 * y - c2 * w;
        w
    }
}

/// Samples after which the effect of a filter's state has decayed below 1e-20 of its size:
/// twice the decay time of its slowest pole (|z|² = a2 for each complex pair).
fn warm_up(sos: &[Sos; 2]) -> usize {
    let r = sos.iter().map(|s| s[4].sqrt()).fold(0.0, f64::max);
    (2.0 * (1e-20f64).ln() / r.ln()).ceil() as usize + 32
}

/// One pass of the cascade over `x`, in place, forwards (`FWD`) or backwards, started in the
/// steady state of the first sample it sees.
///
/// The recursion is a chain of dependent multiply-adds (latency-bound on one stretch), so a
/// long trace is cut into stretches filtered side by side in one loop (4, or 8 where the CPU
/// has AVX2: two registers of four; the same operations, so the same numbers). Each stretch
/// after the first starts from the state reached over the [`warm_up`] samples before it,
/// where the earlier samples' effect has decayed to below 1e-20 of the signal: it matches
/// the sequential pass to rounding (tests/spikes.rs compares).
fn pass<const FWD: bool>(sos: &[Sos; 2], x: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above)
        return unsafe { pass_avx2::<FWD>(sos, x) };
    }
    pass_lanes::<FWD, 4>(sos, x)
}

/// [`pass`] compiled for AVX2, with 8 stretches (no fused multiply-adds: the same numbers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pass_avx2<const FWD: bool>(sos: &[Sos; 2], x: &mut [f64]) {
    pass_lanes::<FWD, 8>(sos, x)
}

/// [`pass`] with `LANES` stretches side by side.
#[inline(always)]
fn pass_lanes<const FWD: bool, const LANES: usize>(sos: &[Sos; 2], x: &mut [f64]) {
    let n = x.len();
    if n == 0 {
        return;
    }
    let at = |p: usize| if FWD { p } else { n - 1 - p };
    let warm = warm_up(sos);
    let len = n.div_ceil(LANES);
    if len < 8 * warm.max(128) {
        let mut st = Cascade::steady(sos, x[at(0)]);
        for p in 0..n {
            let i = at(p);
            x[i] = st.step(sos, x[i]);
        }
        return;
    }
    // every stretch's start state from the input before any is overwritten
    let mut st: [Cascade; LANES] = std::array::from_fn(|j| {
        let p0 = (j * len).saturating_sub(warm);
        let mut s = Cascade::steady(sos, x[at(p0)]);
        for p in p0..j * len {
            s.step(sos, x[at(p)]);
        }
        s
    });
    let last = n - (LANES - 1) * len;
    // side by side, one array per state variable (so that the lanes vectorise)
    let [[b0, b1, b2, a1, a2], [d0, d1, d2, c1, c2]] = *sos;
    let mut z: [[f64; LANES]; 4] = std::array::from_fn(|v| st.map(|s| s.0[v / 2][v % 2]));
    for k in 0..last {
        let u: [f64; LANES] = std::array::from_fn(|j| x[at(j * len + k)]);
        let mut w = [0.0; LANES];
        for j in 0..LANES {
            let y = b0 * u[j] + z[0][j];
            z[0][j] = b1 * u[j] - a1 * y + z[1][j];
            z[1][j] = b2 * u[j] - a2 * y;
            w[j] = d0 * y + z[2][j];
            z[2][j] = d1 * y - c1 * w[j] + z[3][j];
            z[3][j] = d2 * y - c2 * w[j];
        }
        for j in 0..LANES {
            x[at(j * len + k)] = w[j];
        }
    }
    // the last stretch may be shorter
    for (j, s) in st.iter_mut().enumerate().take(LANES - 1) {
        *s = Cascade([[z[0][j], z[1][j]], [z[2][j], z[3][j]]]);
        for k in last..len {
            let i = at(j * len + k);
            x[i] = s.step(sos, x[i]);
        }
    }
}

/// Zero-phase filtering as `scipy.signal.filtfilt(b, a, x)` does it: odd extension by 15
/// samples (fewer for short traces) at each end, forwards, backwards, and the extension cut.
pub fn filtfilt(sos: &[Sos; 2], x: &[f64]) -> Vec<f64> {
    let (mut ext, pad) = filtfilt_extended(sos, x);
    ext.drain(..pad);
    ext.truncate(x.len());
    ext
}

/// [`filtfilt`] with the extension kept: `(filtered, pad)`, the trace at `pad..pad + n`.
fn filtfilt_extended(sos: &[Sos; 2], x: &[f64]) -> (Vec<f64>, usize) {
    let n = x.len();
    if n < 2 {
        return (x.to_vec(), 0);
    }
    let pad = 15.min(n - 1);
    let mut ext = Vec::with_capacity(n + 2 * pad);
    ext.extend((1..=pad).rev().map(|k| 2.0 * x[0] - x[k]));
    ext.extend_from_slice(x);
    ext.extend((1..=pad).map(|k| 2.0 * x[n - 1] - x[n - 1 - k]));
    pass::<true>(sos, &mut ext);
    pass::<false>(sos, &mut ext);
    (ext, pad)
}

/// dV/dt (mV/ms) of a voltage trace in mV, filtered as `p` says: `n − 1` forward differences.
pub fn dvdt(v_mv: &[f64], rate_hz: f64, p: &SpikeParams) -> Vec<f64> {
    let scale = rate_hz * 1e-3;
    match p.filter_khz.and_then(|f| bessel_sos(rate_hz, f * 1e3)) {
        Some(sos) => {
            // differences in place, in the filtered trace's own buffer (from its start, so
            // the extension need not be cut first)
            let (mut v, pad) = filtfilt_extended(&sos, v_mv);
            let n = v_mv.len().saturating_sub(1);
            for i in 0..n {
                v[i] = (v[pad + i + 1] - v[pad + i]) * scale;
            }
            v.truncate(n);
            v
        }
        None => v_mv.windows(2).map(|w| (w[1] - w[0]) * scale).collect(),
    }
}

/// First index of the largest value of `x[lo..hi]` (numpy's `argmax`); `lo` if empty.
fn argmax(x: &[f64], lo: usize, hi: usize) -> usize {
    let Some(span) = x.get(lo..hi.min(x.len())).filter(|s| !s.is_empty()) else {
        return lo;
    };
    // the largest value (over 8 running maxima, which vectorise), then its first place
    let mut tops = [span[0]; 8];
    let mut blocks = span.chunks_exact(8);
    for b in &mut blocks {
        for (t, &v) in tops.iter_mut().zip(b) {
            *t = if v > *t { v } else { *t };
        }
    }
    let top =
        (blocks.remainder().iter().chain(&tops)).fold(span[0], |m, &v| if v > m { v } else { m });
    lo + span.iter().position(|&v| v == top).unwrap_or(0)
}

/// The first `k ≥ from` with `dv[k] < cut ≤ dv[k + 1]` (an upward crossing of `cut`).
fn next_crossing(dv: &[f64], from: usize, cut: f64) -> Option<usize> {
    let hit = |k: usize| dv[k] < cut && dv[k + 1] >= cut;
    let end = dv.len().saturating_sub(1);
    let mut k = from;
    // blocks of 16 tested without branches first: crossings are rare
    while k + 16 <= end {
        if (k..k + 16).fold(false, |a, j| a | ((dv[j] < cut) & (dv[j + 1] >= cut))) {
            return (k..k + 16).find(|&j| hit(j));
        }
        k += 16;
    }
    (k..end).find(|&j| hit(j))
}

/// Spikes in a voltage trace (mV) sampled at `rate_hz`, as IPFX detects them (see the module
/// documentation), in time order.
pub fn detect_spikes(v_mv: &[f64], rate_hz: f64, p: &SpikeParams) -> Vec<Spike> {
    let n = v_mv.len();
    if n < 3 {
        return Vec::new();
    }
    // (finiteness tested in blocks without branches, which vectorises)
    let finite = v_mv
        .chunks(64)
        .all(|c| c.iter().fold(true, |a, x| a & x.is_finite()));
    let v: std::borrow::Cow<[f64]> = if finite {
        std::borrow::Cow::Borrowed(v_mv)
    } else {
        let first = v_mv.iter().copied().find(|x| x.is_finite()).unwrap_or(0.0);
        v_mv.iter()
            .scan(first, |last, &x| {
                if x.is_finite() {
                    *last = x;
                }
                Some(*last)
            })
            .collect::<Vec<f64>>()
            .into()
    };
    let dv = dvdt(&v, rate_hz, p);

    // 3. putative spikes: an upward crossing at i (dv[i] below, dv[i + 1] at or above the
    // cutoff) is kept if it is the first, or dv went negative in [previous crossing, i)
    let mut putative = Vec::new();
    let mut previous: Option<usize> = None;
    while let Some(i) = next_crossing(&dv, previous.map_or(0, |j| j + 1), p.dv_cutoff) {
        if previous.is_none_or(|j| dv[j..i].iter().any(|&d| d < 0.0)) {
            putative.push(i);
        }
        previous = Some(i);
    }
    if putative.is_empty() {
        return Vec::new();
    }

    // 4. peaks: the largest voltage up to the next crossing (the last one: to the last sample)
    let peaks: Vec<usize> = (0..putative.len())
        .map(|j| {
            argmax(
                &v,
                putative[j],
                putative.get(j + 1).copied().unwrap_or(n - 1),
            )
        })
        .collect();

    // 5. merge events without a negative dV/dt between a peak and the next crossing; then
    // peak level and height
    let negative_between = |lo: usize, hi: usize| dv[lo.min(hi)..hi].iter().any(|&d| d < 0.0);
    let mask: Vec<bool> = (0..putative.len() - 1)
        .map(|j| negative_between(peaks[j], putative[j + 1]))
        .collect();
    let starts = std::iter::once(putative[0]).chain(
        putative[1..]
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(s, _)| *s),
    );
    let ends = peaks[..peaks.len() - 1]
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m)
        .map(|(pk, _)| *pk)
        .chain(std::iter::once(peaks[peaks.len() - 1]));
    let pairs: Vec<(usize, usize)> = starts
        .zip(ends)
        .filter(|&(s, pk)| v[pk] >= p.min_peak && v[pk] - v[s] >= p.min_height)
        .collect();
    if pairs.is_empty() {
        return Vec::new();
    }

    // 6. upstrokes and thresholds
    let upstroke = |s: usize, pk: usize| argmax(&dv, s, pk);
    let mut spikes: Vec<Spike> = pairs
        .iter()
        .map(|&(s, pk)| Spike {
            threshold: s,
            upstroke: upstroke(s, pk),
            peak: pk,
        })
        .collect();
    let target = |spikes: &[Spike]| {
        spikes.iter().map(|s| dv[s.upstroke]).sum::<f64>() / spikes.len() as f64 * p.thresh_frac
    };
    let t = target(&spikes);
    let mut prev = 0;
    for s in spikes.iter_mut() {
        // search dv[upstroke], dv[upstroke − 1], …, dv[prev + 1]
        s.threshold = (prev + 1..=s.upstroke)
            .rev()
            .find(|&k| dv[k] <= t)
            .unwrap_or(prev);
        prev = s.upstroke;
    }

    // 7. overlapping pairs: a threshold at or before the previous peak + 1 merges the two
    // (the first threshold with the second peak and upstroke)
    let overlaps: Vec<bool> = (0..spikes.len())
        .map(|j| j + 1 < spikes.len() && spikes[j + 1].threshold <= spikes[j].peak + 1)
        .collect();
    if overlaps.iter().any(|&o| o) {
        let thresholds: Vec<usize> = spikes
            .iter()
            .enumerate()
            .filter(|&(j, _)| j == 0 || !overlaps[j - 1])
            .map(|(_, s)| s.threshold)
            .collect();
        let rest: Vec<(usize, usize)> = spikes
            .iter()
            .zip(&overlaps)
            .filter(|(_, o)| !**o)
            .map(|(s, _)| (s.upstroke, s.peak))
            .collect();
        spikes = thresholds
            .into_iter()
            .zip(rest)
            .map(|(threshold, (upstroke, peak))| Spike {
                threshold,
                upstroke,
                peak,
            })
            .collect();
    }
    // peaks too long after their threshold
    let secs = |a: usize, b: usize| b as f64 / rate_hz - a as f64 / rate_hz;
    let too_long: Vec<usize> = (0..spikes.len())
        .filter(|&j| secs(spikes[j].threshold, spikes[j].peak) >= p.max_interval)
        .collect();
    if !too_long.is_empty() {
        let t = target(&spikes);
        let window = p.max_interval * rate_hz;
        let mut drop = vec![false; spikes.len()];
        for j in too_long {
            let s = spikes[j];
            let t0 = (s.peak as f64 - window).round().max(0.0) as usize;
            if let Some(k) = (t0 + 1..=s.upstroke).rev().find(|&k| dv[k] <= t) {
                spikes[j].threshold = k;
                continue;
            }
            let t1 = ((s.threshold as f64 + 2.0 * window).round() as usize).min(n - 1);
            let new_peak = argmax(&v, s.threshold, t1);
            let next = spikes.get(j + 1).map(|x| x.threshold);
            if secs(s.threshold, new_peak) < p.max_interval && next.is_none_or(|nx| new_peak < nx) {
                spikes[j].peak = new_peak;
            } else {
                drop[j] = true;
            }
        }
        let mut keep = drop.iter().map(|d| !d);
        spikes.retain(|_| keep.next().unwrap_or(true));
    }
    spikes
}

/// The time (s) of sample `k` at `rate_hz`, nudged up by at most one ulp so that
/// `floor(t · rate) == k` (the binning's sample of a spike time).
pub fn sample_time(k: usize, rate_hz: f64) -> f64 {
    let mut t = k as f64 / rate_hz;
    while (t * rate_hz).floor() < k as f64 {
        t = f64::from_bits(t.to_bits() + 1);
    }
    t
}

/// Spike (threshold) times in s of a voltage trace in V.
pub fn spike_times(v_volts: &[f64], rate_hz: f64, p: &SpikeParams) -> Vec<f64> {
    let mv: Vec<f64> = v_volts.iter().map(|x| x * 1e3).collect();
    detect_spikes(&mv, rate_hz, p)
        .iter()
        .map(|s| sample_time(s.threshold, rate_hz))
        .collect()
}

/// Detected spikes matched to true spike times within `tol` s (greedy, in time order, one to
/// one): (precision, recall, F1).
pub fn match_score(detected: &[f64], truth: &[f64], tol: f64) -> (f64, f64, f64) {
    let (mut i, mut j, mut hits) = (0, 0, 0usize);
    while i < detected.len() && j < truth.len() {
        let d = detected[i] - truth[j];
        if d.abs() <= tol {
            hits += 1;
            i += 1;
            j += 1;
        } else if d < 0.0 {
            i += 1;
        } else {
            j += 1;
        }
    }
    let precision = if detected.is_empty() {
        1.0
    } else {
        hits as f64 / detected.len() as f64
    };
    let recall = if truth.is_empty() {
        1.0
    } else {
        hits as f64 / truth.len() as f64
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    (precision, recall, f1)
}

/// The spikes of one sweep of a cell's NWB file, as `gfr spikes` reports them.
#[derive(Clone, Debug)]
pub struct SweepSpikes {
    /// The sweep's number in the file.
    pub sweep_number: u32,
    /// The sweep's stimulus name.
    pub stimulus_name: String,
    /// Spike times stored in the file (s from the sweep's start): NWB 1 files carry them;
    /// `None` for NWB 2.
    pub stored: Option<Vec<f64>>,
    /// Spike times detected from the membrane potential (s): NWB 2 always; NWB 1 too, for a
    /// check against the stored ones.
    pub detected: Vec<f64>,
    /// The sweep itself (stimulus in A, voltage in V, sampling rate), for a figure.
    pub sweep: super::binning::RawSweep,
}

/// Reads a cell's NWB file (version 1 or 2) and reports every sweep's spikes: stored and/or
/// detected with `params` (which replace `opts.spikes`). For NWB 1 files the detector runs on the recorded voltage, so its
/// times can be checked against the Allen pipeline's.
pub fn cell_spikes(
    path: &std::path::Path,
    opts: &super::nwb2::Nwb2Options,
    params: &SpikeParams,
) -> anyhow::Result<(Vec<SweepSpikes>, Vec<String>)> {
    // NWB 2 spikes are detected while reading: with these settings
    let opts = super::nwb2::Nwb2Options {
        spikes: params.clone(),
        ..opts.clone()
    };
    let rec = super::nwb2::read_recording(path, &opts)?;
    let sweeps = rec
        .sweeps
        .into_iter()
        .map(|(sweep_number, sweep)| {
            let (stored, detected) = if rec.spikes_stored {
                let times = spike_times(sweep.recorded_voltage(), sweep.sampling_rate, params);
                (Some(sweep.spike_times.clone()), times)
            } else {
                (None, sweep.spike_times.clone())
            };
            SweepSpikes {
                sweep_number,
                stimulus_name: sweep.stimulus_name.clone(),
                stored,
                detected,
                sweep,
            }
        })
        .collect();
    Ok((sweeps, rec.notes))
}
