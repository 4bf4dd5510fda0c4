//! A layer of GFR neurons as a Burn module: step and sequence functions (spec §1).
//!
//! The cell fitter and the network run the layer through the fused scan ([`GfrLayer::scan`],
//! [`crate::scan`]); [`GfrLayer::sequence`] steps plain tensor ops bin by bin and is the
//! differentiable reference the scan is tested against.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use super::activation::{restored, tensor1, tensor2, to_vec};
use super::{NeuronParams, PolynomialActivation, RATE_HISTORY_SCALE};
use crate::scan::ScanNeurons;

/// N GFR neurons with n filters each, sharing the decay rates λ.
#[derive(Module, Debug)]
pub struct GfrLayer {
    /// α: input weights, `[N, n]`.
    pub alpha: Param<Tensor<2>>,
    /// Rate-history weights, `[N, n]`, stored as β · 1000 / (`history_scale` · u) with u the
    /// per-neuron `history_unit` (1 when `None`; see [`GfrLayer::with_history_scale`] and
    /// [`GfrLayer::with_history_unit`]); with the default scale of 1000 this is β itself.
    pub beta: Param<Tensor<2>>,
    /// 1 − λ: per-bin decay factors, `[n]`; constant.
    pub decay: Param<Tensor<1>>,
    /// The neurons' activations g (b, c, γ, σ per neuron).
    pub activation: PolynomialActivation,
    /// s in h ← (1 − λ) h + α I + s · `beta` · f. Default [`RATE_HISTORY_SCALE`] (1000).
    pub history_scale: f64,
    /// Per-neuron factor u `[N]` (constant) on top of s: h ← … + s · u ⊙ `beta` · f; `None`:
    /// u = 1. Set by [`GfrLayer::with_history_unit`].
    pub history_unit: Option<Param<Tensor<1>>>,
}

/// State of a layer for a batch: filter values h `[B, N, n]` and last rate f `[B, N]` (ms⁻¹).
#[derive(Clone, Debug)]
pub struct GfrState {
    /// Filter values h, `[B, N, n]`.
    pub h: Tensor<3>,
    /// Rate of the last step f, `[B, N]` (ms⁻¹).
    pub rate: Tensor<2>,
}

impl GfrLayer {
    /// One row per neuron; all must share bin size (so λ) and polynomial degree.
    pub fn new(neurons: &[NeuronParams], device: &Device) -> Self {
        assert!(!neurons.is_empty(), "a GFR layer needs at least one neuron");
        let lambda = &neurons[0].lambda;
        assert!(
            neurons.iter().all(|p| &p.lambda == lambda),
            "all neurons of a layer must share λ (the same bin size)"
        );
        let decay: Vec<f64> = lambda.iter().map(|l| 1.0 - l).collect();
        let alpha: Vec<Vec<f64>> = neurons.iter().map(|p| p.alpha.clone()).collect();
        let beta: Vec<Vec<f64>> = neurons.iter().map(|p| p.beta.clone()).collect();
        let acts: Vec<_> = neurons.iter().map(|p| &p.activation).collect();
        Self {
            alpha: Param::from_tensor(tensor2(&alpha, device)),
            beta: Param::from_tensor(tensor2(&beta, device)),
            decay: Param::from_tensor(tensor1(&decay, device)).set_require_grad(false),
            activation: PolynomialActivation::new(&acts, device),
            history_scale: RATE_HISTORY_SCALE,
            history_unit: None,
        }
    }

    /// The same neurons with neuron i's rate-history term stepped as s · u_i · β̃_i · f
    /// (β̃_i = 1000 β_i / (s u_i)); `None`: u = 1. The function is unchanged; an optimizer
    /// step now moves neuron i's feedback gain by about s · u_i · lr. β keeps its frozen /
    /// trainable flag.
    pub fn with_history_unit(mut self, unit: Option<&[f64]>) -> Self {
        if unit.is_none() && self.history_unit.is_none() {
            return self;
        }
        let device = self.beta.val().device();
        let n = self.n_neurons();
        let full = self.history_weights();
        let unit = unit.map(|u| tensor1(u, &device));
        let beta = match &unit {
            None => full / self.history_scale,
            Some(u) => full / (u.clone().reshape([n, 1]) * self.history_scale),
        };
        self.beta = restored(&self.beta, beta);
        self.history_unit = unit.map(|u| Param::from_tensor(u).set_require_grad(false));
        self
    }

    /// [`GfrLayer::scan_neurons`] with β as stored and the factor that makes it the weights a
    /// step applies (β · factor), where one factor serves every neuron (no `history_unit`);
    /// else with those weights and 1. The fused kernels apply the factor themselves (no
    /// launch for it, forward or back).
    pub(crate) fn scan_neurons_unscaled(&self) -> (ScanNeurons, f64) {
        if self.history_unit.is_some() {
            return (self.scan_neurons(), 1.0);
        }
        (self.scan_neurons_with(self.beta.val()), self.history_scale)
    }

