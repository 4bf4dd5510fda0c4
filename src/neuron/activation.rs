//! The polynomial activation g as a Burn module holding N neurons (one row each).

use burn::module::{Module, Param};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

use super::ActivationParams;

/// g(x) = γ · max(0, tanh(Σ_k c_k² ((x − b)/σ)^k)) for N neurons.
/// b and c are trainable; σ and γ are constants (frozen parameters, saved with the module).
#[derive(Module, Debug)]
pub struct PolynomialActivation {
    /// b: threshold current per neuron, `[N]`: in pA, or in units of `threshold_unit`.
    pub threshold: Param<Tensor<1>>,
    /// pA per unit of the stored `threshold`, `[N]` (constant); `None`: the threshold is in pA.
    /// Set by [`PolynomialActivation::with_threshold_unit`] so that an optimizer step moves
    /// each neuron's threshold by the same fraction of its own input range.
    pub threshold_unit: Option<Param<Tensor<1>>>,
    /// c: polynomial coefficients per neuron, `[N, d + 1]`.
    pub coeffs: Param<Tensor<2>>,
    /// σ: input scale per neuron (pA), `[N]`; constant.
    pub max_current: Param<Tensor<1>>,
    /// γ: maximum firing rate per neuron (ms⁻¹), `[N]`; constant.
    pub max_rate: Param<Tensor<1>>,
}

pub(crate) fn tensor1(xs: &[f64], device: &Device) -> Tensor<1> {
    let v: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [xs.len()]), device)
}

pub(crate) fn tensor2(rows: &[Vec<f64>], device: &Device) -> Tensor<2> {
    let cols = rows.first().map_or(0, Vec::len);
    assert!(rows.iter().all(|r| r.len() == cols), "ragged rows");
    let v: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, [rows.len(), cols]), device)
}

pub(crate) fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    crate::device::timed_read(|| t.into_data())
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float tensor")
        .into_iter()
        .map(f64::from)
        .collect()
}

/// A parameter holding `value` (detached) with `param`'s frozen / trainable flag: how a
/// reparameterisation replaces what the optimizer sees without changing what it may train.
pub(crate) fn restored<const D: usize>(
    param: &Param<Tensor<D>>,
    value: Tensor<D>,
) -> Param<Tensor<D>> {
    let trainable = param.val().is_require_grad();
    Param::from_tensor(value.detach()).set_require_grad(trainable)
}

fn constant(t: Tensor<1>) -> Param<Tensor<1>> {
    Param::from_tensor(t).set_require_grad(false)
}

impl PolynomialActivation {
    /// One row per neuron; all must have the same polynomial degree.
    pub fn new(neurons: &[&ActivationParams], device: &Device) -> Self {
        let col = |f: fn(&ActivationParams) -> f64| -> Vec<f64> {
            neurons.iter().map(|a| f(a)).collect()
        };
        let coeffs: Vec<Vec<f64>> = neurons.iter().map(|a| a.poly_coeff.clone()).collect();
        Self {
            threshold: Param::from_tensor(tensor1(&col(|a| a.threshold), device)),
            coeffs: Param::from_tensor(tensor2(&coeffs, device)),
            max_current: constant(tensor1(&col(|a| a.max_current), device)),
            max_rate: constant(tensor1(&col(|a| a.max_firing_rate), device)),
            threshold_unit: None,
        }
    }

    /// The same activations with b stored in units of `unit` (pA per unit, one per neuron;
    /// `None`: in pA): the function is unchanged, only what the optimizer sees changes. b keeps
    /// its frozen / trainable flag.
    pub fn with_threshold_unit(mut self, unit: Option<&[f64]>) -> Self {
        if unit.is_none() && self.threshold_unit.is_none() {
            return self;
        }
        let device = self.threshold.val().device();
        let b = self.threshold_pa();
        let unit = unit.map(|u| tensor1(u, &device));
        let stored = match &unit {
            None => b,
            Some(u) => b / u.clone(),
        };
        self.threshold = restored(&self.threshold, stored);
        self.threshold_unit = unit.map(constant);
        self
    }

