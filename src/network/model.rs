//! Recurrent networks for line-by-line MNIST (spec §5): a hidden layer of GFR neurons, and
//! a vanilla RNN and an LSTM as baselines.

use burn::module::{Module, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Initializer, Linear, LinearConfig, Lstm, LstmConfig, LstmState};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor};

use crate::data::mnist::SIDE;
use crate::neuron::{ActivationParams, GfrLayer, NeuronParams, activation_tensor1};
use crate::scan::Precision;

/// Digits.
pub const CLASSES: usize = 10;

/// A sequence classifier: rows in, logits out at the zero-input readout steps.
pub trait LineClassifier: Module + Clone {
    /// `images`: `[B, 28, 28]`, one row per step. Returns the logits `[B, 10]` of each of the
    /// `readouts` zero-input steps after the last row.
    fn readouts(&self, images: Tensor<3>, readouts: usize) -> Vec<Tensor<2>>;

    /// What training minimises: the mean cross-entropy of the first readout of `images`
    /// `[B, 28, 28]` against `labels` `[B]`, as `(objective, [loss, correct count])`. The
    /// backward pass runs from `objective` (`[1]` or `[2]`: a count carries no gradient); the
    /// pair `[2]` is without autodiff. By default Burn's operations on [`Self::readouts`].
    fn batch_loss(&self, images: Tensor<3>, labels: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
        cross_entropy(self, images, labels)
    }
}

/// [`LineClassifier::batch_loss`] by Burn's operations.
pub fn cross_entropy<M: LineClassifier>(
    model: &M,
    images: Tensor<3>,
    labels: Tensor<1, Int>,
) -> (Tensor<1>, Tensor<1>) {
    let batch = labels.dims()[0];
    let logits = model.readouts(images, 1).remove(0);
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), labels.clone());
    let correct = logits.argmax(1).reshape([batch]).equal(labels).int().sum();
    let score = Tensor::cat(vec![loss.clone().inner(), correct.inner().float()], 0);
    (loss, score)
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

/// How a biological network's drive reaches its neurons (`gfr network --bio-input`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BioInput {
    /// Spec §5 as published: I = σ ⊙ (W_in x + b_in) / 28 + (W_rec r + b_rec) / H with
    /// W_in ~ N(1.5, 3²); rates leave the neurons in ms⁻¹.
    Published,
    /// gfr's default: the default network's dimensionless drive u = W_in x + b_in +
    /// W_rec r̂ + b_rec (Burn's default initialisation) reaches each neuron relative to its
    /// own f-I curve, I = (x* + w · u) / G (threshold x*, dynamic range w, onset gain G, see
    /// [`OperatingPoint`]), and leaves it as r̂ = r / γ, the fraction of the cell's maximum
    /// rate. For the default neuron this is the identity.
    Relative,
}

impl BioInput {
    /// The `--bio-input` value: `published` or `relative`.
    pub fn name(self) -> &'static str {
        match self {
            BioInput::Published => "published",
            BioInput::Relative => "relative",
        }
    }
}

/// The units in which a biological network stores, and Adam steps, each neuron's threshold b
/// and rate-history weights β (`gfr network --bio-units`). Adam moves every parameter by about
/// lr per step whatever its scale, so the units decide how fast each trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BioUnits {
    /// gfr's default with [`BioInput::Relative`]: the units the network feeds the neuron in.
    /// The drive u reaches the activation's axis (the mean filter value, where b lives) as
    /// x* + w u at a step's onset, so b is stored in units of the neuron's range w (b̂ = b / w)
    /// and its rate-history weights, which add to the filter values, as 1000 β / (s · w / γ):
    /// one Adam step moves every neuron's threshold by lr of its range and its feedback gain
    /// by s · lr of its range per unit of r̂ = r / γ — as it moves the default neuron's
    /// (w = γ = 1).
    Relative,
    /// b in pA and 1000 β / s (the published parameterisation; [`BioInput::Published`]
    /// always uses it). A fitted neuron's threshold (hundreds of pA) and feedback gains
    /// (rates of 0.05–0.5 ms⁻¹ against filter values of hundreds of pA) then barely move at
    /// lr 1e-3: 10²–10⁴ times more slowly, relative to their range, than a default neuron's.
    Physical,
}