    /// The scan's parameters with `beta` as the rate-history weights.
    fn scan_neurons_with(&self, beta: Tensor<2>) -> ScanNeurons {
        let act = &self.activation;
        ScanNeurons {
            alpha: self.alpha.val(),
            beta,
            decay: self.decay.val(),
            coeffs: act.coeffs.val(),
            threshold: act.threshold_pa(),
            max_current: act.max_current.val(),
            max_rate: act.max_rate.val(),
            precision: Default::default(),
        }
    }

    /// The rate-history weights as a step applies them, s · u ⊙ β̃ = 1000 β, `[N, n]`.
    pub fn history_weights(&self) -> Tensor<2> {
        let beta = self.beta.val() * self.history_scale;
        match &self.history_unit {
            None => beta,
            Some(u) => beta * u.val().reshape([self.n_neurons(), 1]),
        }
    }

    /// The activation's b, stored in units of `unit` pA (see
    /// [`PolynomialActivation::with_threshold_unit`]).
    pub fn with_threshold_unit(mut self, unit: Option<&[f64]>) -> Self {
        self.activation = self.activation.with_threshold_unit(unit);
        self
    }

    /// The same neurons with the rate-history term reparameterised as s · β̃ · f, β̃ = 1000 β / s.
    /// The function is unchanged; only what the optimizer sees changes. With a small s (the
    /// network uses 10) a step of Adam moves the feedback gain by about s · lr instead of
    /// 1000 · lr, and β's gradients no longer dominate the global gradient norm: this is what
    /// keeps networks with trainable neurons from exploding. β keeps its frozen / trainable flag.
    pub fn with_history_scale(mut self, scale: f64) -> Self {
        let factor = self.history_scale / scale;
        self.beta = restored(&self.beta, self.beta.val() * factor);
        self.history_scale = scale;
        self
    }

    /// Number of neurons N.
    pub fn n_neurons(&self) -> usize {
        self.alpha.val().dims()[0]
    }

    /// Number of filters per neuron n.
    pub fn n_filters(&self) -> usize {
        self.alpha.val().dims()[1]
    }

    /// Freezes (or unfreezes) α and β, using Burn's require-grad flag.
    pub fn with_trainable_filters(mut self, trainable: bool) -> Self {
        self.alpha = self.alpha.set_require_grad(trainable);
        self.beta = self.beta.set_require_grad(trainable);
        self
    }

    /// Freezes (or unfreezes) the activation's b and c.
    pub fn with_trainable_activation(mut self, trainable: bool) -> Self {
        self.activation = self.activation.with_trainable(trainable);
        self
    }

    /// h = 0, f = 0 for a batch of `batch`.
    pub fn init_state(&self, batch: usize) -> GfrState {
        let device = self.alpha.val().device();
        let (n_neurons, n) = (self.n_neurons(), self.n_filters());
        GfrState {
            h: Tensor::zeros([batch, n_neurons, n], &device),
            rate: Tensor::zeros([batch, n_neurons], &device),
        }
    }

    /// One time bin: `input` is the current per neuron (pA), `[B, N]`.
    /// h ← (1 − λ) ⊙ h + α I + 1000 β f;  f ← g(mean_i h).
    pub fn step(&self, state: GfrState, input: Tensor<2>) -> GfrState {
        self.prepare().step(state, input)
    }

    /// The parameters in the shapes a step needs; compute once per sequence, then step.
    pub fn prepare(&self) -> PreparedLayer {
        let (n_neurons, n) = (self.n_neurons(), self.n_filters());
        PreparedLayer {
            decay: self.decay.val().reshape([1, 1, n]),
            alpha: self.alpha.val().reshape([1, n_neurons, n]),
            beta: self.history_weights().reshape([1, n_neurons, n]),
            activation: self.activation.prepare(),
        }
    }

    /// The parameters as the fused scan takes them (rate-history scale folded into β).
    pub fn scan_neurons(&self) -> ScanNeurons {
        self.scan_neurons_with(self.history_weights())
    }

    /// Runs the layer from rest over `current` (pA) `[B, T, N]` with the fused scan; returns
    /// rates `[B, T, N]`. With `recurrent` W `[N, N]` each bin's input is P_t + r_{t−1} W.
    pub fn scan(&self, current: Tensor<3>, recurrent: Option<Tensor<2>>) -> Tensor<3> {
        crate::scan::scan(&self.scan_neurons(), current, recurrent, None)
    }

