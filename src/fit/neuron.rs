//! Fitting the filters α, β (and optionally the activation) by backpropagation through time
//! with the fused scan and Burn's Adam (spec §3, second stage).

use burn::module::Param;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::config::RunConfig;
use super::evr::explained_variance_ratio;
use crate::data::CellRecording;
use crate::neuron::{GfrLayer, NeuronParams};
use crate::scan::{self, NeuronGrads, SweepBatch};

/// Stimuli used for training; validation is on Noise 1 and testing on Noise 2.
pub const TRAIN_STIMULI: [&str; 3] = ["Long Square", "Ramp", "Noise 1"];
pub const VALIDATION_STIMULUS: &str = "Noise 1";
pub const TEST_STIMULUS: &str = "Noise 2";

/// Repeats of one stimulus: (current, rate) per repeat, at the model bin size.
#[derive(Clone, Debug)]
pub struct Repeats {
    pub current: Vec<Vec<f64>>,
    pub rate: Vec<Vec<f64>>,
}

impl Repeats {
    fn from_cell(cell: &CellRecording, name: &str, bin: u32) -> Self {
        let (mut current, mut rate) = (Vec::new(), Vec::new());
        for s in cell.sweeps_named(name) {
            if let Some((c, f)) = s.traces(bin)
                && !c.is_empty()
            {
                current.push(c.to_vec());
                rate.push(f.to_vec());
            }
        }
        Self { current, rate }
    }

    pub fn batch(&self) -> SweepBatch {
        let pairs: Vec<(&[f64], &[f64])> = self
            .current
            .iter()
            .zip(&self.rate)
            .map(|(c, f)| (c.as_slice(), f.as_slice()))
            .collect();
        SweepBatch::single_neuron(&pairs, 0)
    }

    /// EVR of a neuron driven by the first repeat's current.
    pub fn evr(&self, p: &NeuronParams) -> f64 {
        let Some(current) = self.current.first() else {
            return f64::NAN;
        };
        let prediction = scan::predict(p, current);
        let repeats: Vec<&[f64]> = self.rate.iter().map(Vec::as_slice).collect();
        explained_variance_ratio(&repeats, &prediction)
    }
}

/// One cell's data at the model bin size, grouped by stimulus.
#[derive(Clone, Debug)]
pub struct FitData {
    pub bin_size: u32,
    /// Training groups: (stimulus name, its sweeps padded into one batch).
    pub train: Vec<(String, SweepBatch)>,
    pub validation: Repeats,
    pub test: Repeats,
    test_batch: SweepBatch,
}

impl FitData {
    /// Groups a cell's sweeps; `Err` names what is missing.
    pub fn from_cell(cell: &CellRecording, bin: u32) -> Result<Self, String> {
        for name in [VALIDATION_STIMULUS, TEST_STIMULUS] {
            if !cell.has_stimulus(name) {
                return Err(format!("no {name} sweeps (needed for validation and test)"));
            }
        }
        let mut train = Vec::new();
        for name in TRAIN_STIMULI {
            let r = Repeats::from_cell(cell, name, bin);
            if !r.current.is_empty() {
                train.push((name.to_string(), r.batch()));
            }
        }
        let validation = Repeats::from_cell(cell, VALIDATION_STIMULUS, bin);
        let test = Repeats::from_cell(cell, TEST_STIMULUS, bin);
        if validation.current.is_empty() || test.current.is_empty() {
            return Err(format!(
                "Noise 1 or Noise 2 sweeps are empty at bin size {bin} ms"
            ));
        }
        let test_batch = test.batch();
        Ok(Self {
            bin_size: bin,
            train,
            validation,
            test,
            test_batch,
        })
    }
}

/// Poisson loss per valid bin of a batch, averaged with each sweep's weight.
fn per_bin(sweep_loss: &[f64], batch: &SweepBatch) -> f64 {
    let total: f64 = sweep_loss
        .iter()
        .zip(&batch.weight)
        .map(|(l, w)| l * w)
        .sum();
    let bins: f64 = batch
        .len
        .iter()
        .zip(&batch.weight)
        .map(|(&n, w)| n as f64 * w)
        .sum();
    total / bins.max(1.0)
}

/// Mean per-bin loss of a neuron on a batch, without gradients.
pub fn batch_loss(p: &NeuronParams, batch: &SweepBatch, eps: f64) -> f64 {
    let dt = p.bin_size as f64;
    let losses: Vec<f64> = (0..batch.n_sweeps())
        .map(|s| {
            let len = batch.len[s];
            let c = &batch.current[s * batch.time..s * batch.time + len];
            let y = &batch.target[s * batch.time..s * batch.time + len];
            scan::poisson_nll(&scan::predict(p, c), y, dt, eps)
        })
        .collect();
    per_bin(&losses, batch)
}

