//! The fused GFR scan: forward pass, Poisson loss and its gradient by backpropagation through
//! time, written out by hand over plain `f64` buffers.
//!
//! Forward keeps only the rate f_t and the activation input u_t = mean_i h_t[i] per bin; the
//! backward pass runs the adjoint recurrence in reverse:
//!
//! ```text
//! F_t = ∂L/∂f_t (direct) + 1000 Σ_i β_i a_{t+1}[i]
//! a_t = (1 − λ) ⊙ a_{t+1} + F_t g'(u_t) / n
//! ∂L/∂α_i = Σ_t a_t[i] I_t        ∂L/∂β_i = Σ_t a_t[i] 1000 f_{t−1}
//! ```
//!
//! Every sweep names the neuron it runs through, so one call serves one cell or many cells
//! fitted together. Its tests check values and gradients against Burn's autodiff through
//! [`crate::neuron::GfrLayer::sequence`] and against finite differences.

use crate::neuron::{NeuronParams, RATE_HISTORY_SCALE};

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

    pub fn n_sweeps(&self) -> usize {
        self.len.len()
    }

    /// Valid bins in the whole batch.
    pub fn n_bins(&self) -> usize {
        self.len.iter().sum()
    }
}

/// Gradients of the loss with respect to each neuron's trainable parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct NeuronGrads {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub threshold: f64,
    pub coeffs: Vec<f64>,
}

impl NeuronGrads {
    fn zeros(p: &NeuronParams) -> Self {
        Self {
            alpha: vec![0.0; p.n_filters()],
            beta: vec![0.0; p.n_filters()],
            threshold: 0.0,
            coeffs: vec![0.0; p.activation.poly_coeff.len()],
        }
    }
}

/// Result of [`loss_and_grad`].
#[derive(Clone, Debug)]
pub struct ScanOutput {
    /// Unweighted Poisson NLL of each sweep, summed over its valid bins.
    pub sweep_loss: Vec<f64>,
    /// Per-neuron gradients of Σ_s weight_s · sweep_loss_s.
    pub grads: Vec<NeuronGrads>,
}

/// Activation value, dz/du and the pieces the backward pass needs.
struct ActEval {
    f: f64,
    /// ∂f/∂z (zero where the rectifier is off).
    df_dz: f64,
    /// v = (u − b)/σ.
    v: f64,
}

#[inline]
fn act_eval(p: &NeuronParams, u: f64) -> ActEval {
    let a = &p.activation;
    let v = (u - a.threshold) / a.max_current;
    let mut z = 0.0;
    let mut pw = 1.0;
    for &c in &a.poly_coeff {
        z += c * c * pw;
        pw *= v;
    }
    let th = z.tanh();
    if th > 0.0 {
        ActEval {
            f: a.max_firing_rate * th,
            df_dz: a.max_firing_rate * (1.0 - th * th),
            v,
        }
    } else {
        ActEval {
            f: 0.0,
            df_dz: 0.0,
            v,
        }
    }
}

/// dz/dv = Σ_k k c_k² v^{k−1}.
#[inline]
fn dz_dv(coeffs: &[f64], v: f64) -> f64 {
    let mut d = 0.0;
    let mut pw = 1.0;
    for (k, &c) in coeffs.iter().enumerate().skip(1) {
        d += k as f64 * c * c * pw;
        pw *= v;
    }
    d
}

/// Forward pass of one sweep; fills `rate` and `u` (activation input) for `len` bins.
fn forward_sweep(p: &NeuronParams, current: &[f64], rate: &mut [f64], u: &mut [f64]) {
    let n = p.n_filters();
    let mut h = [0.0f64; 16];
    let h = &mut h[..n];
    let decay: Vec<f64> = p.lambda.iter().map(|l| 1.0 - l).collect();
    let mut f_prev = 0.0;
    for t in 0..current.len() {
        let i_t = current[t];
        let mut sum = 0.0;
        for k in 0..n {
            h[k] = decay[k] * h[k] + p.alpha[k] * i_t + RATE_HISTORY_SCALE * p.beta[k] * f_prev;
            sum += h[k];
        }
        u[t] = sum / n as f64;
        f_prev = act_eval(p, u[t]).f;
        rate[t] = f_prev;
    }
}

/// Firing rate (ms⁻¹) of neuron `p` for a current trace (pA, one value per bin).
pub fn predict(p: &NeuronParams, current: &[f64]) -> Vec<f64> {
    let mut rate = vec![0.0; current.len()];
    let mut u = vec![0.0; current.len()];
    forward_sweep(p, current, &mut rate, &mut u);
    rate
}