    /// Runs the layer from rest over `current` (pA), `[B, T, N]`, step by step with plain
    /// tensor ops: the reference the fused scan is tested against. Returns rates `[B, T, N]`.
    pub fn sequence(&self, current: Tensor<3>) -> Tensor<3> {
        let [batch, time, n_neurons] = current.dims();
        let mut state = self.init_state(batch);
        let mut rates = Vec::with_capacity(time);
        // the activation's constants once per sequence (γ = 1 is checked on the device once)
        let prepared = self.prepare();
        for t in 0..time {
            let input = current
                .clone()
                .slice([0..batch, t..t + 1, 0..n_neurons])
                .reshape([batch, n_neurons]);
            state = prepared.step(state, input);
            rates.push(state.rate.clone().unsqueeze_dim::<3>(1));
        }
        Tensor::cat(rates, 1)
    }

    /// The host-side parameters of every neuron.
    pub fn to_params(&self, bin_size: u32) -> Vec<NeuronParams> {
        let (n_neurons, n) = (self.n_neurons(), self.n_filters());
        let alpha = to_vec(self.alpha.val());
        let unit = self.history_unit.as_ref().map(|u| to_vec(u.val()));
        let beta: Vec<f64> = to_vec(self.beta.val())
            .into_iter()
            .enumerate()
            .map(|(k, b)| {
                let u = unit.as_ref().map_or(1.0, |u| u[k / n]);
                b * self.history_scale * u / RATE_HISTORY_SCALE
            })
            .collect();
        // λ is exact from the bin size; the f32 decay tensor only confirms the filter count.
        let exact = super::decay_rates(bin_size);
        let lambda: Vec<f64> = if exact.len() == n {
            exact
        } else {
            to_vec(self.decay.val())
                .into_iter()
                .map(|d| 1.0 - d)
                .collect()
        };
        let acts = self.activation.to_params(bin_size);
        (0..n_neurons)
            .zip(acts)
            .map(|(i, activation)| NeuronParams {
                alpha: alpha[i * n..(i + 1) * n].to_vec(),
                beta: beta[i * n..(i + 1) * n].to_vec(),
                lambda: lambda.clone(),
                bin_size,
                activation,
            })
            .collect()
    }
}

/// [`GfrLayer`] with its parameters reshaped for stepping (rate-history scale folded in).
#[derive(Clone, Debug)]
pub struct PreparedLayer {
    decay: Tensor<3>,
    alpha: Tensor<3>,
    beta: Tensor<3>,
    activation: super::activation::PreparedActivation,
}

impl PreparedLayer {
    /// One time bin; see [`GfrLayer::step`].
    pub fn step(&self, state: GfrState, input: Tensor<2>) -> GfrState {
        let h = state.h * self.decay.clone()
            + self.alpha.clone() * input.unsqueeze_dim::<3>(2)
            + self.beta.clone() * state.rate.unsqueeze_dim::<3>(2);
        let x = h.clone().mean_dim(2).squeeze_dim::<2>(2);
        let rate = self.activation.forward(x);
        GfrState { h, rate }
    }
}

/// Poisson negative log-likelihood of binned spike counts, summed over unmasked bins:
/// Σ m · [f Δt − y Δt · ln(f Δt + ε)]. `rate`, `target`, `mask`: `[B, T]`.
pub fn poisson_nll(
    rate: Tensor<2>,
    target: Tensor<2>,
    mask: Tensor<2>,
    dt: f64,
    eps: f64,
) -> Tensor<1> {
    masked_poisson_nll(rate * dt, target * dt, mask, eps).sum()
}