impl BioUnits {
    /// The `--bio-units` value: `relative` or `physical`.
    pub fn name(self) -> &'static str {
        match self {
            BioUnits::Relative => "relative",
            BioUnits::Physical => "physical",
        }
    }
}

/// Where a neuron's steady f-I curve starts and how steep it is, in pA of the activation's
/// input (the mean filter value), and how strongly its filters pass a current step at onset.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct OperatingPoint {
    /// x*: the smallest activation input with a non-zero rate (pA).
    pub threshold: f64,
    /// w: how far above x* the rate reaches γ · tanh(1) ≈ 0.76 γ (pA).
    pub range: f64,
    /// G = Σ_i α_i / n: the mean filter value per pA in the first bin of a current step —
    /// the gain the activation was fitted at (spec §3).
    pub gain: f64,
}

/// Smallest onset gain used for [`BioInput::Relative`], as a fraction of the default α₀ / n = 1
/// (a cell whose fitted filters pass almost nothing at onset would otherwise get a huge drive).
pub const MIN_ONSET_GAIN: f64 = 0.1;

impl OperatingPoint {
    /// Found on the host from the neuron's activation and α.
    pub fn of(p: &NeuronParams) -> Self {
        let a = &p.activation;
        let rate = |x: f64| {
            crate::neuron::activation_host(
                x,
                a.threshold,
                &a.poly_coeff,
                a.max_current,
                a.max_firing_rate,
            )
            .0
        };
        // x*: bracketed on a grid of ±5 σ around b (0.001 σ apart), then bisected; w by
        // bisection
        let sigma = a.max_current;
        let at = |k: i32| a.threshold + sigma * k as f64 * 1e-3;
        let threshold = match (-5000..=5000).find(|&k| rate(at(k)) > 0.0) {
            None => at(5000),
            Some(-5000) => at(-5000),
            Some(k) => {
                let (mut lo, mut hi) = (at(k - 1), at(k));
                for _ in 0..60 {
                    let mid = 0.5 * (lo + hi);
                    if rate(mid) > 0.0 { hi = mid } else { lo = mid }
                }
                hi
            }
        };
        let target = a.max_firing_rate * 1f64.tanh();
        let (mut lo, mut hi) = (0.0, 10.0 * sigma);
        let range = if rate(threshold + hi) < target {
            hi
        } else {
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if rate(threshold + mid) < target {
                    lo = mid
                } else {
                    hi = mid
                }
            }
            hi
        };
        let gain = p.alpha.iter().sum::<f64>() / p.alpha.len().max(1) as f64;
        Self {
            threshold,
            range,
            gain,
        }
    }
}

/// I_t = P_t + r_{t−1} W with P_t = s_in ⊙ (W_in x_t + b_in) + s_rec ⊙ b_rec + o and
/// W = diag(k) W_rec s_rec: input scale s_in, recurrent scale s_rec, offset o (pA), rate scale
/// k; r_t = GFR layer(I_t); y_t = W_out (k ⊙ r_t) + b_out. Default neurons: s = k = 1, o = 0.
#[derive(Module, Debug)]
pub struct GfrNetwork {
    /// W_in, b_in: 28 pixels of a row → H.
    pub input: Linear,
    /// W_rec, b_rec: H → H.
    pub recurrent: Linear,
    /// W_out, b_out: H → 10 logits.
    pub output: Linear,
    /// The H hidden GFR neurons.
    pub neurons: GfrLayer,
    /// Per-neuron input scale s_in `[H]` (pA per unit of drive); constant.
    pub input_scale: Param<Tensor<1>>,
    /// Per-neuron recurrent scale s_rec `[H]`; constant.
    pub recurrent_scale: Param<Tensor<1>>,
    /// Per-neuron offset o `[H]` (pA); constant.
    pub input_offset: Param<Tensor<1>>,
    /// Per-neuron rate scale k `[H]` (1 / γ for [`BioInput::Relative`]); constant.
    pub rate_scale: Param<Tensor<1>>,
}