    /// b in pA, `[N]`.
    pub fn threshold_pa(&self) -> Tensor<1> {
        match &self.threshold_unit {
            None => self.threshold.val(),
            Some(unit) => self.threshold.val() * unit.val(),
        }
    }

    /// Number of neurons N.
    pub fn n_neurons(&self) -> usize {
        self.threshold.val().dims()[0]
    }

    /// Freezes (or unfreezes) b and c, using Burn's require-grad flag.
    pub fn with_trainable(mut self, trainable: bool) -> Self {
        self.threshold = self.threshold.set_require_grad(trainable);
        self.coeffs = self.coeffs.set_require_grad(trainable);
        self
    }

    /// `x`: input per neuron (pA), `[B, N]` → rate (ms⁻¹), `[B, N]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.prepare().forward(x)
    }

    /// The per-neuron constants in the shapes a step needs; compute once per sequence.
    pub fn prepare(&self) -> PreparedActivation {
        let n = self.n_neurons();
        let c = self.coeffs.val();
        let terms = c.dims()[1];
        let c2 = c.clone() * c;
        let row = |k: usize| c2.clone().slice([0..n, k..k + 1]).reshape([1, n]);
        let threshold = self.threshold_pa().reshape([1, n]);
        let inv_sigma = self.max_current.val().reshape([1, n]).recip();
        let gamma = self.max_rate.val().reshape([1, n]);
        let gamma = (!gamma.clone().equal_elem(1.0).all().into_scalar::<bool>()).then_some(gamma);
        let poly = if terms == 2 {
            // degree 1: z = c₁² (x − b)/σ + c₀², an affine map of x
            let slope = row(1) * inv_sigma;
            Poly::Affine {
                offset: row(0) - threshold * slope.clone(),
                slope,
            }
        } else {
            Poly::Horner {
                threshold,
                inv_sigma,
                c2: (0..terms).map(row).collect(),
            }
        };
        PreparedActivation { poly, gamma }
    }
    /// The host-side parameters of every neuron.
    pub fn to_params(&self, bin_size: u32) -> Vec<ActivationParams> {
        let n = self.n_neurons();
        let b = to_vec(self.threshold.val());
        let unit = self.threshold_unit.as_ref().map(|u| to_vec(u.val()));
        let b: Vec<f64> = match unit {
            None => b,
            Some(u) => b.iter().zip(u).map(|(b, u)| b * u).collect(),
        };
        let c = to_vec(self.coeffs.val());
        let sigma = to_vec(self.max_current.val());
        let gamma = to_vec(self.max_rate.val());
        let terms = c.len() / n.max(1);
        (0..n)
            .map(|i| ActivationParams {
                max_current: sigma[i],
                max_firing_rate: gamma[i],
                poly_coeff: c[i * terms..(i + 1) * terms].to_vec(),
                threshold: b[i],
                bin_size,
            })
            .collect()
    }
}

/// [`PolynomialActivation`] with its constants reshaped to `[1, N]` rows.
#[derive(Clone, Debug)]
pub struct PreparedActivation {
    poly: Poly,
    /// γ, or `None` when every γ is 1.
    gamma: Option<Tensor<2>>,
}

#[derive(Clone, Debug)]
enum Poly {
    Affine {
        slope: Tensor<2>,
        offset: Tensor<2>,
    },
    Horner {
        threshold: Tensor<2>,
        inv_sigma: Tensor<2>,
        c2: Vec<Tensor<2>>,
    },
}

impl PreparedActivation {
    /// g(x) for `x` `[B, N]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let z = match &self.poly {
            Poly::Affine { slope, offset } => x * slope.clone() + offset.clone(),
            Poly::Horner {
                threshold,
                inv_sigma,
                c2,
            } => {
                let v = (x - threshold.clone()) * inv_sigma.clone();
                let d = c2.len() - 1;
                let mut z = if d == 0 {
                    c2[0].clone() + v.zeros_like()
                } else {
                    v.clone() * c2[d].clone() + c2[d - 1].clone()
                };
                for k in (0..d.saturating_sub(1)).rev() {
                    z = z * v.clone() + c2[k].clone();
                }
                z
            }
        };
        let g = relu(z.tanh());
        match &self.gamma {
            Some(gamma) => g * gamma.clone(),
            None => g,
        }
    }
}