/// The masked Poisson loss of every bin, the one tensor form that the activation fit, the
/// filter fit and [`poisson_nll`] use: m · [μ − n · ln(μ + ε)], with μ = f Δt the expected
/// and n = y Δt the observed spike count of the bin. Padded bins (mask 0) take ln 1, so that
/// ε = 0 gives no 0 · ln 0 there. Any shape; all four tensors alike (or broadcastable).
pub fn masked_poisson_nll<const D: usize>(
    mu: Tensor<D>,
    counts: Tensor<D>,
    mask: Tensor<D>,
    eps: f64,
) -> Tensor<D> {
    let padded = mask.clone().equal_elem(0.0);
    let log_mu = (mu.clone() + eps).mask_fill(padded, 1.0).log();
    (mu - counts * log_mu) * mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neuron::ActivationParams;
    use burn::tensor::TensorData;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The layer's steps match the plain-Rust rendering of spec §1 on random neurons and inputs.
    #[test]
    fn steps_match_the_plain_reference() {
        let mut rng = StdRng::seed_from_u64(3);
        let neurons: Vec<NeuronParams> = (0..3)
            .map(|_| {
                let act = ActivationParams {
                    max_current: rng.random_range(50.0..300.0),
                    max_firing_rate: rng.random_range(0.05..0.5),
                    poly_coeff: (0..3).map(|_| rng.random_range(-1.5..1.5)).collect(),
                    threshold: rng.random_range(-20.0..80.0),
                    bin_size: 50,
                };
                let mut p = NeuronParams::initial(50, act);
                p.alpha
                    .iter_mut()
                    .for_each(|a| *a += rng.random_range(-2.0..2.0));
                p.beta
                    .iter_mut()
                    .for_each(|b| *b = rng.random_range(-0.05..0.05));
                p
            })
            .collect();
        let (batch, time) = (2, 40);
        let current: Vec<f64> = (0..batch * time * 3)
            .map(|_| rng.random_range(-50.0..250.0))
            .collect();
        let device = crate::device::cpu();
        let layer = GfrLayer::new(&neurons, &device);
        let input = Tensor::<3>::from_data(
            TensorData::new(
                current.iter().map(|&x| x as f32).collect::<Vec<_>>(),
                [batch, time, 3],
            ),
            &device,
        );
        let rates = to_vec(layer.sequence(input));
        let mut fired = 0;
        for b in 0..batch {
            for (k, p) in neurons.iter().enumerate() {
                let trace: Vec<f64> = (0..time).map(|t| current[(b * time + t) * 3 + k]).collect();
                for (t, want) in p.predict(&trace).into_iter().enumerate() {
                    let got = rates[(b * time + t) * 3 + k];
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1e-2),
                        "batch {b} neuron {k} bin {t}: {got} vs {want}"
                    );
                    fired += (want > 0.0) as usize;
                }
            }
        }
        assert!(fired > 20, "the test neurons should fire ({fired} bins)");
        // parameters survive the round trip through the module
        let back = layer.to_params(50);
        assert!((back[1].alpha[2] - neurons[1].alpha[2]).abs() < 1e-5);
        assert_eq!(back[1].lambda, neurons[1].lambda);
    }

    #[test]
    fn history_reparameterisation_keeps_the_function() {
        let mut p = NeuronParams::initial(
            20,
            ActivationParams {
                max_current: 100.0,
                max_firing_rate: 0.3,
                poly_coeff: vec![0.2, 1.0],
                threshold: 10.0,
                bin_size: 20,
            },
        );
        p.beta[2] = -0.03;
        p.beta[5] = 0.01;
        let device = crate::device::cpu();
        let input = Tensor::<3>::from_data(
            TensorData::new(
                (0..30).map(|t| 50.0 + 4.0 * t as f32).collect::<Vec<_>>(),
                [1, 30, 1],
            ),
            &device,
        );
        let a = to_vec(GfrLayer::new(std::slice::from_ref(&p), &device).sequence(input.clone()));
        let layer = GfrLayer::new(std::slice::from_ref(&p), &device).with_history_scale(1.0);
        assert!(
            (to_vec(layer.beta.val())[2] + 30.0).abs() < 1e-4,
            "β̃ = 1000 β"
        );
        let b = to_vec(layer.sequence(input));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert!(
            (layer.to_params(20)[0].beta[2] + 0.03).abs() < 1e-7,
            "to_params gives β back"
        );
        // the freeze flag survives the reparameterisation
        let ad = crate::device::cpu().autodiff();
        let frozen = GfrLayer::new(std::slice::from_ref(&p), &ad)
            .with_trainable_filters(false)
            .with_history_scale(10.0);
        assert!(!frozen.beta.val().is_require_grad());
        let trainable = GfrLayer::new(std::slice::from_ref(&p), &ad).with_history_scale(10.0);
        assert!(trainable.beta.val().is_require_grad());
    }

    #[test]
    fn masked_poisson_loss_ignores_padded_bins() {
        let device = crate::device::cpu();
        let t = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [1, 3]), &device);
        let full = poisson_nll(
            t(vec![0.1, 0.2, 9.0]),
            t(vec![0.05, 0.0, 3.0]),
            t(vec![1.0, 1.0, 0.0]),
            20.0,
            1e-8,
        );
        let want = (2.0 - 1.0 * (2.0f64 + 1e-8).ln()) + 4.0;
        assert!((full.into_scalar::<f32>() as f64 - want).abs() < 1e-4);
        // ε = 0 and a silent padded bin (0 · ln 0 if it were not masked): still the host loss
        // of the valid bins, and finite
        let silent = poisson_nll(
            t(vec![0.1, 0.2, 0.0]),
            t(vec![0.05, 0.0, 0.0]),
            t(vec![1.0, 1.0, 0.0]),
            20.0,
            0.0,
        )
        .into_scalar::<f32>() as f64;
        let host = crate::scan::poisson_nll(&[0.1, 0.2], &[0.05, 0.0], 20.0, 0.0);
        assert!((silent - host).abs() < 1e-5, "{silent} vs {host}");
    }
}
