//! The built-in synthetic cells (`gfr simulate`): spiking neurons driven by an Allen-like
//! stimulus protocol, recorded as spike times and binned by the same code as real data.
//!
//! Two generators share the protocol:
//! * [`GroundTruth::Adex`] — adaptive exponential integrate-and-fire neurons (regular,
//!   adapting, fast-spiking, bursting, with jittered parameters) with intrinsic current noise,
//!   integrated at the sampling rate (20 kHz);
//! * [`GroundTruth::Gfr`] — a known GFR neuron whose rate drives Poisson spike counts per
//!   20 ms bin: the fitter should recover it (see the recovery test).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, Poisson};

use crate::data::binning::{PROCESSED_BIN_SIZES, RawSweep, bin_sweep, max_firing_rate, segment};
use crate::data::processed::CellRecording;
use crate::neuron::{ActivationParams, NeuronParams};

/// Sampling rate of simulated recordings (Hz).
pub const SAMPLING_RATE: f64 = 20_000.0;
/// Experiment range starts here (s); the test pulse lies before it.
const EXPERIMENT_START_S: f64 = 0.5;
/// Stimulus onset of every non-test sweep (s).
const ONSET_S: f64 = 1.0;
/// Bin size (ms) at which the GFR ground truth draws its spike counts.
pub const GFR_TRUTH_BIN_MS: u32 = 20;

/// Which model generates the spikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroundTruth {
    /// Adaptive exponential integrate-and-fire neurons with intrinsic noise.
    Adex,
    /// A known GFR neuron with Poisson spike counts.
    Gfr,
}

/// Firing types of the AdEx generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FiringType {
    /// Regular spiking, with little adaptation.
    Regular,
    /// Strongly adapting.
    Adapting,
    /// Fast-spiking (small capacitance, short refractory period, no adaptation).
    FastSpiking,
    /// Bursting (depolarised reset with strong spike-triggered adaptation).
    Bursting,
}

impl FiringType {
    /// Every firing type; cell `index` of a population is of type `ALL[index % 4]`.
    pub const ALL: [FiringType; 4] = [
        Self::Regular,
        Self::Adapting,
        Self::FastSpiking,
        Self::Bursting,
    ];

    /// The type's name in cell descriptions (`regular`, `adapting`, `fast-spiking`, `bursting`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Regular => "regular",
            Self::Adapting => "adapting",
            Self::FastSpiking => "fast-spiking",
            Self::Bursting => "bursting",
        }
    }
}

/// AdEx parameters (pF, nS, mV, ms, pA).
#[derive(Clone, Debug)]
pub struct AdexParams {
    /// Membrane capacitance C (pF).
    pub c: f64,
    /// Leak conductance g_L (nS).
    pub g_l: f64,
    /// Leak reversal potential E_L (mV); the neuron starts there.
    pub e_l: f64,
    /// Threshold potential V_T of the exponential term (mV).
    pub v_t: f64,
    /// Slope factor Δ_T (mV).
    pub delta_t: f64,
    /// Subthreshold adaptation conductance a (nS).
    pub a: f64,
    /// Adaptation time constant τ_w (ms).
    pub tau_w: f64,
    /// Spike-triggered adaptation increment b (pA).
    pub b: f64,
    /// Reset potential after a spike (mV).
    pub v_reset: f64,
    /// Spike cutoff (mV): reaching it is a spike.
    pub v_peak: f64,
    /// Refractory period (ms), during which the voltage is held at `v_reset`.
    pub t_ref: f64,
    /// Standard deviation (pA) of the intrinsic Ornstein–Uhlenbeck current noise.
    pub noise_std: f64,
    /// Its correlation time (ms).
    pub noise_tau: f64,
}

