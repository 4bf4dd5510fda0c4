//! The fused GFR scan: the recurrence of spec §1 over whole sequences, forward and backward,
//! as one Burn operation. The cell fitter and the network both run their neurons through it.
//!
//! - [`cpu`]: the host implementation (generic over `f64` and `f32`, split over the cores), also
//!   used by [`predict`];
//! - `cube` (crate-private): the CubeCL kernels for the wgpu backend;
//! - `op` (crate-private; [`GfrScanBackend`], [`ScanInputs`] and [`Recurrence`] are re-exported):
//!   the backend extension tying them into Burn, with a handwritten backward pass
//!   (backpropagation through time: the forward pass keeps r, u, I and ∂r/∂z per bin, the backward
//!   pass runs the adjoint recurrence in reverse).
//!
//! [`crate::neuron::GfrLayer::sequence`], plain tensor ops stepped bin by bin, is the
//! reference: tests compare values and gradients of the scan against it and against finite
//! differences.

pub mod cpu;
pub(crate) mod cube;
pub(crate) mod op;

use burn::tensor::{Int, Tensor};

use crate::neuron::{NeuronParams, RATE_HISTORY_SCALE};
pub use op::{GfrScanBackend, Precision, Recurrence, ScanInputs};

/// Neuron parameters in the shapes the scan takes, one row per neuron (tracked tensors keep
/// their gradients).
#[derive(Clone, Debug)]
pub struct ScanNeurons {
    /// α, `[N, n]`.
    pub alpha: Tensor<2>,
    /// Effective rate-history weights (h += β r, history scale folded in), `[N, n]`.
    pub beta: Tensor<2>,
    /// 1 − λ, `[n]`.
    pub decay: Tensor<1>,
    /// c, `[N, K]`.
    pub coeffs: Tensor<2>,
    /// b, σ (pA) and γ (ms⁻¹), `[N]`.
    pub threshold: Tensor<1>,
    /// σ (pA), `[N]`.
    pub max_current: Tensor<1>,
    /// γ (ms⁻¹), `[N]`.
    pub max_rate: Tensor<1>,
    /// The float type of the host scan (ndarray backend): `F64` by default (the fitter, whose
    /// numbers must not change); the network runs in `F32`.
    pub precision: Precision,
}

impl ScanNeurons {
    /// The same neurons, scanned on the host in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// The rows `rows` (an index per output neuron), e.g. each sweep's cell.
    pub fn select(&self, rows: Tensor<1, Int>) -> Self {
        Self {
            alpha: self.alpha.clone().select(0, rows.clone()),
            beta: self.beta.clone().select(0, rows.clone()),
            decay: self.decay.clone(),
            coeffs: self.coeffs.clone().select(0, rows.clone()),
            threshold: self.threshold.clone().select(0, rows.clone()),
            max_current: self.max_current.clone().select(0, rows.clone()),
            max_rate: self.max_rate.clone().select(0, rows),
            precision: self.precision,
        }
    }
}

/// Runs N neurons from rest over `current` (pA) `[B, T, N]`; returns their rates (ms⁻¹)
/// `[B, T, N]`. With `recurrent` W `[N, N]`, each bin's input is P_t + r_{t−1} W. `lengths`
/// `[B, N]` gives the valid bins of each sequence (default: all T); later bins keep rate 0,
/// get no gradient and cost nothing.
pub fn scan(
    neurons: &ScanNeurons,
    current: Tensor<3>,
    recurrent: Option<Tensor<2>>,
    lengths: Option<Tensor<2, Int>>,
) -> Tensor<3> {
    use burn::backend::Dispatch;
    let [batch, time, n] = current.dims();
    let lengths =
        lengths.unwrap_or_else(|| Tensor::full([batch, n], time as i64, &current.device()));
    let inputs = ScanInputs {
        current: current.into_dispatch(),
        alpha: neurons.alpha.clone().into_dispatch(),
        beta: neurons.beta.clone().into_dispatch(),
        decay: neurons.decay.clone().into_dispatch(),
        coeffs: neurons.coeffs.clone().into_dispatch(),
        threshold: neurons.threshold.clone().into_dispatch(),
        max_current: neurons.max_current.clone().into_dispatch(),
        max_rate: neurons.max_rate.clone().into_dispatch(),
        recurrent: match recurrent {
            None => Recurrence::None,
            Some(w) => Recurrence::Dense(w.into_dispatch()),
        },
        lengths: lengths.into_dispatch(),
        precision: neurons.precision,
    };
    Tensor::from_dispatch(<Dispatch as GfrScanBackend>::gfr_scan(inputs))
}