impl GfrNetwork {
    /// `biological`: the published input scaling of spec §5 ([`BioInput::Published`]).
    /// The rate-history term is reparameterised (history scale [`HISTORY_SCALE`]) for stable
    /// training; the neurons' function is unchanged.
    pub fn new(neurons: &[NeuronParams], biological: bool, device: &Device) -> Self {
        if biological {
            Self::biological(neurons, BioInput::Published, device)
        } else {
            Self::build(neurons, None, device)
        }
    }

    /// A network of biological neurons fed as `input` says, their b and β in physical units
    /// ([`BioUnits::Physical`]; `.with_bio_units(BioUnits::Relative)` for gfr's default).
    pub fn biological(neurons: &[NeuronParams], input: BioInput, device: &Device) -> Self {
        Self::build(neurons, Some(input), device)
    }

    fn build(neurons: &[NeuronParams], bio: Option<BioInput>, device: &Device) -> Self {
        let h = neurons.len();
        let published = bio == Some(BioInput::Published);
        let mut input = LinearConfig::new(SIDE, h);
        if published {
            input = input.with_initializer(Initializer::Normal {
                mean: 1.5,
                std: 3.0,
            });
        }
        let mut input = input.init(device);
        if published {
            // the published network draws only the weights from N(1.5, 3²); the bias keeps
            // PyTorch's default U(±1/√in), which is also Burn's default
            let bound = 1.0 / (SIDE as f64).sqrt();
            input.bias = Some(Param::from_tensor(Tensor::random(
                [h],
                burn::tensor::Distribution::Uniform(-bound, bound),
                device,
            )));
        }
        let ones = vec![1.0; h];
        let (s_in, s_rec, offset, k) = match bio {
            None => (ones.clone(), ones.clone(), vec![0.0; h], ones),
            Some(BioInput::Published) => (
                neurons
                    .iter()
                    .map(|n| n.activation.max_current / SIDE as f64)
                    .collect(),
                vec![1.0 / h as f64; h],
                vec![0.0; h],
                ones,
            ),
            Some(BioInput::Relative) => {
                let ops: Vec<OperatingPoint> = neurons.iter().map(OperatingPoint::of).collect();
                let gain = |o: &OperatingPoint| o.gain.max(MIN_ONSET_GAIN);
                let s: Vec<f64> = ops.iter().map(|o| o.range / gain(o)).collect();
                (
                    s.clone(),
                    s,
                    ops.iter().map(|o| o.threshold / gain(o)).collect(),
                    neurons
                        .iter()
                        .map(|n| 1.0 / n.activation.max_firing_rate)
                        .collect(),
                )
            }
        };
        let constant =
            |v: &[f64]| Param::from_tensor(activation_tensor1(v, device)).set_require_grad(false);
        let layer = GfrLayer::new(neurons, device).with_history_scale(HISTORY_SCALE);
        Self {
            input,
            recurrent: LinearConfig::new(h, h).init(device),
            output: LinearConfig::new(h, CLASSES).init(device),
            neurons: layer,
            input_scale: constant(&s_in),
            recurrent_scale: constant(&s_rec),
            input_offset: constant(&offset),
            rate_scale: constant(&k),
        }
    }

    /// Number of hidden neurons H.
    pub fn hidden(&self) -> usize {
        self.neurons.n_neurons()
    }

    /// The same network with its neurons' trainable b and β stored in `units` ([`BioUnits`];
    /// freeze first: frozen ones stay physical); the function is unchanged.
    /// [`BioUnits::Relative`] takes each neuron's range w on its activation's axis from the
    /// input scale d = w / G and the onset gain G = max(Σα/n, [`MIN_ONSET_GAIN`]) of its α now,
    /// and 1 / γ from the rate scale, so call it on a freshly built [`BioInput::Relative`]
    /// network (for default neurons w = γ = 1: the identity).
    pub fn with_bio_units(self, units: BioUnits) -> Self {
        let (d, k) = (
            crate::neuron::to_vec(self.input_scale.val()),
            crate::neuron::to_vec(self.rate_scale.val()),
        );
        let n = self.neurons.n_filters();
        let alpha = crate::neuron::to_vec(self.neurons.alpha.val());
        let range: Vec<f64> = d
            .iter()
            .zip(alpha.chunks(n))
            .map(|(d, a)| d * (a.iter().sum::<f64>() / n as f64).max(MIN_ONSET_GAIN))
            .collect();
        let per_rate: Vec<f64> = range.iter().zip(&k).map(|(w, k)| w * k).collect();
        self.tap_neurons(|l| {
            // a frozen parameter keeps physical units: Adam never steps it, and it leaves the
            // network exactly as it came
            let relative = units == BioUnits::Relative;
            let b = relative && l.activation.threshold.val().is_require_grad();
            let beta = relative && l.beta.val().is_require_grad();
            l.with_threshold_unit(b.then_some(&range[..]))
                .with_history_unit(beta.then_some(&per_rate[..]))
        })
    }