impl AdexParams {
    /// Typical parameters of a firing type (after Naud et al. 2008), jittered by `rng`.
    pub fn sample(kind: FiringType, rng: &mut StdRng) -> Self {
        let base = match kind {
            FiringType::Regular => {
                Self::base(200.0, 10.0, -70.0, -50.0, 2.0, 2.0, 30.0, 0.0, -58.0, 2.0)
            }
            FiringType::Adapting => {
                Self::base(200.0, 12.0, -70.0, -50.0, 2.0, 2.0, 200.0, 20.0, -58.0, 2.0)
            }
            FiringType::FastSpiking => {
                Self::base(100.0, 10.0, -65.0, -50.0, 0.8, 0.0, 10.0, 0.0, -60.0, 1.0)
            }
            FiringType::Bursting => {
                Self::base(200.0, 10.0, -58.0, -50.0, 2.0, 2.0, 120.0, 60.0, -46.0, 2.0)
            }
        };
        let jitter = Normal::new(0.0, 0.1).unwrap();
        let mut j = || f64::exp(jitter.sample(rng));
        Self {
            c: base.c * j(),
            g_l: base.g_l * j(),
            tau_w: base.tau_w * j(),
            b: base.b * j(),
            ..base
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn base(
        c: f64,
        g_l: f64,
        e_l: f64,
        v_t: f64,
        delta_t: f64,
        a: f64,
        tau_w: f64,
        b: f64,
        v_reset: f64,
        t_ref: f64,
    ) -> Self {
        Self {
            c,
            g_l,
            e_l,
            v_t,
            delta_t,
            a,
            tau_w,
            b,
            v_reset,
            v_peak: 0.0,
            t_ref,
            noise_std: 0.0,
            noise_tau: 3.0,
        }
    }

    /// Integrates the neuron (forward Euler at the sampling rate) for a current trace (A).
    /// Returns spike times (s) and the membrane voltage (V).
    pub fn run(&self, stimulus: &[f64], rate_hz: f64, rng: &mut StdRng) -> (Vec<f64>, Vec<f64>) {
        let dt = 1000.0 / rate_hz; // ms
        let normal = Normal::new(0.0, 1.0).unwrap();
        let noise_decay = (-dt / self.noise_tau).exp();
        let noise_kick = self.noise_std * (1.0 - noise_decay * noise_decay).sqrt();
        let (mut v, mut w, mut noise, mut refractory) = (self.e_l, 0.0, 0.0, 0.0);
        let mut spikes = Vec::new();
        let mut voltage = Vec::with_capacity(stimulus.len());
        for (k, &i_amp) in stimulus.iter().enumerate() {
            if self.noise_std > 0.0 {
                noise = noise * noise_decay + noise_kick * normal.sample(rng);
            }
            let i = i_amp * 1e12 + noise;
            if refractory > 0.0 {
                refractory -= dt;
                v = self.v_reset;
            } else {
                let exp_term =
                    self.g_l * self.delta_t * ((v - self.v_t) / self.delta_t).min(20.0).exp();
                v += dt / self.c * (-self.g_l * (v - self.e_l) + exp_term - w + i);
            }
            w += dt / self.tau_w * (self.a * (v - self.e_l) - w);
            if v >= self.v_peak {
                spikes.push((k as f64 + 0.5) / rate_hz);
                v = self.v_reset;
                w += self.b;
                refractory = self.t_ref;
            }
            voltage.push(v * 1e-3);
        }
        (spikes, voltage)
    }

    /// [`Self::run`] with an action-potential waveform drawn at each spike, for testing spike
    /// detection from the voltage: the AdEx voltage is reset as soon as it reaches `v_peak`,
    /// so the recorded trace would show no spike shape. From each spike sample on, within the
    /// refractory period, the voltage rises from `v_peak` to +30 mV in 0.2 ms, falls to
    /// 3 mV below `v_reset` in 0.6 ms and returns to `v_reset` by the end of the refractory
    /// period (at least 1 ms). Returns spike times (s, as [`Self::run`]) and the voltage (V).
    pub fn run_with_waveforms(
        &self,
        stimulus: &[f64],
        rate_hz: f64,
        rng: &mut StdRng,
    ) -> (Vec<f64>, Vec<f64>) {
        let (spikes, mut voltage) = self.run(stimulus, rate_hz, rng);
        let (rise, fall) = (0.2, 0.6);
        let recover = (self.t_ref.max(1.0) - rise - fall).max(0.2);
        let (peak, trough) = (30.0, self.v_reset - 3.0);
        for &t in &spikes {
            let k0 = (t * rate_hz).floor() as usize;
            let len = ((rise + fall + recover) * 1e-3 * rate_hz).ceil() as usize;
            for (j, v) in voltage.iter_mut().skip(k0).take(len).enumerate() {
                let tau = j as f64 * 1000.0 / rate_hz; // ms since the spike sample
                let mv = if tau < rise {
                    self.v_peak + (peak - self.v_peak) * tau / rise
                } else if tau < rise + fall {
                    peak + (trough - peak) * (tau - rise) / fall
                } else {
                    trough + (self.v_reset - trough) * ((tau - rise - fall) / recover).min(1.0)
                };
                *v = mv * 1e-3;
            }
        }
        (spikes, voltage)
    }

    /// Smallest 1 s step (pA) that makes the noiseless neuron spike, by bisection.
    pub fn rheobase(&self) -> f64 {
        let quiet = Self {
            noise_std: 0.0,
            ..self.clone()
        };
        let mut rng = StdRng::seed_from_u64(0);
        let n = (0.5 * SAMPLING_RATE) as usize;
        let spikes_at = |pa: f64, rng: &mut StdRng| {
            !quiet
                .run(&vec![pa * 1e-12; n], SAMPLING_RATE, rng)
                .0
                .is_empty()
        };
        let (mut lo, mut hi) = (0.0, 50.0);
        while !spikes_at(hi, &mut rng) && hi < 1e5 {
            lo = hi;
            hi *= 2.0;
        }
        for _ in 0..12 {
            let mid = 0.5 * (lo + hi);
            if spikes_at(mid, &mut rng) {
                hi = mid
            } else {
                lo = mid
            }
        }
        hi
    }
}

/// Pink-ish (1/f) noise with unit standard deviation: a sum of Ornstein–Uhlenbeck processes
/// with log-spaced correlation times (1 ms … 1 s) of equal variance.
fn pink_noise(n: usize, rate_hz: f64, rng: &mut StdRng) -> Vec<f64> {
    let normal = Normal::new(0.0, 1.0).unwrap();
    let taus = [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0];
    let dt = 1000.0 / rate_hz;
    let mut state: Vec<f64> = taus.iter().map(|_| normal.sample(rng)).collect();
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            for (x, tau) in state.iter_mut().zip(&taus) {
                let d = f64::exp(-dt / tau);
                *x = *x * d + (1.0 - d * d).sqrt() * normal.sample(rng);
            }
            state.iter().sum::<f64>()
        })
        .collect();
    let mean = out.iter().sum::<f64>() / n as f64;
    let std = (out.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
    out.iter_mut().for_each(|x| *x = (*x - mean) / std);
    out
}

fn samples(seconds: f64, rate_hz: f64) -> usize {
    (seconds * rate_hz).round() as usize
}

/// A sweep's stimulus (A) with the test pulse, plus its experiment range.
fn sweep_frame(name: &str, seconds: f64, rate_hz: f64) -> RawSweep {
    let n = samples(seconds, rate_hz);
    let mut stimulus = vec![0.0; n];
    // test pulse: −20 pA for 20 ms at 0.1 s
    stimulus[samples(0.1, rate_hz)..samples(0.12, rate_hz)]
        .iter_mut()
        .for_each(|x| *x = -20e-12);
    RawSweep {
        stimulus_name: name.to_string(),
        sampling_rate: rate_hz,
        stimulus,
        response: Vec::new(),
        spike_times: Vec::new(),
        experiment_range: Some((samples(EXPERIMENT_START_S, rate_hz), n)),
    }
}

/// The Allen-like protocol for a cell of rheobase `rheo` (pA): Long Square steps from below
/// rest to twice rheobase, a Ramp, and Noise 1 / Noise 2 (three repeats each). Stimuli only.
pub fn protocol(rheo: f64, rng: &mut StdRng) -> Vec<RawSweep> {
    protocol_at(rheo, SAMPLING_RATE, rng)
}

/// [`protocol`] sampled at `rate_hz`.
pub fn protocol_at(rheo: f64, rate_hz: f64, rng: &mut StdRng) -> Vec<RawSweep> {
    let samples = |seconds: f64| samples(seconds, rate_hz);
    let mut sweeps = Vec::new();
    let onset = samples(ONSET_S);
    for k in 0..12 {
        let amp = rheo * (-0.4 + 2.4 * k as f64 / 11.0);
        let mut s = sweep_frame("Long Square", 3.0, rate_hz);
        s.stimulus[onset..samples(ONSET_S + 1.0)]
            .iter_mut()
            .for_each(|x| *x = amp * 1e-12);
        sweeps.push(s);
    }
    // Ramp to 1.5 × rheobase over 6 s; the recording stops 0.5 s after the ramp ends.
    let mut ramp = sweep_frame("Ramp", ONSET_S + 7.0, rate_hz);
    let ramp_end = samples(ONSET_S + 6.0);
    for k in onset..ramp_end {
        ramp.stimulus[k] = 1.5 * rheo * 1e-12 * (k - onset + 1) as f64 / (ramp_end - onset) as f64;
    }
    sweeps.push(ramp);
    // Noise: three 3 s epochs at 0.75, 1 and 1.5 × rheobase, coefficient of variation 0.2
    for name in ["Noise 1", "Noise 2"] {
        let pink = pink_noise(samples(3.0), rate_hz, rng);
        let mut s = sweep_frame(name, ONSET_S + 14.0, rate_hz);
        for (e, level) in [0.75, 1.0, 1.5].into_iter().enumerate() {
            let start = samples(ONSET_S + 5.0 * e as f64);
            for (k, p) in pink.iter().enumerate() {
                s.stimulus[start + k] = level * rheo * (1.0 + 0.2 * p) * 1e-12;
            }
        }
        for _ in 0..3 {
            sweeps.push(s.clone());
        }
    }
    sweeps
}

/// One simulated cell: its recording binned at every processed bin size, and what made it.
pub struct SimulatedCell {
    /// The binned sweeps and γ, as preprocessing would write them.
    pub recording: CellRecording,
    /// What made it, e.g. `AdEx bursting, rheobase 120 pA`.
    pub description: String,
    /// The GFR neuron that generated the spikes (GFR ground truth only).
    pub truth: Option<NeuronParams>,
}

/// Simulates cells `0..cells` of a population drawn from `seed` (ids `first_id + index`) on
/// the cores, handing each to `each` as it is done (on the thread that simulated it); the
/// results come back in cell order.
pub fn simulate_cells<T: Send>(
    first_id: u64,
    cells: usize,
    seed: u64,
    truth: GroundTruth,
    each: impl Fn(SimulatedCell) -> T + Sync,
) -> Vec<T> {
    crate::parallel::map_on_cores((0..cells).collect(), |k| {
        each(simulate_cell(first_id + k as u64, k, seed, truth))
    })
}

/// `gfr simulate`: cells `first_id, first_id + 1, …` of the population drawn from `seed`,
/// each saved as processed data in `dir` as soon as it is simulated (then handed to `each`),
/// and their ids written to `DATA_DIR/cell_ids.csv`. A `cell_ids.csv` there that lists other
/// cells is replaced only with `overwrite` (else an [`crate::error::Invalid`] error, before any
/// work; errors name settings as `name` gives them). Returns the ids.
pub fn simulate_into(
    dir: &crate::data::DataDir,
    cells: usize,
    first_id: u64,
    seed: u64,
    truth: GroundTruth,
    overwrite: bool,
    name: &dyn Fn(&str) -> String,
    each: impl Fn(&SimulatedCell) + Sync,
) -> anyhow::Result<Vec<u64>> {
    check_cell_list(
        &dir.cell_ids(),
        cells,
        first_id,
        overwrite,
        "data_dir",
        name,
    )?;
    // (a folder that cannot be written is said before the cells are simulated)
    crate::fit::store::check_writable(&dir.0, &name("data_dir"))?;
    let ids = simulate_cells(first_id, cells, seed, truth, |cell| {
        cell.recording.save(dir)?;
        each(&cell);
        Ok(cell.recording.cell_id)
    })
    .into_iter()
    .collect::<anyhow::Result<Vec<u64>>>()?;
    crate::data::write_cell_ids(&dir.cell_ids(), &ids)?;
    Ok(ids)
}

/// At least one cell, and a cell list `ids_csv` that exists lists these cells unless
/// `overwrite` (errors name the folder's setting `dir_setting` as `name` gives it).
fn check_cell_list(
    ids_csv: &std::path::Path,
    cells: usize,
    first_id: u64,
    overwrite: bool,
    dir_setting: &str,
    name: &dyn Fn(&str) -> String,
) -> anyhow::Result<()> {
    if cells == 0 {
        return Err(crate::error::invalid(format!(
            "{} 0: must be at least 1",
            name("cells")
        )));
    }
    if first_id.checked_add(cells as u64 - 1).is_none() {
        return Err(crate::error::invalid(format!(
            "{} {first_id}: the ids of {cells} cells from it do not fit in 64 bits",
            name("first_id")
        )));
    }
    let new_ids: Vec<u64> = (0..cells as u64).map(|k| first_id + k).collect();
    if ids_csv.exists() && !overwrite {
        let old = crate::data::read_cell_ids(ids_csv).unwrap_or_default();
        if old != new_ids {
            return Err(crate::error::invalid(format!(
                "{} exists and lists other cells ({} ids, first {}); nothing was simulated. \
                 Use another {}, or {} to replace the list",
                ids_csv.display(),
                old.len(),
                old.first().map_or("—".to_string(), |x| x.to_string()),
                name(dir_setting),
                name("overwrite")
            )));
        }
    }
    Ok(())
}

/// Sampling rate of simulated NWB 2 recordings (Hz): the rate of the Allen patch-seq
/// recordings, at which the spike detector filters as IPFX does.
pub const NWB_SAMPLING_RATE: f64 = 50_000.0;

/// A simulated cell as an NWB 2 recording ([`simulate_nwb_cell`]).
pub struct SimulatedNwbCell {
    /// The cell's id (the file is `{id}.nwb`).
    pub cell_id: u64,
    /// What made it, e.g. `AdEx bursting, rheobase 120 pA`.
    pub description: String,
    /// The protocol's sweeps, numbered from 1, with the voltage of the neuron.
    pub sweeps: Vec<crate::data::nwb2_write::Nwb2Sweep>,
    /// The true spike times of each sweep (s from the sweep's start).
    pub spike_times: Vec<Vec<f64>>,
}

/// The Allen / IPFX stimulus code of a protocol sweep (the ontology [`crate::data::nwb2`]
/// reads back to the same name).
fn stimulus_code(name: &str) -> &'static str {
    match name {
        "Long Square" => "C1LSCOARSE150216_DA_0",
        "Ramp" => "C1RP25PR1S141203_DA_0",
        "Noise 1" => "C1NSSEED_1150216_DA_0",
        _ => "C1NSSEED_2150216_DA_0",
    }
}

