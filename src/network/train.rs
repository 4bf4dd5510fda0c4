//! Training and evaluating a line-by-line MNIST classifier: Adam, cross-entropy on the first
//! zero-input readout, gradients clipped to global norm 5.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer, OptimizerRecord};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::model::{LineClassifier, vote};
use crate::data::mnist::{Mnist, SIDE};

/// Zero-input readout steps scored by the vote.
pub const VOTE_STEPS: usize = 5;
/// Global gradient-norm clip.
pub const CLIP_NORM: f64 = 5.0;

/// One epoch of the training history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochStats {
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Mean cross-entropy per training image over the epoch's mini-batches.
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    pub train_loss: f64,
    #[serde(default = "nan", deserialize_with = "super::experiment::f64_or_nan")]
    /// Fraction of training images classified correctly during the epoch's mini-batches (NaN if not
    /// recorded).
    pub train_accuracy: f64,
    /// Test accuracy (fraction) of the first zero-input readout, after the epoch.
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    pub test_accuracy_step1: f64,
    #[serde(default = "nan", deserialize_with = "super::experiment::f64_or_nan")]
    /// Test accuracy (fraction) of the vote over [`VOTE_STEPS`] zero-input readouts (NaN if not
    /// recorded).
    pub test_accuracy_vote: f64,
    /// Training time of the epoch (evaluation left out), s.
    #[serde(default = "nan", deserialize_with = "super::experiment::f64_or_nan")]
    pub seconds: f64,
}

/// The line printed after each epoch.
impl std::fmt::Display for EpochStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "epoch {:>3}: train loss {:.4}, train acc {:.3}, test acc {:.3} (step 1) / {:.3} (vote), {:.1} s",
            self.epoch,
            self.train_loss,
            self.train_accuracy,
            self.test_accuracy_step1,
            self.test_accuracy_vote,
            self.seconds
        )
    }
}

fn nan() -> f64 {
    f64::NAN
}

/// How the learning rate changes over a run (`gfr network --lr-schedule`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// The same lr every step, as the published networks train.
    Constant,
    /// gfr's default: the lr for the first 3/4 of the steps, then a half cosine down to 0 over
    /// the last quarter ([`ANNEAL_FRACTION`]), so that the run ends at a minimum instead of at
    /// the last mini-batch's step (see the README for the measurements).
    #[default]
    Anneal,
}

/// The final fraction of a run's steps over which [`LrSchedule::Anneal`] lowers the lr.
pub const ANNEAL_FRACTION: f64 = 0.25;

impl LrSchedule {
    /// The schedule's name as the CLI and result files spell it (`constant`, `anneal`).
    pub fn name(self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Anneal => "anneal",
        }
    }

    /// The lr of step `step` (0-based) of `steps`, for a base lr `lr`.
    pub fn lr_at(self, lr: f64, step: usize, steps: usize) -> f64 {
        match self {
            LrSchedule::Constant => lr,
            LrSchedule::Anneal => {
                let frac = step as f64 / steps.max(1) as f64;
                let start = 1.0 - ANNEAL_FRACTION;
                if frac < start {
                    lr
                } else {
                    let phase = (frac - start) / ANNEAL_FRACTION;
                    lr * 0.5 * (1.0 + (std::f64::consts::PI * phase).cos())
                }
            }
        }
    }
}

/// Settings of a training run.
pub struct TrainSettings {
    /// Base Adam learning rate.
    pub lr: f64,
    /// How the lr changes over the run.
    pub schedule: LrSchedule,
    /// Number of epochs to train.
    pub epochs: usize,
    /// Images per mini-batch.
    pub batch_size: usize,
    /// Seed of the shuffling of the training images each epoch.
    pub seed: u64,
}

