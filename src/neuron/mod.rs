//! The GFR neuron (spec §1): decay rates, host-side parameters, and the Burn modules.
//!
//! * [`NeuronParams`] — one fitted neuron as plain numbers, the form saved in pickles.
//! * [`PolynomialActivation`] and [`GfrLayer`] — Burn modules holding many neurons at once
//!   (one row per neuron), with a step and a sequence function over `[batch, …]` tensors.
//! * [`crate::scan`] — the fused forward/backward scan the fitter uses; tested against
//!   [`GfrLayer::sequence`].

mod activation;
mod layer;
mod params;

pub use activation::PolynomialActivation;
pub(crate) use activation::tensor1 as activation_tensor1;
pub(crate) use activation::to_vec;
pub use layer::{GfrLayer, GfrState, PreparedLayer, masked_poisson_nll, poisson_nll};
pub use params::{ActivationParams, NeuronParams};

/// Filter time constants τ (ms) of spec §1; those shorter than the bin size are dropped.
pub const TIME_CONSTANTS_MS: [f64; 8] = [10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0];

/// Scale of the rate-history term: f is in ms⁻¹, β multiplies Hz.
pub const RATE_HISTORY_SCALE: f64 = 1000.0;

/// Bin sizes (ms) a GFR model can use.
pub const BIN_SIZES: [u32; 4] = [10, 20, 50, 100];

/// Decay rates λ for a model bin size Δt (ms): `[1] ++ [1 − exp(−Δt/τ) for τ ≥ Δt]`.
/// n = 9, 8, 7, 6 for Δt = 10, 20, 50, 100 (the spec's prose says 6 and 5 for 50 and 100 ms,
/// which contradicts its own formula; the formula and the published code are followed).
pub fn decay_rates(bin_size_ms: u32) -> Vec<f64> {
    let dt = bin_size_ms as f64;
    std::iter::once(1.0)
        .chain(
            TIME_CONSTANTS_MS
                .iter()
                .filter(|&&tau| tau >= dt)
                .map(|&tau| 1.0 - (-dt / tau).exp()),
        )
        .collect()
}

/// Evaluates the activation g(x) = γ · max(0, tanh(Σ_k c_k² ((x − b)/σ)^k)) on the host.
/// Also returns z, the polynomial inside tanh.
#[inline]
pub fn activation_host(
    x: f64,
    threshold: f64,
    coeffs: &[f64],
    sigma: f64,
    gamma: f64,
) -> (f64, f64) {
    let v = (x - threshold) / sigma;
    let mut z = 0.0;
    let mut p = 1.0;
    for &c in coeffs {
        z += c * c * p;
        p *= v;
    }
    (gamma * z.tanh().max(0.0), z)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_rates_have_the_spec_sizes() {
        assert_eq!(decay_rates(10).len(), 9);
        assert_eq!(decay_rates(20).len(), 8);
        // τ ≥ Δt as in the formula (and the published code): 6 + 1 and 5 + 1 filters
        assert_eq!(decay_rates(50).len(), 7);
        assert_eq!(decay_rates(100).len(), 6);
        let l = decay_rates(20);
        assert_eq!(l[0], 1.0);
        assert!((l[1] - (1.0 - (-1.0f64).exp())).abs() < 1e-15); // τ = 20
        assert!((l[7] - (1.0 - (-0.01f64).exp())).abs() < 1e-15); // τ = 2000
    }

    #[test]
    fn activation_is_rectified_tanh_of_squared_polynomial() {
        // c = [0, 1], b = 0, σ = γ = 1 → max(0, tanh(x))
        for x in [-2.0, -0.1, 0.0, 0.3, 1.7] {
            let (g, _) = activation_host(x, 0.0, &[0.0, 1.0], 1.0, 1.0);
            assert!((g - f64::max(0.0, f64::tanh(x))).abs() < 1e-15);
        }
        // γ scales, σ and b shift/scale the input; coefficients enter squared
        let (g, z) = activation_host(30.0, 10.0, &[0.5, -2.0], 40.0, 0.2);
        let zz = 0.25 + 4.0 * 0.5;
        assert!((z - zz).abs() < 1e-12);
        assert!((g - 0.2 * zz.tanh()).abs() < 1e-12);
    }
}
