//! Recurrent networks for line-by-line MNIST (spec §5): a hidden layer of GFR neurons, and
//! a vanilla RNN and an LSTM as baselines.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig, Lstm, LstmConfig, LstmState};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

use super::mnist::SIDE;
use crate::neuron::{ActivationParams, GfrLayer, NeuronParams};

/// Digits.
pub const CLASSES: usize = 10;

/// A sequence classifier: rows in, logits out at the zero-input readout steps.
pub trait LineClassifier: Module + Clone {
    /// `images`: `[B, 28, 28]`, one row per step. Returns the logits `[B, 10]` of each of the
    /// `readouts` zero-input steps after the last row.
    fn readouts(&self, images: Tensor<3>, readouts: usize) -> Vec<Tensor<2>>;
}

/// The default neuron of spec §5: λ = [1, 1−e^−1, 1−e^−0.5, 1−e^−0.2], α = [4, 0, 0, 0],
/// β = 0, c = [0, 1], b = 0, σ = γ = 1, so g = max(0, tanh(x)).
pub fn default_neuron() -> NeuronParams {
    let lambda = vec![
        1.0,
        1.0 - (-1.0f64).exp(),
        1.0 - (-0.5f64).exp(),
        1.0 - (-0.2f64).exp(),
    ];
    NeuronParams {
        alpha: vec![4.0, 0.0, 0.0, 0.0],
        beta: vec![0.0; 4],
        lambda,
        bin_size: 0,
        activation: ActivationParams {
            max_current: 1.0,
            max_firing_rate: 1.0,
            poly_coeff: vec![0.0, 1.0],
            threshold: 0.0,
            bin_size: 0,
        },
    }
}

/// The network's rate-history scale s: the layer steps with s · β̃ · f, β̃ = 1000 β / s (the
/// same function as the published 1000 · β · f). With s = 1000 (the published form) trainable
/// neurons explode; s = 10 trains the feedback fastest without it (measured over s = 0.1 … 100,
/// see the README). `gfr network --history-scale` changes it.
pub const HISTORY_SCALE: f64 = 10.0;

/// I_t = in_scale ⊙ (W_in x_t + b_in) + rec_scale · (W_rec r_{t−1} + b_rec);
/// r_t = GFR layer(I_t); y_t = W_out r_t + b_out.
#[derive(Module, Debug)]
pub struct GfrNetwork {
    pub input: Linear,
    pub recurrent: Linear,
    pub output: Linear,
    pub neurons: GfrLayer,
    /// Per-neuron input scale `[H]`: 1 for default neurons, σ / 28 for biological ones; constant.
    pub input_scale: Param<Tensor<1>>,
    /// Recurrent scale: 1, or 1 / H for biological neurons.
    pub recurrent_scale: f64,
}

impl GfrNetwork {
    /// `biological`: the input scaling of spec §5 (σ-scaled input, W_in ~ N(1.5, 3²), 1/H
    /// recurrence). The rate-history term is reparameterised (history scale [`HISTORY_SCALE`])
    /// for stable
    /// training; the neurons' function is unchanged.
    pub fn new(neurons: &[NeuronParams], biological: bool, device: &Device) -> Self {
        let h = neurons.len();
        let mut input = LinearConfig::new(SIDE, h);
        if biological {
            input = input.with_initializer(Initializer::Normal {
                mean: 1.5,
                std: 3.0,
            });
        }
        let scale: Vec<f64> = if biological {
            neurons
                .iter()
                .map(|n| n.activation.max_current / SIDE as f64)
                .collect()
        } else {
            vec![1.0; h]
        };
        Self {
            input: input.init(device),
            recurrent: LinearConfig::new(h, h).init(device),
            output: LinearConfig::new(h, CLASSES).init(device),
            neurons: GfrLayer::new(neurons, device).with_history_scale(HISTORY_SCALE),
            input_scale: Param::from_tensor(crate::neuron::activation_tensor1(&scale, device))
                .set_require_grad(false),
            recurrent_scale: if biological { 1.0 / h as f64 } else { 1.0 },
        }
    }

    pub fn hidden(&self) -> usize {
        self.neurons.n_neurons()
    }
}

impl LineClassifier for GfrNetwork {
    fn readouts(&self, images: Tensor<3>, readouts: usize) -> Vec<Tensor<2>> {
        let [batch, time, _] = images.dims();
        let h = self.hidden();
        let device = images.device();
        // the scales fold into the weights once per forward pass: s ⊙ W_in (s = 1 for default
        // neurons) and c W_rec
        let scale = self.input_scale.val().reshape([1, h]);
        let (w_in, mut w_rec) = (self.input.weight.val(), self.recurrent.weight.val());
        let zero = || Tensor::<2>::zeros([1, h], &device);
        let b_in = self
            .input
            .bias
            .as_ref()
            .map_or_else(zero, |b| b.val().reshape([1, h]));
        let mut b_rec = self
            .recurrent
            .bias
            .as_ref()
            .map_or_else(zero, |b| b.val().reshape([1, h]));
        let (w_in, b_in) = (w_in * scale.clone(), b_in * scale);
        if self.recurrent_scale != 1.0 {
            w_rec = w_rec * self.recurrent_scale;
            b_rec = b_rec * self.recurrent_scale;
        }
        // P_t = x_t W_in + b_in + b_rec for every bin (x = 0 at the readout steps), then the
        // fused scan runs the recurrence I_t = P_t + r_{t−1} W_rec through the neurons
        let driven = images
            .reshape([batch * time, SIDE])
            .matmul(w_in)
            .reshape([batch, time, h]);
        let rest = Tensor::<3>::zeros([batch, readouts, h], &device);
        let current = Tensor::cat(vec![driven, rest], 1) + (b_in + b_rec).unsqueeze::<3>();
        let rates = self.neurons.scan(current, Some(w_rec));
        (time..time + readouts)
            .map(|t| {
                let r = rates
                    .clone()
                    .slice([0..batch, t..t + 1, 0..h])
                    .reshape([batch, h]);
                self.output.forward(r)
            })
            .collect()
    }
}

