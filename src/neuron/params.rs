//! One neuron's parameters as plain numbers: the `params` dict of a fit result (spec §4).

use anyhow::{Context, Result, bail};

use crate::data::pickle::{PyValue, PyValueExt, dict, float_list, int};

/// Activation g(x) = γ · max(0, tanh(Σ_k c_k² ((x − b)/σ)^k)) of one neuron.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationParams {
    /// σ: largest |I| in the activation-fit data (pA).
    pub max_current: f64,
    /// γ: the cell's maximum firing rate (ms⁻¹).
    pub max_firing_rate: f64,
    /// c: d + 1 polynomial coefficients (enter squared).
    pub poly_coeff: Vec<f64>,
    /// b: threshold current (pA).
    pub threshold: f64,
    /// Activation bin size Δt' (ms) the activation was fitted at.
    pub bin_size: u32,
}

/// One GFR neuron (spec §1): filter weights, decay rates and activation.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuronParams {
    /// α: input weights, one per filter.
    pub alpha: Vec<f64>,
    /// β: rate-history weights, one per filter.
    pub beta: Vec<f64>,
    /// λ: decay rates, one per filter.
    pub lambda: Vec<f64>,
    /// Model bin size Δt (ms).
    pub bin_size: u32,
    /// The activation g.
    pub activation: ActivationParams,
}

impl ActivationParams {
    /// g(x): the firing rate (ms⁻¹) for an activation input `x` (pA).
    pub fn eval(&self, x: f64) -> f64 {
        super::activation_host(
            x,
            self.threshold,
            &self.poly_coeff,
            self.max_current,
            self.max_firing_rate,
        )
        .0
    }

    /// The `g` dict of the Python GFR layout (`max_current`, `max_firing_rate`, `poly_coeff`, `b`,
    /// `bin_size`).
    pub fn to_py(&self) -> PyValue {
        dict([
            ("max_current", float_list(&[self.max_current])),
            ("max_firing_rate", float_list(&[self.max_firing_rate])),
            (
                "poly_coeff",
                PyValue::List(vec![float_list(&self.poly_coeff)]),
            ),
            ("b", float_list(&[self.threshold])),
            ("bin_size", int(self.bin_size as i64)),
        ])
    }

    /// Reads a `g` dict; σ and γ must be positive, b finite, c non-empty.
    pub fn from_py(v: &PyValue) -> Result<Self> {
        let p = Self {
            max_current: first(v.get("max_current")?.floats()?, "max_current")?,
            max_firing_rate: first(v.get("max_firing_rate")?.floats()?, "max_firing_rate")?,
            poly_coeff: v.get("poly_coeff")?.floats_flat()?,
            threshold: first(v.get("b")?.floats()?, "b")?,
            bin_size: v.get("bin_size")?.as_u32()?,
        };
        if p.poly_coeff.is_empty() {
            bail!("field `poly_coeff` is empty");
        }
        if !(p.max_firing_rate > 0.0 && p.max_firing_rate.is_finite()) {
            bail!(
                "field `max_firing_rate` must be a positive number (ms⁻¹), got {}",
                p.max_firing_rate
            );
        }
        if !p.threshold.is_finite() {
            bail!("field `b` must be a finite number, got {}", p.threshold);
        }
        if !(p.max_current > 0.0 && p.max_current.is_finite()) {
            bail!(
                "field `max_current` must be a positive number, got {}",
                p.max_current
            );
        }
        Ok(p)
    }
}

impl NeuronParams {
    /// Initial neuron of spec §1: α = [n, 0, …], β = 0, with the given activation.
    pub fn initial(bin_size: u32, activation: ActivationParams) -> Self {
        let lambda = super::decay_rates(bin_size);
        let n = lambda.len();
        let mut alpha = vec![0.0; n];
        alpha[0] = n as f64;
        Self {
            alpha,
            beta: vec![0.0; n],
            lambda,
            bin_size,
            activation,
        }
    }

    /// Replaces λ by the exact decay rates of its bin size when they agree to 1e-6 (PyTorch
    /// saves them rounded to float32), so that neurons of one bin size share λ exactly.
    pub fn snap_decay_rates(&mut self) {
        if !super::BIN_SIZES.contains(&self.bin_size) {
            return;
        }
        let exact = super::decay_rates(self.bin_size);
        if exact.len() == self.lambda.len()
            && exact
                .iter()
                .zip(&self.lambda)
                .all(|(a, b)| (a - b).abs() <= 1e-6)
        {
            self.lambda = exact;
        }
    }

    /// Number of filters n.
    pub fn n_filters(&self) -> usize {
        self.lambda.len()
    }

    /// Input kernel k_I(s) = Σ_i α_i (1 − λ_i)^s for s = 0..len bins.
    pub fn input_kernel(&self, len: usize) -> Vec<f64> {
        kernel(&self.alpha, &self.lambda, len)
    }

    /// Rate-history kernel k_f(s) = Σ_i β_i (1 − λ_i)^s for s = 0..len bins.
    pub fn rate_kernel(&self, len: usize) -> Vec<f64> {
        kernel(&self.beta, &self.lambda, len)
    }

    /// Runs the neuron on a current trace (pA, one value per bin) and returns the firing
    /// rate per bin (ms⁻¹). A plain, unbatched rendering of spec §1.
    pub fn predict(&self, current: &[f64]) -> Vec<f64> {
        let n = self.n_filters();
        let mut h = vec![0.0; n];
        let mut f = 0.0;
        let a = &self.activation;
        current
            .iter()
            .map(|&i_t| {
                for k in 0..n {
                    h[k] = (1.0 - self.lambda[k]) * h[k]
                        + self.alpha[k] * i_t
                        + super::RATE_HISTORY_SCALE * self.beta[k] * f;
                }
                f = a.eval(h.iter().sum::<f64>() / n as f64);
                f
            })
            .collect()
    }