/// Callbacks of network training (no-ops by default); `gfr network` draws its progress bar
/// and epoch lines through them.
pub trait TrainProgress {
    /// Epoch `epoch` (0-based) of `epochs` starts; it has `batches` mini-batches.
    fn epoch_started(&self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// A mini-batch was trained.
    fn batch_done(&self) {}
    /// An epoch ended (trained and evaluated).
    fn epoch_done(&self, _stats: &EpochStats) {}
    /// A warning (e.g. a checkpoint that could not be saved).
    fn note(&self, _line: &str) {}
    /// Training ended (all epochs done, or cancelled).
    fn finished(&self) {}
    /// Whether to stop (asked after every mini-batch): the epoch under way is dropped and
    /// training returns the epochs done. Never, by default.
    fn cancelled(&self) -> bool {
        false
    }
}

impl TrainProgress for () {}

pub(crate) fn batch_tensors(
    data: &Mnist,
    idx: &[usize],
    device: &Device,
) -> (Tensor<3>, Tensor<1, Int>) {
    let mut pixels = Vec::with_capacity(idx.len() * SIDE * SIDE);
    for &i in idx {
        pixels.extend_from_slice(data.image(i));
    }
    let labels: Vec<i64> = idx.iter().map(|&i| data.labels[i] as i64).collect();
    (
        Tensor::from_data(TensorData::new(pixels, [idx.len(), SIDE, SIDE]), device),
        Tensor::from_data(TensorData::new(labels, [idx.len()]), device),
    )
}

/// Mean loss, correct count and gradients of one slice of a batch, computed on a fork of the
/// model (fresh autodiff leaves, same parameter ids) so that slices on different threads build
/// separate graphs. The loss and count stay on the device, as a `[2]` tensor [loss, count].
fn slice_pass<M: LineClassifier>(
    model: M,
    data: &Mnist,
    idx: &[usize],
    device: &Device,
) -> (Tensor<1>, GradientsParams) {
    let model = model.fork(device);
    let (x, y) = batch_tensors(data, idx, device);
    let (objective, score) = model.batch_loss(x, y);
    let grads = GradientsParams::from_grads(objective.backward(), &model);
    (score, grads)
}

/// [`slice_pass`] with the loss and count read.
pub(crate) fn slice_grads<M: LineClassifier>(
    model: M,
    data: &Mnist,
    idx: &[usize],
    device: &Device,
) -> (f64, usize, GradientsParams) {
    let (score, grads) = slice_pass(model, data, idx, device);
    let score = crate::neuron::to_vec(score);
    (score[0], score[1] as usize, grads)
}

/// A mini-batch's mean loss and correct count: read at once on the CPU, left on the device on
/// a GPU until the epoch ends (reading them every batch would wait for the device each time).
#[allow(clippy::large_enum_variant)] // one per batch
pub enum BatchScore {
    /// Read on the host.
    Host {
        /// Mean cross-entropy of the batch's images.
        loss: f64,
        /// Images of the batch classified correctly.
        correct: usize,
    },
    /// [loss, count], `[2]`.
    Device(Tensor<1>),
}

/// Summed loss (each batch's mean × its size) and correct count of an epoch's batches, in
/// order, with one read of the device for all of them.
fn epoch_totals(scores: Vec<(usize, BatchScore)>) -> (f64, usize) {
    let on_device: Vec<Tensor<1>> = scores
        .iter()
        .filter_map(|(_, s)| match s {
            BatchScore::Device(t) => Some(t.clone()),
            BatchScore::Host { .. } => None,
        })
        .collect();
    let read = if on_device.is_empty() {
        Vec::new()
    } else {
        crate::neuron::to_vec(Tensor::cat(on_device, 0))
    };
    let mut read = read.chunks(2);
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    for (size, s) in scores {
        let (loss, right) = match s {
            BatchScore::Host { loss, correct } => (loss, correct),
            BatchScore::Device(_) => {
                let score = read.next().expect("a score per batch");
                (score[0], score[1] as usize)
            }
        };
        loss_sum += loss * size as f64;
        correct += right;
    }
    (loss_sum, correct)
}

/// Weighted sum of several gradient sets of one module.
struct WeightedSum<'a> {
    parts: Vec<(f64, GradientsParams)>,
    out: &'a mut GradientsParams,
}

impl ModuleVisitor for WeightedSum<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let sum = self
            .parts
            .iter_mut()
            .filter_map(|(w, g)| g.remove::<D>(param.id).map(|g| g * *w))
            .reduce(|a, b| a + b);
        if let Some(sum) = sum {
            self.out.register(param.id, sum);
        }
    }
}