/// Vanilla RNN: r_t = tanh(W_in x_t + b_in + W_rec r_{t−1} + b_rec).
#[derive(Module, Debug)]
pub struct RnnNetwork {
    pub input: Linear,
    pub recurrent: Linear,
    pub output: Linear,
}

impl RnnNetwork {
    pub fn new(hidden: usize, device: &Device) -> Self {
        Self {
            input: LinearConfig::new(SIDE, hidden).init(device),
            recurrent: LinearConfig::new(hidden, hidden).init(device),
            output: LinearConfig::new(hidden, CLASSES).init(device),
        }
    }
}

impl LineClassifier for RnnNetwork {
    fn readouts(&self, images: Tensor<3>, readouts: usize) -> Vec<Tensor<2>> {
        let [batch, time, _] = images.dims();
        let device = images.device();
        let hidden = self.recurrent.weight.val().dims()[0];
        let mut r = Tensor::<2>::zeros([batch, hidden], &device);
        let mut logits = Vec::new();
        for t in 0..time + readouts {
            let x = if t < time {
                images
                    .clone()
                    .slice([0..batch, t..t + 1, 0..SIDE])
                    .reshape([batch, SIDE])
            } else {
                Tensor::zeros([batch, SIDE], &device)
            };
            r = (self.input.forward(x) + self.recurrent.forward(r)).tanh();
            if t >= time {
                logits.push(self.output.forward(r.clone()));
            }
        }
        logits
    }
}

/// LSTM baseline (Burn's `Lstm`), stepped one row at a time.
#[derive(Module, Debug)]
pub struct LstmNetwork {
    pub lstm: Lstm,
    pub output: Linear,
}

impl LstmNetwork {
    pub fn new(hidden: usize, device: &Device) -> Self {
        Self {
            lstm: LstmConfig::new(SIDE, hidden, true).init(device),
            output: LinearConfig::new(hidden, CLASSES).init(device),
        }
    }
}

impl LineClassifier for LstmNetwork {
    fn readouts(&self, images: Tensor<3>, readouts: usize) -> Vec<Tensor<2>> {
        let [batch, _, _] = images.dims();
        let device = images.device();
        let (_, mut state): (_, LstmState<2>) = self.lstm.forward(images, None);
        let mut logits = Vec::new();
        for _ in 0..readouts {
            logits.push(self.output.forward(state.hidden.clone()));
            let (_, next) = self
                .lstm
                .forward(Tensor::zeros([batch, 1, SIDE], &device), Some(state));
            state = next;
        }
        logits
    }
}

/// Sum over readout steps of the softmax: the 5-step vote.
pub fn vote(logits: &[Tensor<2>]) -> Tensor<2> {
    logits
        .iter()
        .map(|l| softmax(l.clone(), 1))
        .reduce(|a, b| a + b)
        .expect("at least one readout")
}

/// Hidden sizes of an RNN and an LSTM whose parameter counts come closest to `target`.
pub fn matched_hidden_sizes(target: usize) -> (usize, usize) {
    let rnn = |h: usize| SIDE * h + h + h * h + h + CLASSES * h + CLASSES;
    let lstm = |h: usize| 4 * (SIDE * h + h + h * h + h) + CLASSES * h + CLASSES;
    let best =
        |f: &dyn Fn(usize) -> usize| (1..4096).min_by_key(|&h| f(h).abs_diff(target)).unwrap();
    (best(&rnn), best(&lstm))
}

/// `n` neurons drawn (with replacement, seeded) from the dataset's `(bin, actv_bin)` records;
/// polynomials are padded with zero coefficients to a common degree.
pub fn biological_neurons(
    dataset: &crate::dataset::Dataset,
    pair: (u32, u32),
    n: usize,
    seed: u64,
) -> anyhow::Result<Vec<NeuronParams>> {
    use rand::{Rng, SeedableRng};
    let recs = dataset
        .pairs
        .get(&pair)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the dataset has no neurons for bin size {}, activation bin size {}",
                pair.0,
                pair.1
            )
        })?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out: Vec<NeuronParams> = (0..n)
        .map(|_| recs[rng.random_range(0..recs.len())].params.clone())
        .collect();
    pad_degrees(&mut out);
    Ok(out)
}

/// Pads every activation polynomial with zeros to the longest one (c_k = 0 adds nothing).
pub fn pad_degrees(neurons: &mut [NeuronParams]) {
    let terms = neurons
        .iter()
        .map(|p| p.activation.poly_coeff.len())
        .max()
        .unwrap_or(0);
    for p in neurons {
        p.activation.poly_coeff.resize(terms, 0.0);
    }
}

impl GfrNetwork {
    /// The same network with the rate-history term reparameterised at scale `s` (see
    /// [`HISTORY_SCALE`]); the function is unchanged.
    pub fn with_history_scale(self, s: f64) -> Self {
        self.tap_neurons(|l| l.with_history_scale(s))
    }

    /// Applies `f` to the hidden layer (e.g. to freeze parts of it).
    pub fn tap_neurons(mut self, f: impl FnOnce(GfrLayer) -> GfrLayer) -> Self {
        self.neurons = f(self.neurons);
        self
    }
}