    /// The units the network's b and β are stored in: relative when either is.
    pub fn bio_units(&self) -> BioUnits {
        let l = &self.neurons;
        if l.history_unit.is_some() || l.activation.threshold_unit.is_some() {
            BioUnits::Relative
        } else {
            BioUnits::Physical
        }
    }
}

impl GfrNetwork {
    /// The drive of every step and the effective recurrent weight: P `[B, T + readouts, H]`
    /// (pA; P_t = s ⊙ (W_in x_t + b_in) + c · b_rec, x = 0 at the readout steps) and
    /// c · W_rec `[H, H]`, so that the hidden layer's input is I_t = P_t + r_{t−1} (c W_rec).
    pub fn drive(&self, images: Tensor<3>, readouts: usize) -> (Tensor<3>, Tensor<2>) {
        let [batch, time, _] = images.dims();
        let h = self.hidden();
        let device = images.device();
        // the scales fold into the weights once per forward pass
        let row = |p: &Param<Tensor<1>>| p.val().reshape([1, h]);
        let (s_in, s_rec) = (row(&self.input_scale), row(&self.recurrent_scale));
        let zero = || Tensor::<2>::zeros([1, h], &device);
        let bias = |l: &Linear| {
            l.bias
                .as_ref()
                .map_or_else(zero, |b| b.val().reshape([1, h]))
        };
        let w_in = self.input.weight.val() * s_in.clone();
        let w_rec =
            self.recurrent.weight.val() * self.rate_scale.val().reshape([h, 1]) * s_rec.clone();
        let constant =
            bias(&self.input) * s_in + bias(&self.recurrent) * s_rec + row(&self.input_offset);
        let driven = if crate::device::is_cpu(&device) {
            images
                .reshape([batch * time, SIDE])
                .matmul(w_in)
                .reshape([batch, time, h])
        } else {
            // one product per digit: W_in's gradient is then a batched product and a sum, not
            // one matmul over the whole B·T inner length (slow on a GPU)
            images.matmul(w_in.unsqueeze::<3>())
        };
        let rest = Tensor::<3>::zeros([batch, readouts, h], &device);
        let current = Tensor::cat(vec![driven, rest], 1) + constant.unsqueeze::<3>();
        (current, w_rec)
    }

    /// The rates `[B, H]` as the readout and the recurrence see them (k ⊙ r).
    pub fn scaled_rates(&self, rates: Tensor<2>) -> Tensor<2> {
        let h = self.hidden();
        rates * self.rate_scale.val().reshape([1, h])
    }
}

impl LineClassifier for GfrNetwork {
    fn readouts(&self, images: Tensor<3>, readouts: usize) -> Vec<Tensor<2>> {
        let [batch, time, _] = images.dims();
        let h = self.hidden();
        // the fused scan runs the recurrence I_t = P_t + r_{t−1} W_rec through the neurons, on
        // the CPU in f32 (Burn's own type: no conversions, and f32 is precise enough here)
        let (current, w_rec) = self.drive(images, readouts);
        let neurons = self.neurons.scan_neurons().with_precision(Precision::F32);
        let rates = crate::scan::scan(&neurons, current, Some(w_rec), None);
        (time..time + readouts)
            .map(|t| {
                let r = rates
                    .clone()
                    .slice([0..batch, t..t + 1, 0..h])
                    .reshape([batch, h]);
                self.output.forward(self.scaled_rates(r))
            })
            .collect()
    }

