//! Fitting the activation g to one point per Long Square sweep (spec §3, first stage).

use crate::fit::CellRng;
use anyhow::{Result, bail};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use rand_distr::{Distribution, Normal};

use crate::data::CellRecording;
use crate::neuron::{ActivationParams, PolynomialActivation, masked_poisson_nll};

/// Adam learning rate of the activation fit (the published value; config `activation_lr`).
pub const ACTIVATION_LR: f64 = 0.05;
/// A point "fires" when its rate exceeds this (ms⁻¹): it places the initial threshold b and
/// decides whether the first bins carry f-I information (the 100 ms fallback).
pub const FIRING_THRESHOLD: f64 = 0.01;
/// Activation bin size (ms) used when no Long Square fires within the requested first bin.
pub const FALLBACK_ACTIVATION_BIN: u32 = 100;

/// The activation-fit data: first-bin current (pA) and rate (ms⁻¹) of each Long Square sweep.
#[derive(Clone, Debug)]
pub struct ActivationData {
    /// First-bin mean current of each Long Square sweep (pA).
    pub current: Vec<f64>,
    /// First-bin firing rate of each Long Square sweep (ms⁻¹).
    pub rate: Vec<f64>,
    /// Activation bin size Δt' (ms).
    pub bin_size: u32,
}

impl ActivationData {
    /// One point per Long Square sweep at activation bin size `bin_size` (ms); an error if the cell
    /// has none.
    pub fn from_cell(cell: &CellRecording, bin_size: u32) -> Result<Self> {
        let (mut current, mut rate) = (Vec::new(), Vec::new());
        for s in cell.sweeps_named("Long Square") {
            if let Some((c, f)) = s.traces(bin_size)
                && !c.is_empty()
            {
                current.push(c[0]);
                rate.push(f[0]);
            }
        }
        if current.is_empty() {
            bail!("no Long Square sweep with data at the activation bin size {bin_size} ms");
        }
        Ok(Self {
            current,
            rate,
            bin_size,
        })
    }

    /// σ: the largest |I| of the points (1 when all are zero).
    pub fn max_current(&self) -> f64 {
        let m = self.current.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        if m > 0.0 { m } else { 1.0 }
    }

    /// Σ_points [g(x) Δt' − y Δt' ln(g(x) Δt' + ε)].
    pub fn loss(&self, g: &ActivationParams, eps: f64) -> f64 {
        let dt = self.bin_size as f64;
        let rates: Vec<f64> = self.current.iter().map(|&x| g.eval(x)).collect();
        crate::scan::poisson_nll(&rates, &self.rate, dt, eps)
    }
}

/// A restart's starting point, from the data: b = x of the point just before the first point
/// with y > 0.01 (that point itself when it is the first; 0 when no point fires);
/// c_1 = |(y_max − y_b)/(x_max − x_b)| · σ at the point of largest y; other c_k ~ N(0, 0.1²).
pub fn initial_activation(
    data: &ActivationData,
    degree: usize,
    max_rate: f64,
    rng: &mut CellRng,
) -> ActivationParams {
    let mut pts: Vec<(f64, f64)> = data
        .current
        .iter()
        .copied()
        .zip(data.rate.iter().copied())
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let sigma = data.max_current();
    let (x1, y1) = match pts.iter().position(|p| p.1 > FIRING_THRESHOLD) {
        Some(0) => pts[0],
        Some(i) => pts[i - 1],
        None => (0.0, 0.0),
    };
    let (x2, y2) = pts
        .iter()
        .copied()
        .fold((0.0, f64::NEG_INFINITY), |best, p| {
            if p.1 > best.1 { p } else { best }
        });
    let normal = Normal::new(0.0, 0.1).unwrap();
    let mut coeffs: Vec<f64> = (0..=degree).map(|_| normal.sample(rng)).collect();
    if degree >= 1 {
        let slope = if x2 != x1 {
            ((y2 - y1) / (x2 - x1) * sigma).abs()
        } else {
            1.0
        };
        coeffs[1] = if slope.is_finite() && slope > 0.0 {
            slope
        } else {
            1.0
        };
    }
    ActivationParams {
        max_current: sigma,
        max_firing_rate: max_rate,
        poly_coeff: coeffs,
        threshold: x1,
        bin_size: data.bin_size,
    }
}

/// Fits the activation: `repeats` restarts of `epochs` full-batch Adam steps (lr 0.05) on the
/// Poisson loss through Burn's autodiff on `device`; keeps the lowest final loss.
#[allow(clippy::too_many_arguments)]
pub fn fit_activation(
    data: &ActivationData,
    degree: usize,
    max_rate: f64,
    epochs: usize,
    repeats: usize,
    eps: f64,
    device: &Device,
    rng: &mut CellRng,
) -> Result<(ActivationParams, f64)> {
    fit_activations(
        &mut [(data, max_rate, rng)],
        degree,
        epochs,
        repeats,
        ACTIVATION_LR,
        eps,
        device,
        &|| false,
    )
    .remove(0)
}