/// Outcome of one `{lr, epochs}` run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub params: NeuronParams,
    pub train_losses: Vec<f64>,
    pub test_losses: Vec<f64>,
    /// Validation EVR (Noise 1).
    pub evr1: f64,
}

/// Settings shared by the runs of one cell.
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub eps: f64,
    /// L1 weight C on ‖α‖₁ + ‖β‖₁.
    pub l1: f64,
    pub train_activation: bool,
}

fn grad_tensor(values: Vec<f64>, shape: [usize; 2], device: &Device) -> Tensor<2> {
    Tensor::from_data(
        TensorData::new(
            values.into_iter().map(|x| x as f32).collect::<Vec<_>>(),
            shape,
        ),
        device,
    )
}

fn register_grad<const D: usize>(
    grads: &mut GradientsParams,
    param: &Param<Tensor<D>>,
    g: Tensor<D>,
) {
    if param.val().is_require_grad() {
        grads.register(param.id, g);
    }
}

/// Turns scan gradients (plus the L1 term) into Burn gradients for the layer's trainable
/// parameters.
fn layer_grads(
    layer: &GfrLayer,
    g: &NeuronGrads,
    p: &NeuronParams,
    l1: f64,
    device: &Device,
) -> GradientsParams {
    let sign = |x: f64| {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let n = g.alpha.len();
    let alpha: Vec<f64> = g
        .alpha
        .iter()
        .zip(&p.alpha)
        .map(|(g, a)| g + l1 * sign(*a))
        .collect();
    let beta: Vec<f64> = g
        .beta
        .iter()
        .zip(&p.beta)
        .map(|(g, b)| g + l1 * sign(*b))
        .collect();
    let mut grads = GradientsParams::new();
    register_grad(&mut grads, &layer.alpha, grad_tensor(alpha, [1, n], device));
    register_grad(&mut grads, &layer.beta, grad_tensor(beta, [1, n], device));
    let act = &layer.activation;
    let b = grad_tensor(vec![g.threshold], [1, 1], device).reshape([1]);
    register_grad(&mut grads, &act.threshold, b);
    register_grad(
        &mut grads,
        &act.coeffs,
        grad_tensor(g.coeffs.clone(), [1, g.coeffs.len()], device),
    );
    grads
}

/// One run: a fresh Adam on a neuron starting at `init`; each epoch visits the training
/// groups in a shuffled order with one step per group. Stops early when the last three train
/// losses are equal. `None` when the loss became non-finite (the run is discarded).
pub fn train_run(
    init: &NeuronParams,
    data: &FitData,
    run: &RunConfig,
    settings: &RunSettings,
    device: &Device,
    rng: &mut StdRng,
    mut on_epoch: impl FnMut(usize, f64),
) -> Option<RunResult> {
    let ad = device.clone().autodiff();
    let grad_device = device.clone();
    let bin = init.bin_size;
    let dt = bin as f64;
    let mut layer = GfrLayer::new(std::slice::from_ref(init), &ad)
        .with_trainable_filters(true)
        .with_trainable_activation(settings.train_activation);
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let (mut train_losses, mut test_losses) = (Vec::new(), Vec::new());
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let mut params = init.clone();
    for epoch in 0..run.epochs {
        order.shuffle(rng);
        let mut epoch_loss = 0.0;
        for &g in &order {
            let batch = &data.train[g].1;
            let out = scan::loss_and_grad(std::slice::from_ref(&params), batch, dt, settings.eps);
            let loss = per_bin(&out.sweep_loss, batch);
            let grads_ok = out.grads[0]
                .alpha
                .iter()
                .chain(&out.grads[0].beta)
                .all(|x| x.is_finite());
            if !loss.is_finite() || !grads_ok {
                return None;
            }
            epoch_loss += loss;
            let grads = layer_grads(&layer, &out.grads[0], &params, settings.l1, &grad_device);
            layer = optim.step(run.lr, layer, grads);
            params = layer.to_params(bin).remove(0);
        }
        train_losses.push(epoch_loss / order.len() as f64);
        let test_loss = batch_loss(&params, &data.test_batch, settings.eps);
        if !test_loss.is_finite() {
            return None;
        }
        test_losses.push(test_loss);
        on_epoch(epoch, train_losses[epoch]);
        let n = train_losses.len();
        if n >= 3
            && train_losses[n - 1] == train_losses[n - 2]
            && train_losses[n - 2] == train_losses[n - 3]
        {
            break;
        }
    }
    let evr1 = data.validation.evr(&params);
    Some(RunResult {
        params,
        train_losses,
        test_losses,
        evr1,
    })
}