    /// On a GPU one fused operation (`network::fused`: eight kernels forward and back, where
    /// Burn's operations launch about eighty); on the CPU, and where the fused kernels do not
    /// fit the device, Burn's operations.
    fn batch_loss(&self, images: Tensor<3>, labels: Tensor<1, Int>) -> (Tensor<1>, Tensor<1>) {
        match super::fused::score(self, &images, &labels) {
            Some(score) => (score.clone(), score.inner()),
            None => cross_entropy(self, images, labels),
        }
    }
}

/// Vanilla RNN: r_t = tanh(W_in x_t + b_in + W_rec r_{t−1} + b_rec).
#[derive(Module, Debug)]
pub struct RnnNetwork {
    /// W_in, b_in: 28 pixels of a row → hidden.
    pub input: Linear,
    /// W_rec, b_rec: hidden → hidden.
    pub recurrent: Linear,
    /// W_out, b_out: hidden → 10 logits.
    pub output: Linear,
}

impl RnnNetwork {
    /// A freshly initialised RNN of `hidden` units.
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
    /// The LSTM: 28 pixels of a row → hidden.
    pub lstm: Lstm,
    /// Readout: hidden state → 10 logits.
    pub output: Linear,
}

impl LstmNetwork {
    /// A freshly initialised LSTM of `hidden` units.
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

/// `n` neurons drawn from the dataset's `(bin, actv_bin)` records, seeded, without replacement
/// as the published code draws them; only when `n` exceeds the pool are they drawn with
/// replacement (the second element of the result says so).
pub fn biological_neurons(
    dataset: &crate::dataset::Dataset,
    pair: (u32, u32),
    n: usize,
    seed: u64,
) -> anyhow::Result<(Vec<NeuronParams>, bool)> {
    use rand::{Rng, SeedableRng, seq::index::sample};
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
    let replacement = n > recs.len();
    let picks: Vec<usize> = if replacement {
        (0..n).map(|_| rng.random_range(0..recs.len())).collect()
    } else {
        sample(&mut rng, recs.len(), n).into_vec()
    };
    let mut out: Vec<NeuronParams> = picks.iter().map(|&i| recs[i].params.clone()).collect();
    // the neurons of a layer share λ: records of the pair at another bin size (a hand-made
    // dataset) are an error; λ that differ by float32 rounding (PyTorch's results beside
    // gfr's) take the first neuron's
    let Some(first) = out.first() else {
        return Ok((out, replacement));
    };
    let (bin, lambda) = (first.bin_size, first.lambda.clone());
    for (&i, p) in picks.iter().zip(out.iter_mut()) {
        let close = p.lambda.len() == lambda.len()
            && p.lambda
                .iter()
                .zip(&lambda)
                .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs());
        if p.bin_size != bin || !close {
            anyhow::bail!(
                "the dataset's neuron of cell {} (pair {}/{}) has bin size {} ms and {} decay rates, \
                 cell {}'s {bin} ms and {}: the neurons of a network must share them",
                recs[i].cell_id,
                pair.0,
                pair.1,
                p.bin_size,
                p.lambda.len(),
                recs[picks[0]].cell_id,
                lambda.len()
            );
        }
        p.lambda.clone_from(&lambda);
    }
    pad_degrees(&mut out);
    Ok((out, replacement))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mnist;

    fn fitted_like(threshold: f64, c: [f64; 2]) -> NeuronParams {
        let mut p = NeuronParams::initial(
            20,
            ActivationParams {
                max_current: 300.0,
                max_firing_rate: 0.1,
                poly_coeff: c.to_vec(),
                threshold,
                bin_size: 20,
            },
        );
        p.alpha[0] = 6.0;
        p.alpha[3] = 2.5;
        p
    }