/// Simulates cell `index` of an AdEx population drawn from `seed` as an NWB 2 recording at
/// [`NWB_SAMPLING_RATE`]: the protocol of [`protocol`], the membrane potential with spike
/// waveforms and 0.1 mV recording noise, NaN after the Ramp's recording stops; deterministic.
pub fn simulate_nwb_cell(cell_id: u64, index: usize, seed: u64) -> SimulatedNwbCell {
    let rate = NWB_SAMPLING_RATE;
    let mut rng = cell_rng(index, seed);
    let (p, description, rheo) = adex_cell(index, &mut rng);
    let normal = Normal::new(0.0, 0.1).unwrap();
    let (mut sweeps, mut spike_times) = (Vec::new(), Vec::new());
    for (k, s) in protocol_at(rheo, rate, &mut rng).into_iter().enumerate() {
        let (mut spikes, v) = p.run_with_waveforms(&s.stimulus, rate, &mut rng);
        let mut voltage_mv: Vec<f32> = v
            .iter()
            .map(|x| (x * 1e3 + normal.sample(&mut rng)) as f32)
            .collect();
        if s.stimulus_name == "Ramp" {
            let stop = samples(RAMP_RECORDING_END_S, rate).min(voltage_mv.len());
            voltage_mv[stop..].iter_mut().for_each(|x| *x = f32::NAN);
            spikes.retain(|&t| t < stop as f64 / rate);
        }
        sweeps.push(crate::data::nwb2_write::Nwb2Sweep {
            number: k as u32 + 1,
            stimulus_code: stimulus_code(&s.stimulus_name).to_string(),
            current_pa: s.stimulus.iter().map(|a| (a * 1e12) as f32).collect(),
            voltage_mv,
        });
        spike_times.push(spikes);
    }
    SimulatedNwbCell {
        cell_id,
        description,
        sweeps,
        spike_times,
    }
}