/// Poisson NLL Σ_t [f Δt − y Δt ln(f Δt + ε)] of one sweep's valid bins.
pub fn poisson_nll(rate: &[f64], target: &[f64], dt: f64, eps: f64) -> f64 {
    rate.iter()
        .zip(target)
        .map(|(&f, &y)| f * dt - y * dt * (f * dt + eps).ln())
        .sum()
}

/// Loss of every sweep and the gradient of the weighted total with respect to each neuron's
/// α, β, b and c. `dt` is the model bin size (ms), `eps` the config's ε.
pub fn loss_and_grad(
    neurons: &[NeuronParams],
    batch: &SweepBatch,
    dt: f64,
    eps: f64,
) -> ScanOutput {
    let mut grads: Vec<NeuronGrads> = neurons.iter().map(NeuronGrads::zeros).collect();
    let mut work = Work::new(batch.time);
    let sweep_loss = (0..batch.n_sweeps())
        .map(|s| {
            let k = batch.neuron[s];
            sweep_loss_and_grad(&neurons[k], batch, s, dt, eps, &mut grads[k], &mut work)
        })
        .collect();
    ScanOutput { sweep_loss, grads }
}

/// [`loss_and_grad`] for several cells at once without packing them into one batch: all
/// sweeps of `batches[c]` run through `neurons[c]`. Returns each cell's sweep losses and
/// gradients.
pub fn loss_and_grad_cells(
    neurons: &[NeuronParams],
    batches: &[&SweepBatch],
    dt: f64,
    eps: f64,
) -> Vec<(Vec<f64>, NeuronGrads)> {
    assert_eq!(neurons.len(), batches.len(), "one batch per neuron");
    let one_cell = |p: &NeuronParams, batch: &SweepBatch, work: &mut Work| {
        let mut g = NeuronGrads::zeros(p);
        let losses = (0..batch.n_sweeps())
            .map(|s| sweep_loss_and_grad(p, batch, s, dt, eps, &mut g, work))
            .collect();
        (losses, g)
    };
    let max_time = batches.iter().map(|b| b.time).max().unwrap_or(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(neurons.len());
    if threads <= 1 {
        let mut work = Work::new(max_time);
        return neurons
            .iter()
            .zip(batches)
            .map(|(p, b)| one_cell(p, b, &mut work))
            .collect();
    }
    // cells are independent: split them over the cores
    let per = neurons.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = neurons
            .chunks(per)
            .zip(batches.chunks(per))
            .map(|(ns, bs)| {
                scope.spawn(move || {
                    let mut work = Work::new(max_time);
                    ns.iter()
                        .zip(bs)
                        .map(|(p, b)| one_cell(p, b, &mut work))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("scan thread"))
            .collect()
    })
}

/// Scratch buffers for one sweep's forward pass.
struct Work {
    rate: Vec<f64>,
    u: Vec<f64>,
}

impl Work {
    fn new(time: usize) -> Self {
        Self {
            rate: vec![0.0; time],
            u: vec![0.0; time],
        }
    }
}

/// Forward and backward pass of sweep `s` of `batch` through `p`; adds its weighted gradient
/// to `g` and returns its unweighted loss.
fn sweep_loss_and_grad(
    p: &NeuronParams,
    batch: &SweepBatch,
    s: usize,
    dt: f64,
    eps: f64,
    g: &mut NeuronGrads,
    work: &mut Work,
) -> f64 {
    let len = batch.len[s];
    let current = &batch.current[s * batch.time..s * batch.time + len];
    let target = &batch.target[s * batch.time..s * batch.time + len];
    let (rate, u) = (&mut work.rate[..len], &mut work.u[..len]);
    forward_sweep(p, current, rate, u);
    backward_sweep(p, current, target, rate, u, batch.weight[s], dt, eps, g);
    poisson_nll(rate, target, dt, eps)
}

#[allow(clippy::too_many_arguments)]
fn backward_sweep(
    p: &NeuronParams,
    current: &[f64],
    target: &[f64],
    rate: &[f64],
    u: &[f64],
    weight: f64,
    dt: f64,
    eps: f64,
    g: &mut NeuronGrads,
) {
    let n = p.n_filters();
    let inv_n = 1.0 / n as f64;
    let decay: Vec<f64> = p.lambda.iter().map(|l| 1.0 - l).collect();
    let kbeta: Vec<f64> = p.beta.iter().map(|b| RATE_HISTORY_SCALE * b).collect();
    let coeffs = &p.activation.poly_coeff;
    let sigma = p.activation.max_current;
    let mut a = [0.0f64; 16];
    let a = &mut a[..n];
    for t in (0..rate.len()).rev() {
        let f = rate[t];
        let direct = weight * (dt - target[t] * dt * dt / (f * dt + eps));
        let feedback: f64 = a.iter().zip(&kbeta).map(|(a, kb)| a * kb).sum();
        let df = direct + feedback;
        let e = act_eval(p, u[t]);
        let dz = df * e.df_dz;
        let du = if dz != 0.0 {
            dz * dz_dv(coeffs, e.v) / sigma
        } else {
            0.0
        };
        if dz != 0.0 {
            g.threshold -= du;
            let mut pw = 1.0;
            for (k, &c) in coeffs.iter().enumerate() {
                g.coeffs[k] += dz * 2.0 * c * pw;
                pw *= e.v;
            }
        }
        let i_t = current[t];
        let f_prev = if t > 0 { rate[t - 1] } else { 0.0 };
        for k in 0..n {
            a[k] = decay[k] * a[k] + du * inv_n;
            g.alpha[k] += a[k] * i_t;
            g.beta[k] += a[k] * RATE_HISTORY_SCALE * f_prev;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::neuron::{ActivationParams, GfrLayer};
    use burn::tensor::{Tensor, TensorData};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn neurons() -> Vec<NeuronParams> {
        let mut rng = StdRng::seed_from_u64(5);
        (0..2)
            .map(|k| {
                let act = ActivationParams {
                    max_current: 150.0,
                    max_firing_rate: 0.2 + 0.1 * k as f64,
                    poly_coeff: vec![0.3, 1.2, 0.4],
                    threshold: 20.0 + 10.0 * k as f64,
                    bin_size: 20,
                };
                let mut p = NeuronParams::initial(20, act);
                for i in 0..p.n_filters() {
                    p.alpha[i] += rng.random_range(-1.0..1.0);
                    p.beta[i] = rng.random_range(-0.05..0.02);
                }
                p
            })
            .collect()
    }

    fn batch() -> SweepBatch {
        let mut rng = StdRng::seed_from_u64(9);
        let mut sweep = |len: usize| -> (Vec<f64>, Vec<f64>) {
            let c = (0..len).map(|_| rng.random_range(-20.0..120.0)).collect();
            let y = (0..len)
                .map(|_| (rng.random_range(0..4) as f64) / 20.0)
                .collect();
            (c, y)
        };
        let (a, b, c) = (sweep(30), sweep(17), sweep(24));
        let mut batch = SweepBatch::single_neuron(&[(&a.0, &a.1), (&b.0, &b.1)], 0);
        batch.push_cell(&[(&c.0, &c.1)], 1);
        batch
    }

    /// The same loss through Burn's autodiff on the tensor-op layer.
    #[test]
    fn matches_burn_autodiff_through_the_layer() {
        let ns = neurons();
        let b = batch();
        let dt = 20.0;
        let out = loss_and_grad(&ns, &b, dt, 1e-8);

        let device = crate::device::cpu().autodiff();
        let layer = GfrLayer::new(&ns, &device).with_trainable_activation(true);
        let (s, t, n) = (b.n_sweeps(), b.time, ns.len());
        // every sweep drives every neuron; a one-hot picks the neuron it belongs to
        let rep = |v: &[f64]| -> Vec<f32> {
            v.iter()
                .flat_map(|&x| std::iter::repeat_n(x as f32, n))
                .collect()
        };
        let current = Tensor::<3>::from_data(TensorData::new(rep(&b.current), [s, t, n]), &device);
        let target = Tensor::<3>::from_data(TensorData::new(rep(&b.target), [s, t, n]), &device);
        let mut w = vec![0.0f32; s * t * n];
        for i in 0..s {
            for tt in 0..b.len[i] {
                w[(i * t + tt) * n + b.neuron[i]] = b.weight[i] as f32;
            }
        }
        let weight = Tensor::<3>::from_data(TensorData::new(w, [s, t, n]), &device);
        let rate = layer.sequence(current);
        let mu = rate * dt;
        let loss = ((mu.clone() - target * dt * (mu + 1e-8).log()) * weight).sum();
        let total: f64 = out
            .sweep_loss
            .iter()
            .zip(&b.weight)
            .map(|(l, w)| l * w)
            .sum();
        let ref_loss = loss.clone().into_scalar::<f32>() as f64;
        assert!(
            (ref_loss - total).abs() < 1e-4 * total.abs(),
            "loss {ref_loss} vs {total}"
        );

        let grads = loss.backward();
        let get = |t: Tensor<2>| -> Vec<f64> {
            t.into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        };
        let ga = get(layer.alpha.val().grad(&grads).unwrap());
        let gb = get(layer.beta.val().grad(&grads).unwrap());
        let gc = get(layer.activation.coeffs.val().grad(&grads).unwrap());
        let gthr: Vec<f64> = layer
            .activation
            .threshold
            .val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
            .into_iter()
            .map(f64::from)
            .collect();
        let close = |a: f64, b: f64, scale: f64| (a - b).abs() <= 2e-3 * scale + 1e-6;
        for k in 0..n {
            let g = &out.grads[k];
            let nf = g.alpha.len();
            let sa = g.alpha.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let sb = g.beta.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for i in 0..nf {
                assert!(
                    close(ga[k * nf + i], g.alpha[i], sa),
                    "dα[{k}][{i}]: {} vs {}",
                    ga[k * nf + i],
                    g.alpha[i]
                );
                assert!(
                    close(gb[k * nf + i], g.beta[i], sb),
                    "dβ[{k}][{i}]: {} vs {}",
                    gb[k * nf + i],
                    g.beta[i]
                );
            }
            let sc = g.coeffs.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for i in 0..g.coeffs.len() {
                assert!(
                    close(gc[k * 3 + i], g.coeffs[i], sc),
                    "dc[{k}][{i}]: {} vs {}",
                    gc[k * 3 + i],
                    g.coeffs[i]
                );
            }
            assert!(
                close(gthr[k], g.threshold, g.threshold.abs()),
                "db[{k}]: {} vs {}",
                gthr[k],
                g.threshold
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let ns = neurons();
        let b = batch();
        let (dt, eps) = (20.0, 1e-8);
        let total = |ns: &[NeuronParams]| -> f64 {
            let o = loss_and_grad(ns, &b, dt, eps);
            o.sweep_loss.iter().zip(&b.weight).map(|(l, w)| l * w).sum()
        };
        let g = loss_and_grad(&ns, &b, dt, eps).grads;
        let fd = |edit: &dyn Fn(&mut NeuronParams, f64), h: f64| -> f64 {
            let (mut up, mut down) = (ns.clone(), ns.clone());
            edit(&mut up[1], h);
            edit(&mut down[1], -h);
            (total(&up) - total(&down)) / (2.0 * h)
        };
        let check = |analytic: f64, numeric: f64, what: &str| {
            assert!(
                (analytic - numeric).abs() <= 1e-5 * analytic.abs().max(numeric.abs()) + 1e-7,
                "{what}: {analytic} vs {numeric}"
            );
        };
        for i in [0, 2, 5] {
            check(
                g[1].alpha[i],
                fd(&|p, h| p.alpha[i] += h, 1e-5),
                &format!("α[{i}]"),
            );
            check(
                g[1].beta[i],
                fd(&|p, h| p.beta[i] += h, 1e-7),
                &format!("β[{i}]"),
            );
        }
        check(
            g[1].threshold,
            fd(&|p, h| p.activation.threshold += h, 1e-4),
            "b",
        );
        for k in 0..3 {
            check(
                g[1].coeffs[k],
                fd(&|p, h| p.activation.poly_coeff[k] += h, 1e-6),
                &format!("c[{k}]"),
            );
        }
    }

    #[test]
    fn padding_does_not_change_loss_or_gradients() {
        let ns = neurons();
        let b = batch();
        let alone = {
            let len = b.len[1];
            let c = &b.current[b.time..b.time + len];
            let y = &b.target[b.time..b.time + len];
            SweepBatch::single_neuron(&[(c, y)], 0)
        };
        let padded = loss_and_grad(&ns, &b, 20.0, 1e-8);
        let single = loss_and_grad(&ns[..1], &alone, 20.0, 1e-8);
        assert_eq!(padded.sweep_loss[1], single.sweep_loss[0]);
        assert_eq!(
            predict(&ns[0], &alone.current),
            ns[0].predict(&alone.current)
        );
    }
}
