//! Binning one sweep into current / firing-rate traces (spec §2). Real recordings
//! (`gfr preprocess`) and simulated cells (`gfr simulate`) both go through [`bin_sweep`].

use std::collections::BTreeMap;

/// Bin sizes (ms) every processed sweep carries.
pub const PROCESSED_BIN_SIZES: [u32; 4] = [10, 20, 50, 100];

/// One recorded sweep as the recording gives it.
#[derive(Clone, Debug, Default)]
pub struct RawSweep {
    /// Allen stimulus name: "Long Square", "Ramp", "Noise 1", "Noise 2", "Test", …
    pub stimulus_name: String,
    /// Samples per second (Hz).
    pub sampling_rate: f64,
    /// Injected current per sample (A).
    pub stimulus: Vec<f64>,
    /// Membrane voltage per sample (V); only whether a sample is zero matters here.
    pub response: Vec<f64>,
    /// Spike times (s from the start of the sweep).
    pub spike_times: Vec<f64>,
    /// Experiment index range (first, last) as the Allen SDK reports it, without the test
    /// pulse; `None` means the whole sweep.
    pub experiment_range: Option<(usize, usize)>,
}

impl RawSweep {
    /// The voltage up to its last recorded sample: trailing zeros and non-finite samples count
    /// as not recorded (IPFX's rule).
    pub fn recorded_voltage(&self) -> &[f64] {
        let end = self
            .response
            .iter()
            .rposition(|&v| v != 0.0 && v.is_finite())
            .map_or(0, |k| k + 1);
        &self.response[..end]
    }
}

/// One sweep binned at every processed bin size.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedSweep {
    /// Stimulus name of the sweep ("Long Square", "Ramp", "Noise 1", …).
    pub stimulus_name: String,
    /// Hz.
    pub sampling_rate: f64,
    /// Bin size (ms) → mean current per bin (pA).
    pub current: BTreeMap<u32, Vec<f64>>,
    /// Bin size (ms) → spike count per bin / bin length (ms⁻¹).
    pub firing_rate: BTreeMap<u32, Vec<f64>>,
}

impl ProcessedSweep {
    /// (current, firing rate) at one bin size.
    pub fn traces(&self, bin_size: u32) -> Option<(&[f64], &[f64])> {
        Some((
            self.current.get(&bin_size)?,
            self.firing_rate.get(&bin_size)?,
        ))
    }
}

/// The sample range `[first, end)` of a sweep that is binned (spec §2, following the
/// published preprocessing): the experiment range `(start, last)` is used as the half-open
/// `[start, last)`; a Ramp ends at its last non-zero voltage sample and at its largest current
/// (when that lies past `start`); except for "Test" sweeps, the segment begins at the sample
/// just before the first change of the current (the stimulus onset).
pub fn segment(raw: &RawSweep) -> Option<(usize, usize)> {
    let (start, end) = experiment_window(raw)?;
    let first = if raw.stimulus_name == "Test" {
        start
    } else {
        onset_in(raw, start, end).unwrap_or(start)
    };
    Some((first, end))
}

/// The stimulus onset (the sample just before the current first changes) within the sweep's
/// binned window; `None` when the current never changes there (nothing to align the bins to).
pub fn onset(raw: &RawSweep) -> Option<usize> {
    let (start, end) = experiment_window(raw)?;
    onset_in(raw, start, end)
}

fn onset_in(raw: &RawSweep, start: usize, end: usize) -> Option<usize> {
    (start..end - 1).find(|&k| raw.stimulus[k + 1] != raw.stimulus[k])
}

/// `[start, end)` before the onset is looked for (see [`segment`]).
fn experiment_window(raw: &RawSweep) -> Option<(usize, usize)> {
    let n = raw.stimulus.len();
    if n == 0 {
        return None;
    }
    let (start, mut end) = raw.experiment_range.unwrap_or((0, n));
    end = end.min(n);
    if raw.stimulus_name == "Ramp" {
        if let Some(last_v) = raw.response.iter().rposition(|&v| v != 0.0) {
            end = end.min(last_v);
        }
        let argmax = raw
            .stimulus
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (k, &x)| {
                if x > best.1 { (k, x) } else { best }
            })
            .0;
        if argmax > start {
            end = end.min(argmax);
        }
    }
    if start >= end {
        return None;
    }
    Some((start, end))
}