/// `gfr simulate --nwb-dir`: cells `first_id, first_id + 1, …` of the AdEx population drawn
/// from `seed`, each written as `nwb_dir/{id}.nwb` (NWB 2, [`simulate_nwb_cell`]) as soon as it
/// is simulated (then handed to `each`), and their ids to `nwb_dir/cell_ids.csv`, which
/// `gfr preprocess --nwb-dir` takes. The checks of [`simulate_into`] apply. Returns the ids.
#[allow(clippy::too_many_arguments)]
pub fn simulate_nwb_into(
    nwb_dir: &std::path::Path,
    cells: usize,
    first_id: u64,
    seed: u64,
    overwrite: bool,
    name: &dyn Fn(&str) -> String,
    each: impl Fn(&SimulatedNwbCell) + Sync,
) -> anyhow::Result<Vec<u64>> {
    let ids_csv = nwb_dir.join("cell_ids.csv");
    check_cell_list(&ids_csv, cells, first_id, overwrite, "nwb_dir", name)?;
    crate::fit::store::check_writable(nwb_dir, &name("nwb_dir"))?;
    let ids = crate::parallel::map_on_cores((0..cells).collect(), |k| {
        let cell = simulate_nwb_cell(first_id + k as u64, k, seed);
        let path = nwb_dir.join(format!("{}.nwb", cell.cell_id));
        crate::data::nwb2_write::write_nwb2(
            &path,
            &cell.cell_id.to_string(),
            &cell.sweeps,
            NWB_SAMPLING_RATE,
        )?;
        each(&cell);
        Ok(cell.cell_id)
    })
    .into_iter()
    .collect::<anyhow::Result<Vec<u64>>>()?;
    crate::data::write_cell_ids(&ids_csv, &ids)?;
    Ok(ids)
}