/// How often (in epochs) [`fit_activations`] asks whether to stop.
pub const STOP_CHECK_EPOCHS: usize = 50;

/// [`fit_activation`] for several cells at once, each given as (data, γ, its random stream).
/// Every restart of every cell is one activation row trained in one model; Adam acts on each
/// element separately and padded points are masked, so each restart is the run it would be
/// alone. `stop` is asked every `STOP_CHECK_EPOCHS` epochs; when it says stop, the fit
/// ends there and every result is an [`crate::error::Interrupted`] error.
#[allow(clippy::too_many_arguments)]
pub fn fit_activations(
    cells: &mut [(&ActivationData, f64, &mut CellRng)],
    degree: usize,
    epochs: usize,
    repeats: usize,
    lr: f64,
    eps: f64,
    device: &Device,
    stop: &dyn Fn() -> bool,
) -> Vec<Result<(ActivationParams, f64)>> {
    let ad = device.clone().autodiff();
    let repeats = repeats.max(1);
    let points = cells.iter().map(|c| c.0.current.len()).max().unwrap_or(0);
    let cols = cells.len() * repeats;
    // `[points, cols]`: column c · repeats + k is restart k of cell c
    let (mut x, mut y, mut mask) = (
        vec![0.0f32; points * cols],
        vec![0.0f32; points * cols],
        vec![0.0f32; points * cols],
    );
    let mut dt = vec![0.0f32; cols];
    let mut inits = Vec::with_capacity(cols);
    for (c, (data, max_rate, rng)) in cells.iter_mut().enumerate() {
        for k in 0..repeats {
            let col = c * repeats + k;
            for (p, (&xi, &yi)) in data.current.iter().zip(&data.rate).enumerate() {
                x[p * cols + col] = xi as f32;
                y[p * cols + col] = yi as f32;
                mask[p * cols + col] = 1.0;
            }
            dt[col] = data.bin_size as f32;
            inits.push(initial_activation(data, degree, *max_rate, rng));
        }
    }
    if cols == 0 {
        return Vec::new();
    }
    let grid = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [points, cols]), &ad);
    let (x, y, mask) = (grid(x), grid(y), grid(mask));
    let dt = Tensor::<2>::from_data(TensorData::new(dt, [1, cols]), &ad);
    let mut g = PolynomialActivation::new(&inits.iter().collect::<Vec<_>>(), &ad);
    let mut optim = crate::optim::adam();
    for epoch in 0..epochs {
        if epoch % STOP_CHECK_EPOCHS == 0 && stop() {
            return cells
                .iter()
                .map(|_| Err(anyhow::Error::new(crate::error::Interrupted)))
                .collect();
        }
        // on a GPU one fused operation (`fit::fused`), on the CPU Burn's operations
        let loss =
            super::fused::activation_loss(&g, [&x, &y, &mask], &dt, eps).unwrap_or_else(|| {
                let mu = g.forward(x.clone()) * dt.clone();
                masked_poisson_nll(mu, y.clone() * dt.clone(), mask.clone(), eps).sum()
            });
        let grads = GradientsParams::from_grads(loss.backward(), &g);
        g = optim.step(lr, g, grads);
    }
    let fitted = g.to_params(0);
    cells
        .iter()
        .enumerate()
        .map(|(c, (data, _, _))| {
            let mut best: Option<(ActivationParams, f64)> = None;
            for mut candidate in fitted[c * repeats..(c + 1) * repeats].iter().cloned() {
                candidate.bin_size = data.bin_size;
                let loss = data.loss(&candidate, eps);
                if loss.is_finite()
                    && candidate.poly_coeff.iter().all(|c| c.is_finite())
                    && candidate.threshold.is_finite()
                    && best.as_ref().is_none_or(|b| loss < b.1)
                {
                    best = Some((candidate, loss));
                }
            }
            best.ok_or_else(|| {
                anyhow::anyhow!("activation fit diverged (non-finite loss) in every restart")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn data() -> ActivationData {
        // a rectified-linear f-I curve: 0 below 100 pA, 0.001/pA above
        let current: Vec<f64> = (0..12).map(|k| -50.0 + 25.0 * k as f64).collect();
        let rate = current
            .iter()
            .map(|&x: &f64| (0.001 * (x - 100.0)).max(0.0))
            .collect();
        ActivationData {
            current,
            rate,
            bin_size: 20,
        }
    }

    #[test]
    fn initial_threshold_is_the_point_before_firing_starts() {
        let d = data();
        let mut rng = CellRng::seed_from_u64(0);
        let g = initial_activation(&d, 1, 0.5, &mut rng);
        // first y > 0.01 is x = 125 (y = 0.025); the point before it is x = 100
        assert_eq!(g.threshold, 100.0);
        assert_eq!(g.max_current, 225.0);
        let slope = (0.125 - 0.0) / (225.0 - 100.0) * 225.0;
        assert!((g.poly_coeff[1] - slope).abs() < 1e-12);
    }

    #[test]
    fn fitting_lowers_the_loss_and_finds_the_threshold() {
        let d = data();
        let mut rng = CellRng::seed_from_u64(1);
        let init = initial_activation(&d, 1, 0.5, &mut CellRng::seed_from_u64(1));
        let (g, loss) =
            fit_activation(&d, 1, 0.5, 300, 2, 1e-8, &crate::device::cpu(), &mut rng).unwrap();
        assert!(loss < d.loss(&init, 1e-8), "{loss}");
        assert!(
            g.eval(0.0) < 0.01 && (g.eval(200.0) - 0.1).abs() < 0.03,
            "{g:?}"
        );
    }

    /// The fused activation loss on wgpu (`fit::fused`) against Burn's operations on the same
    /// device: the loss and the gradients of c and b, for degree 1 (Burn's affine form) and 3,
    /// rows of different lengths (padding) and bin sizes, rows below threshold everywhere.
    /// Skipped, saying so, without a wgpu adapter.
    #[test]
    fn the_fused_activation_loss_matches_burns_operations() {
        use burn::module::Module;
        use rand::Rng;
        if !crate::device::wgpu_available() {
            eprintln!(
                "SKIPPED the_fused_activation_loss_matches_burns_operations: no wgpu adapter"
            );
            return;
        }
        let device = crate::device::Backend::Wgpu.device().unwrap().autodiff();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for terms in [2usize, 4] {
            let (points, cols) = (9, 7);
            let (mut x, mut y, mut mask) = (
                vec![0f32; points * cols],
                vec![0f32; points * cols],
                vec![0f32; points * cols],
            );
            let mut rows = Vec::new();
            let mut dt = Vec::new();
            for c in 0..cols {
                let valid = 3 + c % (points - 2);
                for p in 0..valid {
                    x[p * cols + c] = rng.random_range(-50.0..400.0);
                    y[p * cols + c] = rng.random_range(0.0..0.1);
                    mask[p * cols + c] = 1.0;
                }
                dt.push([10f32, 20.0, 50.0][c % 3]);
                rows.push(ActivationParams {
                    max_current: rng.random_range(80.0..250.0),
                    max_firing_rate: rng.random_range(0.05..0.4),
                    poly_coeff: (0..terms).map(|_| rng.random_range(0.2..1.2)).collect(),
                    // the last row's threshold lies above every point: g = 0 there
                    threshold: if c == cols - 1 {
                        1e4
                    } else {
                        rng.random_range(0.0..150.0)
                    },
                    bin_size: 0,
                });
            }
            let grid = |v: &[f32]| {
                Tensor::<2>::from_data(TensorData::new(v.to_vec(), [points, cols]), &device)
            };
            let (x, y, mask) = (grid(&x), grid(&y), grid(&mask));
            let dt = Tensor::<2>::from_data(TensorData::new(dt, [1, cols]), &device);
            let g = PolynomialActivation::new(&rows.iter().collect::<Vec<_>>(), &device);
            let run = |fused: bool| {
                let g = g.clone().fork(&device);
                let loss = if fused {
                    super::super::fused::activation_loss(&g, [&x, &y, &mask], &dt, 1e-8)
                        .expect("the fused loss runs on wgpu")
                } else {
                    let mu = g.forward(x.clone()) * dt.clone();
                    masked_poisson_nll(mu, y.clone() * dt.clone(), mask.clone(), 1e-8).sum()
                };
                let value = crate::neuron::to_vec(loss.clone())[0];
                let grads = GradientsParams::from_grads(loss.backward(), &g);
                let dc = crate::neuron::to_vec(grads.get::<2>(g.coeffs.id).unwrap());
                let db = crate::neuron::to_vec(grads.get::<1>(g.threshold.id).unwrap());
                (value, dc, db)
            };
            let (fused, burn) = (run(true), run(false));
            assert!(
                (fused.0 - burn.0).abs() <= 1e-5 * burn.0.abs().max(1.0),
                "degree {}: loss {} vs {}",
                terms - 1,
                fused.0,
                burn.0
            );
            for (what, a, b) in [("c", &fused.1, &burn.1), ("b", &fused.2, &burn.2)] {
                let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "{what} has a gradient");
                for (u, v) in a.iter().zip(b) {
                    assert!(
                        (u - v).abs() <= 1e-4 * scale,
                        "degree {}: d{what} {u} vs {v} (largest {scale})",
                        terms - 1
                    );
                }
            }
            // the row below threshold everywhere gets no gradient
            assert_eq!(fused.2[cols - 1], 0.0);
        }
    }
}