    #[test]
    fn operating_point_of_a_degree_one_neuron() {
        let p = fitted_like(200.0, [0.3, 1.2]);
        let o = OperatingPoint::of(&p);
        // g > 0 where c0² + c1² (x − b)/σ > 0: x* = b − σ c0²/c1²; g = γ tanh(1) at x* + σ/c1²
        let x_star = 200.0 - 300.0 * 0.09 / 1.44;
        assert!((o.threshold - x_star).abs() < 1e-9, "{o:?}");
        assert!((o.range - 300.0 / 1.44).abs() < 1e-9, "{o:?}");
        assert!((o.gain - 8.5 / 8.0).abs() < 1e-12);
        // the default neuron (threshold 0, g = tanh) is its own operating point
        let d = OperatingPoint::of(&default_neuron());
        assert!(d.threshold.abs() < 1e-12 && (d.range - 1.0).abs() < 1e-12 && d.gain == 1.0);
    }

    /// For default neurons the relative input is the identity: the same network, the same logits.
    #[test]
    fn relative_input_is_the_identity_for_default_neurons() {
        let device = crate::device::cpu();
        let (train, _) = mnist::builtin_sample();
        let (x, _) = crate::network::train::batch_tensors(&train, &[0, 1, 2, 3], &device);
        let neurons = vec![default_neuron(); 16];
        let a = GfrNetwork::new(&neurons, false, &device);
        let mut b = GfrNetwork::biological(&neurons, BioInput::Relative, &device);
        // the same weights (the tests share the backend's random generator)
        (b.input, b.recurrent, b.output) = (a.input.clone(), a.recurrent.clone(), a.output.clone());
        let la = crate::neuron::to_vec(a.readouts(x.clone(), 1).remove(0));
        let lb = crate::neuron::to_vec(b.readouts(x, 1).remove(0));
        assert!(
            la.iter().zip(&lb).all(|(p, q)| (p - q).abs() < 1e-5),
            "{la:?} vs {lb:?}"
        );
        assert!(la.iter().any(|v| v.abs() > 1e-3));
    }

    /// The relative input puts a resting neuron (no pixels, no recurrence) just above its
    /// threshold, whatever its b and σ; the published input leaves one with b = 0.7 σ silent.
    #[test]
    fn relative_input_drives_each_neuron_from_its_threshold() {
        let device = crate::device::cpu();
        let neurons: Vec<NeuronParams> = [(150.0, 1.0), (210.0, 2.0), (90.0, 0.7)]
            .iter()
            .map(|&(b, c1)| fitted_like(b, [0.0, c1]))
            .collect();
        let net = GfrNetwork::biological(&neurons, BioInput::Relative, &device);
        let blank = Tensor::<3>::zeros([1, SIDE, SIDE], &device);
        let (drive, _) = net.drive(blank.clone(), 1);
        let offset = crate::neuron::to_vec(net.input_offset.val());
        for (i, p) in neurons.iter().enumerate() {
            let o = OperatingPoint::of(p);
            // I · G = x*: the activation's input at onset sits at the threshold
            assert!((offset[i] * o.gain - o.threshold).abs() < 1e-3 * o.threshold);
        }
        let d = crate::neuron::to_vec(drive);
        assert!(d.iter().all(|v| v.is_finite()));
        let published = GfrNetwork::new(&neurons, true, &device);
        let bias = crate::neuron::to_vec(published.input.bias.as_ref().unwrap().val());
        let bound = 1.0 / (SIDE as f64).sqrt();
        assert!(bias.iter().all(|b| b.abs() <= bound), "{bias:?}");
    }