/// Simulates cell `index` of a population drawn from `seed`; deterministic.
pub fn simulate_cell(cell_id: u64, index: usize, seed: u64, truth: GroundTruth) -> SimulatedCell {
    let mut rng = cell_rng(index, seed);
    let (raw, sweeps, description, truth_params) = match truth {
        GroundTruth::Adex => {
            let (p, description, rheo) = adex_cell(index, &mut rng);
            let mut sweeps = protocol(rheo, &mut rng);
            let mut binned = Vec::with_capacity(sweeps.len());
            for s in &mut sweeps {
                let (spikes, v) = p.run(&s.stimulus, SAMPLING_RATE, &mut rng);
                s.spike_times = spikes;
                s.response = v;
                cut_ramp_recording(std::slice::from_mut(s));
                binned.push(bin_sweep(s, &PROCESSED_BIN_SIZES));
                // the traces are binned: keep only the spike times (a cell's traces are tens
                // of MB)
                (s.stimulus, s.response) = (Vec::new(), Vec::new());
            }
            (sweeps, binned, description, None)
        }
        GroundTruth::Gfr => {
            let neuron = gfr_truth(&mut rng);
            let rheo = neuron.activation.threshold.max(20.0);
            let mut sweeps = protocol(rheo, &mut rng);
            for s in &mut sweeps {
                s.response = vec![-0.07; s.stimulus.len()];
                s.spike_times = gfr_spikes(&neuron, s, &mut rng);
            }
            cut_ramp_recording(&mut sweeps);
            let binned = sweeps
                .iter()
                .map(|s| bin_sweep(s, &PROCESSED_BIN_SIZES))
                .collect();
            (
                sweeps,
                binned,
                format!("GFR ground truth, threshold {rheo:.0} pA"),
                Some(neuron),
            )
        }
    };
    SimulatedCell {
        recording: CellRecording {
            cell_id,
            sweeps,
            max_firing_rate: max_firing_rate(&raw),
        },
        description,
        truth: truth_params,
    }
}