/// Bins a sweep at every size in `bin_sizes` (ms): mean current per bin (pA) and spike
/// count per bin divided by the bin length in ms. The remainder past the last whole bin is
/// dropped.
pub fn bin_sweep(raw: &RawSweep, bin_sizes: &[u32]) -> ProcessedSweep {
    let r = raw.sampling_rate;
    let mut spikes = vec![false; raw.stimulus.len()];
    for &t in &raw.spike_times {
        let k = (t * r).floor();
        if k >= 0.0 && (k as usize) < spikes.len() {
            spikes[k as usize] = true;
        }
    }
    let mut current = BTreeMap::new();
    let mut firing_rate = BTreeMap::new();
    let seg = segment(raw);
    for &bin in bin_sizes {
        let m = (bin as f64 * 0.001 * r).floor() as usize;
        let (mut cur, mut rate) = (Vec::new(), Vec::new());
        if let (Some((first, end)), true) = (seg, m > 0) {
            let n_bins = (end - first) / m;
            for j in 0..n_bins {
                let lo = first + j * m;
                let sum: f64 = raw.stimulus[lo..lo + m].iter().sum();
                cur.push(sum * 1e12 / m as f64);
                let count = spikes[lo..lo + m].iter().filter(|&&s| s).count();
                rate.push(count as f64 / bin as f64);
            }
        }
        current.insert(bin, cur);
        firing_rate.insert(bin, rate);
    }
    ProcessedSweep {
        stimulus_name: raw.stimulus_name.clone(),
        sampling_rate: r,
        current,
        firing_rate,
    }
}

/// Maximum firing rate γ (ms⁻¹): the largest 1/ISI over all sweeps; 0 without two spikes.
pub fn max_firing_rate<'a>(sweeps: impl IntoIterator<Item = &'a RawSweep>) -> f64 {
    sweeps
        .into_iter()
        .flat_map(|s| s.spike_times.windows(2).map(|w| w[1] - w[0]))
        .filter(|&isi| isi > 0.0)
        .map(|isi| 1.0 / (isi * 1000.0))
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_sweep() -> RawSweep {
        // 10 kHz; test pulse at samples 100..200, experiment range 1000..=29_999,
        // a 100 pA step from sample 10_000 to 19_999.
        let r = 10_000.0;
        let mut stim = vec![0.0; 30_000];
        stim[100..200].iter_mut().for_each(|x| *x = 50e-12);
        stim[10_000..20_000].iter_mut().for_each(|x| *x = 100e-12);
        RawSweep {
            stimulus_name: "Long Square".into(),
            sampling_rate: r,
            stimulus: stim,
            response: vec![-0.07; 30_000],
            spike_times: vec![1.0005, 1.0105, 1.0119, 1.5, 2.99995],
            experiment_range: Some((1000, 29_999)),
        }
    }

    #[test]
    fn bins_from_the_onset_and_drops_the_remainder() {
        let p = bin_sweep(&step_sweep(), &PROCESSED_BIN_SIZES);
        // segment [9_999, 29_999): one baseline sample, then the step; 20_000 samples
        assert_eq!(segment(&step_sweep()), Some((9_999, 29_999)));
        assert_eq!(p.current[&20].len(), 100);
        assert_eq!(p.current[&10].len(), 200);
        // 200 samples per 20 ms bin; the first holds one baseline sample
        assert!((p.current[&20][0] - 100.0 * 199.0 / 200.0).abs() < 1e-9);
        assert!((p.current[&20][49] - 100.0).abs() < 1e-9);
        assert!((p.current[&20][50] - 0.5).abs() < 1e-9);
        assert!(p.current[&20][51].abs() < 1e-9);
        // bins start at 0.9999 s: spikes at 1.0005 (bin 0), 1.0105 and 1.0119 (bin 1), 1.5 s
        // (bin 50); 2.9999 s is sample 29_999, outside the half-open range
        assert_eq!(p.firing_rate[&10][0], 0.1);
        assert_eq!(p.firing_rate[&10][1], 0.2);
        assert_eq!(p.firing_rate[&10][50], 0.1);
        assert_eq!(p.firing_rate[&10][199], 0.0);
        assert_eq!(p.firing_rate[&20][0], 3.0 / 20.0);
    }

    #[test]
    fn ramp_is_cut_at_the_largest_current_and_last_voltage() {
        let mut s = step_sweep();
        s.stimulus_name = "Ramp".into();
        s.stimulus = (0..30_000)
            .map(|k| {
                if k >= 5000 {
                    (k - 5000) as f64 * 1e-15
                } else {
                    0.0
                }
            })
            .collect();
        s.stimulus[25_000..].iter_mut().for_each(|x| *x = 0.0);
        s.response[22_000..].iter_mut().for_each(|x| *x = 0.0);
        // the ramp starts changing after sample 5000; end: last non-zero voltage (21_999)
        assert_eq!(segment(&s), Some((5000, 21_999)));
        s.response = vec![-0.07; 30_000];
        // end: the largest current (sample 24_999)
        assert_eq!(segment(&s), Some((5000, 24_999)));
    }

    #[test]
    fn max_rate_is_the_inverse_of_the_shortest_isi() {
        let s = step_sweep();
        let g = max_firing_rate([&s]);
        assert!((g - 1.0 / 1.4).abs() < 1e-6, "{g}");
    }
}