    /// Relative units change what Adam sees, not the network: the same logits and the same
    /// neurons saved; gradients follow the chain rule (∂L/∂b̂ = w ∂L/∂b for b = w b̂, and
    /// ∂L/∂β̃ scales by w / γ), so one Adam step moves each neuron's b by about lr · w pA
    /// (one drive unit's worth of lr) where physical units move it by lr pA.
    #[test]
    fn relative_units_change_the_steps_not_the_network() {
        let device = crate::device::cpu().autodiff();
        let (train, _) = mnist::builtin_sample();
        let neurons: Vec<NeuronParams> = [(150.0, 1.0), (210.0, 2.0), (90.0, 0.7)]
            .iter()
            .map(|&(b, c1)| {
                let mut p = fitted_like(b, [0.0, c1]);
                p.beta = (0..p.beta.len()).map(|k| 0.05 - 0.02 * k as f64).collect();
                p
            })
            .collect();
        let phys = GfrNetwork::biological(&neurons, BioInput::Relative, &device);
        let rel = phys.clone().with_bio_units(BioUnits::Relative);
        // the range w of each neuron on its activation's axis (the onset gain here is 8.5 / 8, so
        // w differs from the input scale d = w / G)
        let d: Vec<f64> = neurons
            .iter()
            .map(|p| OperatingPoint::of(p).range)
            .collect();
        let scale = crate::neuron::to_vec(phys.input_scale.val());
        assert!(
            d.iter()
                .zip(&scale)
                .all(|(w, s)| (w / s - 8.5 / 8.0).abs() < 1e-4)
        );
        let close = |a: &[f64], b: &[f64], tol: f64| {
            let scale = a.iter().fold(0f64, |m, x| m.max(x.abs()));
            assert!(scale > 0.0);
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= tol * scale, "{x} vs {y} ({a:?} vs {b:?})");
            }
        };
        // the same network
        let idx: Vec<usize> = (0..8).collect();
        let (x, _) = crate::network::train::batch_tensors(&train, &idx, &device);
        let logits = |n: &GfrNetwork| crate::neuron::to_vec(n.readouts(x.clone(), 1).remove(0));
        close(&logits(&phys), &logits(&rel), 1e-5);
        let (p, r) = (phys.neurons.to_params(20), rel.neurons.to_params(20));
        for (p, r) in p.iter().zip(&r) {
            close(&[p.activation.threshold], &[r.activation.threshold], 1e-6);
            close(&p.beta, &r.beta, 1e-5);
        }
        // the stored values are in drive units
        let stored = crate::neuron::to_vec(rel.neurons.activation.threshold.val());
        for (i, n) in neurons.iter().enumerate() {
            assert!((stored[i] * d[i] - n.activation.threshold).abs() < 1e-3);
        }
        // the chain rule
        let grads =
            |n: &GfrNetwork| crate::network::train::slice_grads(n.clone(), &train, &idx, &device).2;
        let (gp, gr) = (grads(&phys), grads(&rel));
        let b_grad = |g: &burn::optim::GradientsParams, n: &GfrNetwork| {
            crate::neuron::to_vec(g.get::<1>(n.neurons.activation.threshold.id).unwrap())
        };
        let (bp, br) = (b_grad(&gp, &phys), b_grad(&gr, &rel));
        let expected: Vec<f64> = bp.iter().zip(&d).map(|(g, d)| g * d).collect();
        close(&expected, &br, 1e-3);
        let beta_grad = |g: &burn::optim::GradientsParams, n: &GfrNetwork| {
            crate::neuron::to_vec(g.get::<2>(n.neurons.beta.id).unwrap())
        };
        let (hp, hr) = (beta_grad(&gp, &phys), beta_grad(&gr, &rel));
        let n_filters = neurons[0].beta.len();
        let expected: Vec<f64> = hp
            .iter()
            .enumerate()
            .map(|(k, g)| g * d[k / n_filters] / neurons[k / n_filters].activation.max_firing_rate)
            .collect();
        close(&expected, &hr, 1e-3);
        // one Adam step: b moves by lr pA (physical) or lr · w pA (relative)
        let lr = 1e-3;
        let step = |n: &GfrNetwork, g| {
            let before = crate::neuron::to_vec(n.neurons.activation.threshold_pa());
            let after = crate::optim::adam().step(lr, n.clone(), g);
            let after = crate::neuron::to_vec(after.neurons.activation.threshold_pa());
            before
                .iter()
                .zip(&after)
                .map(|(a, b)| (b - a).abs())
                .collect::<Vec<_>>()
        };
        let (moved_p, moved_r) = (step(&phys, gp), step(&rel, gr));
        for i in 0..neurons.len() {
            assert!(d[i] > 50.0, "range {} pA", d[i]);
            assert!((moved_p[i] - lr).abs() < 0.05 * lr, "{moved_p:?}");
            assert!(
                (moved_r[i] - lr * d[i]).abs() < 0.05 * lr * d[i],
                "{moved_r:?} {d:?}"
            );
        }
    }

    #[test]
    fn published_input_weights_but_not_bias_from_n_1_5_3() {
        let device = crate::device::cpu();
        device.seed(3);
        let neurons = vec![fitted_like(200.0, [0.0, 1.0]); 64];
        let net = GfrNetwork::new(&neurons, true, &device);
        let w = crate::neuron::to_vec(net.input.weight.val());
        let mean = w.iter().sum::<f64>() / w.len() as f64;
        let sd = (w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        assert!(
            (mean - 1.5).abs() < 0.1 && (sd - 3.0).abs() < 0.1,
            "{mean} {sd}"
        );
        let b = crate::neuron::to_vec(net.input.bias.as_ref().unwrap().val());
        let bound = 1.0 / (SIDE as f64).sqrt();
        assert!(b.iter().all(|v| v.abs() <= bound) && b.iter().any(|v| v.abs() > bound / 4.0));
        // σ/28 input, 1/H recurrence, rates unscaled
        let s = crate::neuron::to_vec(net.input_scale.val());
        assert!(s.iter().all(|v| (v - 300.0 / 28.0).abs() < 1e-4));
        let r = crate::neuron::to_vec(net.recurrent_scale.val());
        assert!(r.iter().all(|v| (v - 1.0 / 64.0).abs() < 1e-7));
        assert!(
            crate::neuron::to_vec(net.rate_scale.val())
                .iter()
                .all(|&k| k == 1.0)
        );
    }

    #[test]
    fn biological_neurons_are_drawn_without_replacement() {
        use crate::dataset::{Dataset, DatasetRecord};
        let mut ds = Dataset::default();
        for id in 0..10u64 {
            let params = fitted_like(100.0 + id as f64, [0.0, 1.0]);
            let r = crate::fit::FitResult::with_final_loss(params, 0.8, 0.8, 0.3);
            ds.insert(DatasetRecord::from_fit(id, &r, String::new()));
        }
        for seed in 0..5 {
            let (n, replaced) = biological_neurons(&ds, (20, 20), 10, seed).unwrap();
            let mut b: Vec<i64> = n.iter().map(|p| p.activation.threshold as i64).collect();
            b.sort();
            assert_eq!(b, (100..110).collect::<Vec<_>>());
            assert!(!replaced);
        }
        let (n, replaced) = biological_neurons(&ds, (20, 20), 25, 0).unwrap();
        assert!(replaced && n.len() == 25);
        assert!(biological_neurons(&ds, (50, 20), 4, 0).is_err());
    }

    /// λ rounded to float32 (PyTorch's results beside gfr's) are the same decay rates: the
    /// network takes them as the first drawn neuron's. A record of another bin size filed
    /// under the pair (a hand-made dataset) is an error naming its cell, not a panic.
    #[test]
    fn biological_neurons_share_the_decay_rates_or_are_refused() {
        use crate::dataset::{Dataset, DatasetRecord};
        let record = |id: u64, params: NeuronParams| {
            let r = crate::fit::FitResult::with_final_loss(params, 0.8, 0.8, 0.3);
            DatasetRecord::from_fit(id, &r, String::new())
        };
        let mut ds = Dataset::default();
        for id in 0..4u64 {
            let mut p = fitted_like(100.0 + id as f64, [0.0, 1.0]);
            if id % 2 == 1 {
                p.lambda = p.lambda.iter().map(|&l| l as f32 as f64).collect();
            }
            ds.insert(record(id, p));
        }
        let (n, _) = biological_neurons(&ds, (20, 20), 4, 0).unwrap();
        assert!(n.iter().all(|p| p.lambda == n[0].lambda));
        let device = crate::device::cpu();
        let _ = GfrNetwork::biological(&n, super::BioInput::Relative, &device);
        let mut other = fitted_like(50.0, [0.0, 1.0]);
        other.lambda = crate::neuron::decay_rates(100);
        let mut rec = record(9, other);
        rec.bin_size = 20;
        ds.pairs.get_mut(&(20, 20)).unwrap().push(rec);
        let e = biological_neurons(&ds, (20, 20), 5, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cell 9") && e.contains("must share"), "{e}");
        assert!(!e.contains("  "), "one line: {e}");
        assert!(
            biological_neurons(&ds, (20, 20), 0, 0)
                .unwrap()
                .0
                .is_empty()
        );
    }
}