/// The Ramp's voltage recording stops 0.5 s after the ramp's last sample.
fn cut_ramp_recording(sweeps: &mut [RawSweep]) {
    for s in sweeps.iter_mut().filter(|s| s.stimulus_name == "Ramp") {
        let stop = samples(RAMP_RECORDING_END_S, s.sampling_rate).min(s.response.len());
        s.response[stop..].iter_mut().for_each(|v| *v = 0.0);
        s.spike_times.retain(|&t| t < RAMP_RECORDING_END_S);
    }
}

/// Where a Ramp's voltage recording stops (s): 0.5 s after the ramp's last sample.
const RAMP_RECORDING_END_S: f64 = ONSET_S + 6.5;

/// The random stream of cell `index` of the population drawn from `seed`.
fn cell_rng(index: usize, seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(index as u64))
}

/// The AdEx neuron of cell `index` (its firing type cycles through the four), with intrinsic
/// noise of 0.15 × its rheobase; its description and rheobase (pA).
fn adex_cell(index: usize, rng: &mut StdRng) -> (AdexParams, String, f64) {
    let kind = FiringType::ALL[index % 4];
    let mut p = AdexParams::sample(kind, rng);
    let rheo = p.rheobase();
    p.noise_std = 0.15 * rheo;
    (
        p,
        format!("AdEx {}, rheobase {rheo:.0} pA", kind.name()),
        rheo,
    )
}