/// Mean cross-entropy, correct count and gradients of a mini-batch. On the CPU the batch is
/// split over the cores (data parallel); the gradients are the slices' gradients weighted by
/// their sizes, i.e. those of the whole batch's mean loss.
pub fn batch_grads<M: LineClassifier>(
    model: &M,
    data: &Mnist,
    idx: &[usize],
    device: &Device,
) -> (BatchScore, GradientsParams) {
    // on a GPU the device already runs the batch in parallel
    if !crate::device::is_cpu(device) {
        let (score, grads) = slice_pass(model.clone(), data, idx, device);
        return (BatchScore::Device(score), grads);
    }
    let threads = crate::parallel::cores();
    let parts = if idx.len() >= 32 {
        threads.min(idx.len() / 16).max(1)
    } else {
        1
    };
    if parts == 1 {
        let (loss, correct, grads) = slice_grads(model.clone(), data, idx, device);
        return (BatchScore::Host { loss, correct }, grads);
    }
    let per = idx.len().div_ceil(parts);
    let results: Vec<(usize, (f64, usize, GradientsParams))> = std::thread::scope(|scope| {
        let handles: Vec<_> = idx
            .chunks(per)
            .map(|slice| {
                let m = model.clone();
                let device = device.clone();
                scope.spawn(move || {
                    let grads = crate::scan::cpu::serial(|| slice_grads(m, data, slice, &device));
                    (slice.len(), grads)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("training thread"))
            .collect()
    });
    let n = idx.len() as f64;
    let loss = results
        .iter()
        .map(|(k, (l, _, _))| *k as f64 * l)
        .sum::<f64>()
        / n;
    let correct = results.iter().map(|(_, (_, c, _))| c).sum();
    let mut grads = GradientsParams::new();
    let parts = results
        .into_iter()
        .map(|(k, (_, _, g))| (k as f64 / n, g))
        .collect();
    model.visit(&mut WeightedSum {
        parts,
        out: &mut grads,
    });
    (BatchScore::Host { loss, correct }, grads)
}

/// Largest difference between two digits' first readouts over the first `digits` digits of
/// `data` (0: every digit gets the same answer, so no gradient reaches the input weights).
pub fn logit_spread<M: LineClassifier>(
    model: &M,
    data: &Mnist,
    digits: usize,
    device: &Device,
) -> f64 {
    let model = model.valid();
    let device = &device.clone().without_autodiff();
    let idx: Vec<usize> = (0..data.len().min(digits)).collect();
    if idx.len() < 2 {
        return f64::INFINITY;
    }
    let (x, _) = batch_tensors(data, &idx, device);
    let logits = model.readouts(x, 1).remove(0);
    let first = logits.clone().slice([0..1, 0..super::model::CLASSES]);
    (logits - first).abs().max().into_scalar::<f32>() as f64
}

/// Whether the first readout is the same for the first 256 digits of `data`: the hidden layer
/// is silent at the readout step, so no gradient reaches the input weights and training
/// cannot start (e.g. biological neurons whose thresholds the scaled input never reaches).
pub fn silent_readout<M: LineClassifier>(model: &M, data: &Mnist, device: &Device) -> bool {
    logit_spread(model, data, 256, device) < 1e-6
}

/// Step-1 and vote accuracy of `model` on `data`.
pub fn evaluate<M: LineClassifier>(model: &M, data: &Mnist, device: &Device) -> (f64, f64) {
    // without autodiff: no graph, no saved states
    let model = model.valid();
    let device = &device.clone().without_autodiff();
    let (mut step1, mut voted) = (0usize, 0usize);
    let idx: Vec<usize> = (0..data.len()).collect();
    for chunk in idx.chunks(500) {
        let (x, y) = batch_tensors(data, chunk, device);
        let logits = model.readouts(x, VOTE_STEPS);
        let correct =
            |pred: Tensor<1, Int>| pred.equal(y.clone()).int().sum().into_scalar::<i64>() as usize;
        step1 += correct(logits[0].clone().argmax(1).reshape([chunk.len()]));
        voted += correct(vote(&logits).argmax(1).reshape([chunk.len()]));
    }
    (
        step1 as f64 / data.len() as f64,
        voted as f64 / data.len() as f64,
    )
}

pub use crate::optim::{adam, clip_global_norm};

/// Trains `model` with Adam on `train`, evaluating on `test` after each epoch, silently.
/// `device` must be an autodiff device. Returns the trained model and the history.
pub fn train<M: LineClassifier>(
    model: M,
    train: &Mnist,
    test: &Mnist,
    s: &TrainSettings,
    device: &Device,
) -> (M, Vec<EpochStats>) {
    train_resumable(model, adam(), Vec::new(), train, test, s, device, None, &())
}

/// [`train`] from a state after `history.len()` epochs (model and optimizer as they were
/// then; the shuffling stream is replayed), saving a [`Checkpoint`] after every epoch and
/// reporting through `progress`.
#[allow(clippy::too_many_arguments)]
pub fn train_resumable<M: LineClassifier>(
    mut model: M,
    mut optim: ModuleOptimizer,
    mut history: Vec<EpochStats>,
    train: &Mnist,
    test: &Mnist,
    s: &TrainSettings,
    device: &Device,
    checkpoint: Option<&Checkpoint>,
    progress: &dyn TrainProgress,
) -> (M, Vec<EpochStats>) {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    for _ in 0..history.len() {
        order.shuffle(&mut rng);
    }
    let batches = train.len().div_ceil(s.batch_size);
    let steps = batches * s.epochs;
    let mut step = batches * history.len();
    for epoch in history.len()..s.epochs {
        let t0 = Instant::now();
        progress.epoch_started(epoch, s.epochs, batches);
        order.shuffle(&mut rng);
        let mut scores = Vec::with_capacity(batches);
        for chunk in order.chunks(s.batch_size) {
            let (score, grads) = batch_grads(&model, train, chunk, device);
            scores.push((chunk.len(), score));
            let lr = s.schedule.lr_at(s.lr, step, steps);
            model = crate::optim::step_clipped(&mut optim, lr, model, grads, CLIP_NORM);
            step += 1;
            progress.batch_done();
            if progress.cancelled() {
                progress.finished();
                return (model, history);
            }
        }
        let (loss_sum, correct) = epoch_totals(scores);
        let train_seconds = t0.elapsed().as_secs_f64();
        let (step1, voted) = evaluate(&model, test, device);
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss: loss_sum / train.len() as f64,
            train_accuracy: correct as f64 / train.len() as f64,
            test_accuracy_step1: step1,
            test_accuracy_vote: voted,
            seconds: train_seconds,
        };
        progress.epoch_done(&stats);
        history.push(stats);
        if let Some(c) = checkpoint
            && let Err(e) = c.save(&model, &optim, &history)
        {
            progress.note(&format!("warning: checkpoint not saved: {e:#}"));
        }
    }
    progress.finished();
    (model, history)
}

/// A training run's checkpoint folder (`SAVE_DIR/{name}.checkpoint/`), rewritten after every
/// epoch: `model-e{k}.bpk` (Burn's recorder, parameter ids kept), `optim-e{k}.bpk` (Adam's
/// state) and `state.json` (written last: epoch k, history, the run's settings `run`).
pub struct Checkpoint {
    /// The checkpoint folder (`SAVE_DIR/{name}.checkpoint/`).
    pub dir: PathBuf,
    /// The run's settings; a checkpoint of other settings is never resumed.
    pub run: serde_json::Value,
}

/// `state.json` of a [`Checkpoint`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Epochs done (k), the number in the `.bpk` file names.
    pub epoch: usize,
    /// The training history of those epochs.
    pub history: Vec<EpochStats>,
    /// The settings of the run that wrote the checkpoint.
    pub run: serde_json::Value,
}

impl Checkpoint {
    /// The saved state, if any (an unreadable one is an error naming the file).
    pub fn state(&self) -> Result<Option<CheckpointState>> {
        let path = self.dir.join("state.json");
        if !path.exists() {
            return Ok(None);
        }
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let st = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a gfr checkpoint state", path.display()))?;
        Ok(Some(st))
    }

    fn save<M: Module>(
        &self,
        model: &M,
        optim: &ModuleOptimizer,
        history: &[EpochStats],
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        crate::data::pickle::clean_stale_temporaries(&self.dir);
        let epoch = history.len();
        let pid = std::process::id();
        let model_path = self.dir.join(format!("model-e{epoch}.bpk"));
        let tmp = self.dir.join(format!(".model-e{epoch}.bpk.{pid}.tmp"));
        model
            .clone()
            .save_file(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", tmp.display()))?;
        rename(&tmp, &model_path)?;
        let optim_path = self.dir.join(format!("optim-e{epoch}.bpk"));
        let tmp = self.dir.join(format!(".optim-e{epoch}.bpk.{pid}.tmp"));
        optim
            .to_record()
            .save(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", tmp.display()))?;
        rename(&tmp, &optim_path)?;
        let state = CheckpointState {
            epoch,
            history: history.to_vec(),
            run: self.run.clone(),
        };
        crate::data::pickle::write_atomic(
            &self.dir.join("state.json"),
            &serde_json::to_vec_pretty(&state)?,
        )?;
        // the files of earlier epochs are no longer needed
        for k in 0..epoch {
            for f in [format!("model-e{k}.bpk"), format!("optim-e{k}.bpk")] {
                let _ = std::fs::remove_file(self.dir.join(f));
            }
        }
        Ok(())
    }

    /// Loads the checkpoint into `model` (same architecture): the model, Adam's state and
    /// the history, to continue with [`train_resumable`]. None without a saved state.
    pub fn load<M: Module>(
        &self,
        model: M,
    ) -> Result<Option<(M, ModuleOptimizer, Vec<EpochStats>)>> {
        let Some(st) = self.state()? else {
            return Ok(None);
        };
        if st.run != self.run {
            anyhow::bail!(
                "{}: the checkpoint belongs to a run with other settings",
                self.dir.display()
            );
        }
        let model_path = self.dir.join(format!("model-e{}.bpk", st.epoch));
        let model = model
            .try_load_file(&model_path)
            .map_err(|e| anyhow::anyhow!("cannot load {}: {e:?}", model_path.display()))?;
        let optim_path = self.dir.join(format!("optim-e{}.bpk", st.epoch));
        let record = OptimizerRecord::load(&optim_path)
            .map_err(|e| anyhow::anyhow!("cannot load {}: {e:?}", optim_path.display()))?;
        Ok(Some((model, adam().load_record(record), st.history)))
    }

    /// Removes the checkpoint (after the final network is saved).
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| {
        let _ = std::fs::remove_file(from);
        format!(
            "cannot move {} into place at {}",
            from.display(),
            to.display()
        )
    })
}

/// Trainable and total parameter counts (a parameter is trainable when it requires grad).
pub fn parameter_counts<M: Module>(model: &M) -> (usize, usize) {
    struct Count(usize, usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let v = param.val();
            let n = v.shape().num_elements();
            self.1 += n;
            if v.is_require_grad() {
                self.0 += n;
            }
        }
    }
    let mut c = Count(0, 0);
    model.visit(&mut c);
    (c.0, c.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::mnist;
    use crate::network::{GfrNetwork, default_neuron};

    #[test]
    fn the_annealed_lr_is_constant_for_three_quarters_then_falls_to_zero() {
        let lr = |step| LrSchedule::Anneal.lr_at(1e-3, step, 100);
        assert!((0..75).all(|s| lr(s) == 1e-3));
        assert!((75..99).all(|s| lr(s + 1) < lr(s)));
        assert!((lr(87) - 0.5e-3).abs() < 0.07e-3, "{}", lr(87));
        assert!(lr(99) < 1e-5 && lr(99) > 0.0);
        assert!((0..100).all(|s| LrSchedule::Constant.lr_at(1e-3, s, 100) == 1e-3));
    }

    #[test]
    fn a_silent_readout_is_detected() {
        let device = crate::device::cpu();
        let (train, _) = mnist::builtin_sample();
        let net = GfrNetwork::new(&vec![default_neuron(); 8], false, &device);
        assert!(!silent_readout(&net, &train, &device));
        let mut deaf = default_neuron();
        deaf.activation.threshold = 1e6;
        let net = GfrNetwork::new(&vec![deaf; 8], false, &device);
        assert!(silent_readout(&net, &train, &device));
    }

    /// Gradients of a mini-batch split over threads equal those of the whole batch.
    #[test]
    fn data_parallel_gradients_equal_whole_batch_gradients() {
        let (train, _) = mnist::builtin_sample();
        let device = crate::device::cpu().autodiff();
        let net = GfrNetwork::new(&vec![default_neuron(); 12], false, &device);
        let idx: Vec<usize> = (0..48).collect();
        let (loss_a, correct_a, grads_a) = slice_grads(net.clone(), &train, &idx, &device);
        // force a split into three slices of 16
        let mut parts = Vec::new();
        for slice in idx.chunks(16) {
            let (l, c, g) = slice_grads(net.clone(), &train, slice, &device);
            parts.push((l, c, (slice.len() as f64 / 48.0, g)));
        }
        let loss_b: f64 = parts.iter().map(|p| p.0 / 3.0).sum();
        let correct_b: usize = parts.iter().map(|p| p.1).sum();
        let mut grads_b = GradientsParams::new();
        net.visit(&mut WeightedSum {
            parts: parts.into_iter().map(|p| p.2).collect(),
            out: &mut grads_b,
        });
        assert!((loss_a - loss_b).abs() < 1e-5, "{loss_a} vs {loss_b}");
        assert_eq!(correct_a, correct_b);
        let flat = |g: &GradientsParams| -> Vec<f32> {
            let w = g.get::<2>(net.recurrent.weight.id).unwrap();
            let a = g.get::<2>(net.neurons.alpha.id).unwrap();
            [w, a]
                .into_iter()
                .flat_map(|t| t.into_data().try_to_vec::<f32>().unwrap())
                .collect()
        };
        let (a, b) = (flat(&grads_a), flat(&grads_b));
        let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(scale > 0.0);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * scale, "{x} vs {y}");
        }
        // and the threaded path gives the same numbers
        let (score, grads_c) = batch_grads(&net, &train, &idx, &device);
        let (loss_c, correct_c) = epoch_totals(vec![(1, score)]);
        assert!((loss_a - loss_c).abs() < 1e-5 && correct_a == correct_c);
        for (x, y) in a.iter().zip(&flat(&grads_c)) {
            assert!((x - y).abs() <= 1e-4 * scale, "{x} vs {y}");
        }
    }
}