/// Binned sweeps padded to a common length `time`, row-major `[S, time]`.
#[derive(Clone, Debug, Default)]
pub struct SweepBatch {
    /// Injected current per bin (pA).
    pub current: Vec<f64>,
    /// Recorded firing rate per bin (ms⁻¹).
    pub target: Vec<f64>,
    /// Valid (unpadded) bins of each sweep.
    pub len: Vec<usize>,
    /// Which neuron each sweep runs through.
    pub neuron: Vec<usize>,
    /// Loss weight of each sweep (1 / number of sweeps of its cell in the group).
    pub weight: Vec<f64>,
    /// Padded length.
    pub time: usize,
}

impl SweepBatch {
    /// Packs sweeps `(current, rate)` of one neuron, padding with zeros; each sweep weighs
    /// 1/S so that the loss is the mean over sweeps.
    pub fn single_neuron(sweeps: &[(&[f64], &[f64])], neuron: usize) -> Self {
        let mut b = Self::default();
        b.push_cell(sweeps, neuron);
        b
    }

    /// Appends the sweeps of one more neuron (cell) to the batch.
    pub fn push_cell(&mut self, sweeps: &[(&[f64], &[f64])], neuron: usize) {
        let new_time = sweeps
            .iter()
            .map(|(c, _)| c.len())
            .max()
            .unwrap_or(0)
            .max(self.time);
        if new_time > self.time {
            let rows = self.len.len();
            for buf in [&mut self.current, &mut self.target] {
                let mut grown = vec![0.0; rows * new_time];
                for r in 0..rows {
                    grown[r * new_time..r * new_time + self.time]
                        .copy_from_slice(&buf[r * self.time..(r + 1) * self.time]);
                }
                *buf = grown;
            }
            self.time = new_time;
        }
        let w = 1.0 / sweeps.len().max(1) as f64;
        for (c, y) in sweeps {
            assert_eq!(
                c.len(),
                y.len(),
                "current and rate of a sweep differ in length"
            );
            let mut row = vec![0.0; self.time];
            row[..c.len()].copy_from_slice(c);
            self.current.extend_from_slice(&row);
            row.iter_mut().for_each(|x| *x = 0.0);
            row[..y.len()].copy_from_slice(y);
            self.target.extend_from_slice(&row);
            self.len.push(c.len());
            self.neuron.push(neuron);
            self.weight.push(w);
        }
    }

    /// Number of sweeps S.
    pub fn n_sweeps(&self) -> usize {
        self.len.len()
    }

    /// Valid bins in the whole batch.
    pub fn n_bins(&self) -> usize {
        self.len.iter().sum()
    }
}

/// Firing rate (ms⁻¹) of neuron `p` for a current trace (pA, one value per bin), on the host.
pub fn predict(p: &NeuronParams, current: &[f64]) -> Vec<f64> {
    let beta: Vec<f64> = p.beta.iter().map(|b| b * RATE_HISTORY_SCALE).collect();
    let decay: Vec<f64> = p.lambda.iter().map(|l| 1.0 - l).collect();
    let a = &p.activation;
    let nrn = cpu::HostNeurons {
        alpha: &p.alpha,
        beta: &beta,
        decay: &decay,
        coeffs: &a.poly_coeff,
        threshold: &[a.threshold],
        max_current: &[a.max_current],
        max_rate: &[a.max_firing_rate],
    };
    let dims = cpu::Dims {
        batch: 1,
        time: current.len(),
        neurons: 1,
    };
    cpu::forward(&nrn, current, dims, &[current.len()], None).rates
}

/// Poisson NLL Σ_t [f Δt − y Δt ln(f Δt + ε)] of one sweep's valid bins.
pub fn poisson_nll(rate: &[f64], target: &[f64], dt: f64, eps: f64) -> f64 {
    rate.iter()
        .zip(target)
        .map(|(&f, &y)| f * dt - y * dt * (f * dt + eps).ln())
        .sum()
}