    /// [`Self::predict`], checked: every current (pA) finite, and every rate finite (else an
    /// [`crate::error::Invalid`] error naming the bin: the parameters or the current are out
    /// of range).
    pub fn predict_checked(&self, current: &[f64]) -> anyhow::Result<Vec<f64>> {
        if let Some(i) = current.iter().position(|x| !x.is_finite()) {
            return Err(crate::error::invalid(format!(
                "the current is {} at bin {i}",
                current[i]
            )));
        }
        let rates = self.predict(current);
        if let Some(i) = rates.iter().position(|r| !r.is_finite()) {
            return Err(crate::error::invalid(format!(
                "the neuron's rate is {} at bin {i}: its parameters or the current are out of range",
                rates[i]
            )));
        }
        Ok(rates)
    }

    /// The neuron in the Python GFR layout as JSON (the same keys and nesting as [`Self::to_py`];
    /// the dataset JSON's `params` and a network JSON's `final_neurons` hold it). NaN is `null`.
    pub fn to_json(&self) -> serde_json::Value {
        let a = &self.activation;
        serde_json::json!({"a": [self.alpha], "b": [self.beta], "ds": self.lambda, "bin_size": self.bin_size,
            "g": {"max_current": [a.max_current], "max_firing_rate": [a.max_firing_rate],
                  "poly_coeff": [a.poly_coeff], "b": [a.threshold], "bin_size": a.bin_size}})
    }

    /// The `params` dict of the Python GFR layout (`a`, `b`, `ds`, `bin_size`, `g`).
    pub fn to_py(&self) -> PyValue {
        dict([
            ("a", PyValue::List(vec![float_list(&self.alpha)])),
            ("b", PyValue::List(vec![float_list(&self.beta)])),
            ("ds", float_list(&self.lambda)),
            ("bin_size", int(self.bin_size as i64)),
            ("g", self.activation.to_py()),
        ])
    }

    /// Reads a `params` dict: α, β, λ of one non-zero length, all finite; λ snapped to the exact
    /// decay rates.
    pub fn from_py(v: &PyValue) -> Result<Self> {
        let p = Self {
            alpha: v.get("a")?.floats_flat()?,
            beta: v.get("b")?.floats_flat()?,
            lambda: v.get("ds")?.floats_flat()?,
            bin_size: v.get("bin_size")?.as_u32()?,
            activation: ActivationParams::from_py(v.get("g")?).context("in field `g`")?,
        };
        let n = p.lambda.len();
        if n == 0 || p.alpha.len() != n || p.beta.len() != n {
            bail!(
                "fields `a`, `b`, `ds` must have the same non-zero length, got {}, {}, {}",
                p.alpha.len(),
                p.beta.len(),
                n
            );
        }
        let mut p = p;
        p.snap_decay_rates();
        let all = p
            .alpha
            .iter()
            .chain(&p.beta)
            .chain(&p.lambda)
            .chain(&p.activation.poly_coeff);
        if all.clone().any(|x| !x.is_finite()) {
            bail!("parameters contain NaN or infinite values");
        }
        Ok(p)
    }
}

fn kernel(w: &[f64], lambda: &[f64], len: usize) -> Vec<f64> {
    (0..len)
        .map(|s| {
            w.iter()
                .zip(lambda)
                .map(|(w, l)| w * (1.0 - l).powi(s as i32))
                .sum()
        })
        .collect()
}

fn first(v: Vec<f64>, name: &str) -> Result<f64> {
    v.first()
        .copied()
        .with_context(|| format!("field `{name}` is empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neuron() -> NeuronParams {
        let act = ActivationParams {
            max_current: 200.0,
            max_firing_rate: 0.3,
            poly_coeff: vec![0.1, 1.5],
            threshold: 40.0,
            bin_size: 20,
        };
        let mut p = NeuronParams::initial(20, act);
        p.beta[2] = -1e-3;
        p
    }

    #[test]
    fn pickle_dict_round_trips() {
        let p = neuron();
        let back = NeuronParams::from_py(&p.to_py()).unwrap();
        assert_eq!(p, back);
    }

    #[test]
    fn initial_neuron_passes_current_straight_to_the_activation() {
        // α = [n, 0…], β = 0 → first bin: mean h = I, so f = g(I)
        let p = neuron();
        let r = p.predict(&[100.0]);
        assert!((r[0] - p.activation.eval(100.0)).abs() < 1e-12);
        let k = p.input_kernel(3);
        assert_eq!(k, vec![8.0, 0.0, 0.0]); // λ_0 = 1 forgets at once
    }

    #[test]
    fn float32_decay_rates_snap_to_the_exact_ones() {
        let mut p = neuron();
        p.lambda = p.lambda.iter().map(|&l| l as f32 as f64).collect();
        assert_ne!(p.lambda, crate::neuron::decay_rates(20));
        let back = NeuronParams::from_py(&p.to_py()).unwrap();
        assert_eq!(back.lambda, crate::neuron::decay_rates(20));
        // rates that differ really are kept
        p.lambda[3] = 0.5;
        let back = NeuronParams::from_py(&p.to_py()).unwrap();
        assert_eq!(back.lambda[3], 0.5);
    }
}