/// A plausible GFR neuron at 20 ms bins: fast input filters with a slow rate adaptation.
fn gfr_truth(rng: &mut StdRng) -> NeuronParams {
    let threshold = rng.random_range(60.0..160.0);
    let activation = ActivationParams {
        max_current: 3.0 * threshold,
        max_firing_rate: rng.random_range(0.12..0.2),
        poly_coeff: vec![rng.random_range(0.0..0.1), rng.random_range(1.4..2.0)],
        threshold,
        bin_size: GFR_TRUTH_BIN_MS,
    };
    let mut p = NeuronParams::initial(GFR_TRUTH_BIN_MS, activation);
    let fast = rng.random_range(0.4..0.8);
    p.alpha = vec![
        8.0 * fast,
        8.0 * (1.0 - fast) * 0.5,
        8.0 * (1.0 - fast) * 0.25,
        0.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ];
    p.beta[4] = -rng.random_range(0.05..0.15); // τ = 200 ms adaptation
    p.beta[5] = -rng.random_range(0.0..0.05); // τ = 500 ms
    p
}

/// Spike times of a GFR neuron on a sweep: the rate per 20 ms bin of the binned stimulus
/// draws a Poisson count, whose spikes are spread evenly through the bin.
fn gfr_spikes(p: &NeuronParams, s: &RawSweep, rng: &mut StdRng) -> Vec<f64> {
    let Some((first, _)) = segment(s) else {
        return Vec::new();
    };
    let binned = bin_sweep(s, &[p.bin_size]);
    let rates = p.predict(&binned.current[&p.bin_size]);
    let m = (p.bin_size as f64 * 0.001 * s.sampling_rate).floor() as usize;
    let mut spikes = Vec::new();
    for (j, f) in rates.iter().enumerate() {
        let mean = f * p.bin_size as f64;
        let count = if mean > 0.0 {
            Poisson::new(mean).unwrap().sample(rng) as usize
        } else {
            0
        };
        for i in 0..count {
            let sample = first + j * m + ((i as f64 + 0.5) * m as f64 / count as f64) as usize;
            spikes.push((sample as f64 + 0.5) / s.sampling_rate);
        }
    }
    spikes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulation_is_deterministic_and_repeats_differ() {
        let a = simulate_cell(1, 1, 7, GroundTruth::Adex);
        let b = simulate_cell(1, 1, 7, GroundTruth::Adex);
        assert_eq!(a.recording.sweeps, b.recording.sweeps);
        let noise: Vec<_> = a.recording.sweeps_named("Noise 1").collect();
        assert_eq!(noise.len(), 3);
        assert_eq!(
            noise[0].current[&20], noise[1].current[&20],
            "repeats share the stimulus"
        );
        assert_ne!(
            noise[0].firing_rate[&20], noise[1].firing_rate[&20],
            "intrinsic noise"
        );
        let spikes: f64 = noise[0].firing_rate[&20].iter().sum();
        assert!(spikes > 0.25, "the cell fires during noise ({spikes})");
        assert!(a.recording.max_firing_rate > 0.0 && a.recording.max_firing_rate <= 1.0);
    }

    #[test]
    fn long_squares_span_rest_to_twice_rheobase() {
        let c = simulate_cell(2, 0, 3, GroundTruth::Adex);
        let firsts: Vec<f64> = c
            .recording
            .sweeps_named("Long Square")
            .map(|s| s.current[&20][1])
            .collect();
        assert_eq!(firsts.len(), 12);
        assert!(firsts[0] < 0.0);
        let rates: Vec<f64> = c
            .recording
            .sweeps_named("Long Square")
            .map(|s| s.firing_rate[&100][..10].iter().sum())
            .collect();
        assert_eq!(rates[0], 0.0, "no spikes below rest");
        assert!(rates[11] > 0.0, "spikes at twice rheobase");
    }
}
