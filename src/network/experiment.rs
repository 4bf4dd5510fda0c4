//! The network experiment of `gfr network` as one library call: [`run_network`] takes a
//! [`NetworkSpec`] (every setting of a run), loads MNIST, builds the network (GFR neurons of
//! the chosen source, or an RNN / LSTM baseline with about as many parameters), trains it with
//! a checkpoint after every epoch, and saves `SAVE_DIR/{name}.bpk` and `SAVE_DIR/{name}.json`
//! (a [`NetworkRun`]).
//!
//! What a run has to say (which digits it uses, notes, warnings) goes to a [`NetworkObserver`];
//! the command line prints it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::diagnose::{Diagnostics, diagnose};
use super::model::{
    self, BioInput, BioUnits, GfrNetwork, HISTORY_SCALE, LineClassifier, LstmNetwork, RnnNetwork,
    default_neuron, matched_hidden_sizes,
};
use super::train::{
    Checkpoint, EpochStats, LrSchedule, TrainProgress, TrainSettings, adam, parameter_counts,
    silent_readout, train_resumable,
};
use crate::data::mnist::{self, Mnist, MnistSource};
use crate::device::Backend;
use crate::neuron::NeuronParams;

/// Where the hidden GFR neurons come from.
#[derive(Clone, Debug, PartialEq)]
pub enum NeuronSource {
    /// `n_nodes` copies of [`default_neuron`].
    Default,
    /// `n_nodes` neurons drawn (with the seed) from a dataset of fitted neurons, for the pair
    /// (bin size, activation bin size); with replacement when the dataset has fewer.
    Biological {
        /// Path of the dataset pickle (`gfr dataset build` writes it).
        dataset: PathBuf,
        /// (bin size, activation bin size) of the neurons drawn (ms).
        pair: (u32, u32),
    },
    /// The trained neurons (`final_neurons`) of a network JSON written by an earlier run, in
    /// their order or shuffled with the seed; their count is H.
    File {
        /// The network JSON.
        path: PathBuf,
        /// Shuffle the neurons with the seed (else keep their order).
        shuffle: bool,
    },
}

impl NeuronSource {
    /// The name the run's JSON records in `neurons`: `default`, `bio` or the file.
    pub fn name(&self) -> String {
        match self {
            NeuronSource::Default => "default".into(),
            NeuronSource::Biological { .. } => "bio".into(),
            NeuronSource::File { path, .. } => path.display().to_string(),
        }
    }
}

/// Which network is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A network of GFR neurons.
    Gfr,
    /// An Elman RNN with about as many trainable parameters as the GFR network of `n_nodes`.
    Rnn,
    /// An LSTM, matched the same way.
    Lstm,
}

impl ModelKind {
    /// The name in `--model` and in saved names: `gfr`, `rnn` or `lstm`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Gfr => "gfr",
            ModelKind::Rnn => "rnn",
            ModelKind::Lstm => "lstm",
        }
    }
}

/// Every setting of a network run (`gfr network`'s flags). [`Default`] gives the command
/// line's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkSpec {
    /// Adam learning rate (the base of `lr_schedule`).
    pub lr: f64,
    /// How the lr changes over the run.
    pub lr_schedule: LrSchedule,
    /// Passes over the training digits.
    pub epochs: usize,
    /// Digits per mini-batch.
    pub batch_size: usize,
    /// Hidden neurons H (for a file of neurons, their count is H instead).
    pub n_nodes: usize,
    /// Do not train α, β (with biological neurons, b and c are frozen with them, as published).
    pub freeze_neurons: bool,
    /// Do not train b, c.
    pub freeze_activations: bool,
    /// Where the GFR neurons come from.
    pub neurons: NeuronSource,
    /// How the drive reaches biological neurons (from a dataset, or a file of them).
    pub bio_input: BioInput,
    /// The units biological neurons' b and β are trained in ([`BioUnits`]; with
    /// [`BioInput::Published`] always physical).
    pub bio_units: BioUnits,
    /// GFR network or a matched baseline.
    pub model: ModelKind,
    /// s in the rate-history term s · β̃ · f (GFR networks only).
    pub history_scale: f64,
    /// Folder with MNIST IDX files; downloaded there when missing, unless `offline`; without
    /// them, the built-in sample.
    pub mnist_dir: PathBuf,
    /// Never download MNIST (use the folder's files or the built-in sample).
    pub offline: bool,
    /// Only the first N training / test digits.
    pub train_limit: Option<usize>,
    /// Only the first N test digits.
    pub test_limit: Option<usize>,
    /// The backend to train on (CPU or wgpu).
    pub device: Backend,
    /// Initial weights, batch order, drawn or shuffled neurons.
    pub seed: u64,
    /// Folder of the trained network (`{name}.bpk`), its JSON and its checkpoint.
    pub save_dir: PathBuf,
    /// Continue this run (same settings) from its checkpoint.
    pub resume: bool,
    /// Replace an earlier run of other settings saved under the same name (else this run is
    /// saved as `{name}_run2`, `_run3`, …), or start over from a checkpoint.
    pub overwrite: bool,
    /// Look at the hidden layer before and after training (GFR networks only).
    pub diagnose: bool,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            lr_schedule: LrSchedule::default(),
            epochs: 30,
            batch_size: 64,
            n_nodes: 128,
            freeze_neurons: false,
            freeze_activations: false,
            neurons: NeuronSource::Default,
            bio_input: BioInput::Relative,
            bio_units: BioUnits::Relative,
            model: ModelKind::Gfr,
            history_scale: HISTORY_SCALE,
            mnist_dir: PathBuf::from("data/mnist"),
            offline: false,
            train_limit: None,
            test_limit: None,
            device: Backend::Cpu,
            seed: 0,
            save_dir: PathBuf::from("model/network_params"),
            resume: false,
            overwrite: false,
            diagnose: false,
        }
    }
}

/// What a run has to say, as it goes (like [`crate::fit::FitProgress`]); every method does
/// nothing by default. `()` is the observer that says nothing.
pub trait NetworkObserver {
    /// One line for the user: the digits used, a note, a warning, the network's size.
    fn note(&self, _line: &str) {}
    /// How messages and errors name the setting `field` of [`NetworkSpec`] (e.g. `n_nodes`);
    /// the field's own name by default (the command line gives its flag).
    fn setting(&self, field: &str) -> String {
        field.to_string()
    }
    /// Training: epoch `epoch` (0-based) of `epochs` starts, with `batches` mini-batches.
    fn epoch_started(&self, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// Training: a mini-batch was trained.
    fn batch_done(&self) {}
    /// Training: an epoch ended (its line of numbers).
    fn epoch_done(&self, _stats: &EpochStats) {}
    /// Training ended (all epochs done, or cancelled).
    fn training_finished(&self) {}
    /// MNIST download: file `label` starts at `done` of `total` bytes.
    fn download_started(&self, _label: &str, _done: u64, _total: Option<u64>) {}
    /// MNIST download: `bytes` more bytes of the current file arrived.
    fn download_advanced(&self, _bytes: u64) {}
    /// MNIST download: the current file is complete.
    fn download_finished(&self) {}
    /// Whether the caller wants training to stop (asked after every mini-batch): the epoch
    /// under way is dropped, the checkpoint of the last whole epoch stays, and [`run_network`]
    /// returns [`crate::error::Interrupted`]. Never, by default.
    fn cancelled(&self) -> bool {
        false
    }
}

impl NetworkObserver for () {}

/// The download callbacks of a [`NetworkObserver`] (MNIST).
struct Downloads<'a>(&'a dyn NetworkObserver);

impl crate::data::download::DownloadProgress for Downloads<'_> {
    fn download_started(&self, label: &str, done: u64, total: Option<u64>) {
        self.0.download_started(label, done, total)
    }
    fn download_advanced(&self, bytes: u64) {
        self.0.download_advanced(bytes)
    }
    fn download_finished(&self) {
        self.0.download_finished()
    }
    fn download_note(&self, line: &str) {
        self.0.note(line)
    }
}

/// The training callbacks of a [`NetworkObserver`].
struct Training<'a>(&'a dyn NetworkObserver);

impl TrainProgress for Training<'_> {
    fn epoch_started(&self, epoch: usize, epochs: usize, batches: usize) {
        self.0.epoch_started(epoch, epochs, batches)
    }
    fn batch_done(&self) {
        self.0.batch_done()
    }
    fn epoch_done(&self, stats: &EpochStats) {
        self.0.epoch_done(stats)
    }
    fn note(&self, line: &str) {
        self.0.note(line)
    }
    fn finished(&self) {
        self.0.training_finished()
    }
    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

/// The JSON of a network run (`SAVE_DIR/{name}.json`): the settings, the result of every
/// epoch, and for GFR networks the trained neurons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkRun {
    /// GFR network or baseline.
    pub model: ModelKind,
    /// Base Adam learning rate.
    pub lr: f64,
    /// Runs saved before the schedule existed trained with a constant lr.
    #[serde(default = "constant_lr")]
    pub lr_schedule: LrSchedule,
    /// Epochs asked for.
    pub epochs: usize,
    /// Digits per mini-batch.
    pub batch_size: usize,
    /// H of the GFR network (a baseline's own H is [`NetworkRun::hidden`]).
    pub n_nodes: usize,
    /// Whether α, β were left untrained (`freeze_neurons` of the spec).
    pub freeze_neurons: bool,
    /// `freeze_activations` as asked for (see [`GfrRun::activations_frozen`] for what applied).
    pub freeze_activations: bool,
    /// Seed of the initial weights, batch order and drawn or shuffled neurons.
    pub seed: u64,
    /// The backend it trained on.
    pub device: Backend,
    /// The MNIST folder, or `built-in sample`.
    pub mnist: String,
    /// Training digits used.
    pub n_train: usize,
    /// Test digits used.
    pub n_test: usize,
    /// Trainable parameters of the network.
    pub trainable_params: usize,
    /// All parameters of the network, frozen ones included.
    pub total_params: usize,
    /// One entry per epoch.
    pub history: Vec<EpochStats>,
    /// The last epoch's numbers (NaN, written null, when they are not numbers).
    #[serde(deserialize_with = "f64_or_nan")]
    pub final_train_accuracy: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    /// Mean cross-entropy per training digit in the last epoch.
    pub final_train_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    /// Test accuracy (fraction) of the first readout step after the last epoch.
    pub final_test_accuracy_step1: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    /// Test accuracy (fraction) of the 5-step vote after the last epoch.
    pub final_test_accuracy_vote: f64,
    /// GFR networks only.
    #[serde(flatten)]
    pub gfr: Option<GfrRun>,
    /// Baselines only: their hidden size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<usize>,
}

/// The part of a [`NetworkRun`] only GFR networks have.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GfrRun {
    /// `default`, `bio` or the network JSON the neurons came from.
    pub neurons: String,
    /// The rate-history scale s (see [`HISTORY_SCALE`]).
    pub history_scale: f64,
    /// Whether neurons read from a network JSON were shuffled.
    pub shuffle_neurons: bool,
    /// Biological neurons only (null otherwise).
    pub bio_input: Option<BioInput>,
    /// Biological neurons only; runs saved before it existed (null) trained in physical units.
    #[serde(default)]
    pub bio_units: Option<BioUnits>,
    /// `bio` only: the dataset and (bin size, activation bin size) the neurons came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// `bio` only: the (bin size, activation bin size) pair (ms).
    pub bio_pair: Option<(u32, u32)>,
    /// Whether b, c were frozen (also when the neurons were, for biological neurons).
    pub activations_frozen: bool,
    /// The trained neurons, in the layout of [`NeuronParams::to_py`] (what
    /// [`neurons_from_network_json`] reads).
    pub final_neurons: Vec<serde_json::Value>,
    /// Hidden-layer diagnostics (with `diagnose`).
    pub diagnostics: RunDiagnostics,
}

/// [`Diagnostics`] before and after training (null without `diagnose`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunDiagnostics {
    /// Before training.
    pub init: Option<Diagnostics>,
    /// After training.
    pub trained: Option<Diagnostics>,
}

impl NetworkRun {
    /// Reads a network JSON written by [`run_network`].
    pub fn load(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a gfr network run", path.display()))
    }

    /// The training history of a network JSON: what `gfr plot network` draws. Reads any file
    /// with a `history` list (also from older gfr versions, and hand-written curves); fields an
    /// epoch lacks read as NaN, apart from `epoch`, `train_loss` and `test_accuracy_step1`.
    pub fn load_history(path: &Path) -> Result<Vec<EpochStats>> {
        #[derive(Deserialize)]
        struct HistoryOnly {
            history: Vec<EpochStats>,
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let h: HistoryOnly = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: no training history (`history`, one entry per epoch) read; not a gfr network file",
                path.display()
            )
        })?;
        Ok(h.history)
    }

    /// The JSON text [`run_network`] writes (keys in alphabetical order).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        // through a Value, whose keys are sorted, as the files have always been written
        Ok(serde_json::to_vec_pretty(&serde_json::to_value(self)?)?)
    }
}

fn constant_lr() -> LrSchedule {
    LrSchedule::Constant
}

/// A number written as null (JSON has no NaN) reads back as NaN.
pub(crate) fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A saved run: its JSON's content and where the JSON and the network are.
#[derive(Clone, Debug)]
pub struct SavedNetwork {
    /// The name the run is saved under (`gfr_l_128_False_False`, `rnn_l_128_run2`, …).
    pub name: String,
    /// The run's JSON content.
    pub run: NetworkRun,
    /// `SAVE_DIR/{name}.json`, holding `run`.
    pub json: PathBuf,
    /// `SAVE_DIR/{name}.bpk`: the trained network (Burn's recorder).
    pub weights: PathBuf,
}

impl NetworkSpec {
    /// Checks the numbers of the spec; errors are [`crate::error::Invalid`] and name the
    /// settings as `flag` gives them.
    pub fn check(&self, flag: &dyn Fn(&str) -> String) -> Result<()> {
        let check = || -> Result<()> {
            if !(self.lr > 0.0 && self.lr.is_finite()) {
                bail!("{} {}: must be a positive number", flag("lr"), self.lr);
            }
            if self.batch_size == 0 || self.n_nodes == 0 || self.epochs == 0 {
                bail!(
                    "{}, {} and {} must be at least 1",
                    flag("batch_size"),
                    flag("n_nodes"),
                    flag("epochs")
                );
            }
            if self.train_limit == Some(0) || self.test_limit == Some(0) {
                bail!(
                    "{} and {} must be at least 1 (leave them out for all digits)",
                    flag("train_limit"),
                    flag("test_limit")
                );
            }
            if !(self.history_scale > 0.0 && self.history_scale.is_finite()) {
                bail!(
                    "{} {}: must be a positive number",
                    flag("history_scale"),
                    self.history_scale
                );
            }
            Ok(())
        };
        check().map_err(|e| crate::error::invalid(format!("{e:#}")))
    }
}

/// The units biological neurons train in: `units` when given, else relative with
/// [`BioInput::Relative`] and physical with [`BioInput::Published`]. Relative units with the
/// published input is an [`crate::error::Invalid`] error (settings named by `flag`).
pub fn bio_units_for(
    units: Option<BioUnits>,
    input: BioInput,
    flag: &dyn Fn(&str) -> String,
) -> Result<BioUnits> {
    match (units, input) {
        (Some(BioUnits::Relative), BioInput::Published) => Err(crate::error::invalid(format!(
            "{} relative needs {} relative: the published input has no neuron-relative scale \
             (it trains in physical units)",
            flag("bio_units"),
            flag("bio_input")
        ))),
        (Some(u), _) => Ok(u),
        (None, BioInput::Relative) => Ok(BioUnits::Relative),
        (None, BioInput::Published) => Ok(BioUnits::Physical),
    }
}

/// Runs the network experiment of `spec` (see the module's documentation). `None` when
/// `spec.resume` finds the run already complete (nothing is trained or written).
///
/// The run seeds the backend with `spec.seed`; Burn's CPU backend has one seed per process,
/// so runs in parallel threads of one process are not reproducible (run them one at a time,
/// or in separate processes).
pub fn run_network(spec: &NetworkSpec, obs: &dyn NetworkObserver) -> Result<Option<SavedNetwork>> {
    let flag = |f: &str| obs.setting(f);
    spec.check(&flag)?;
    // what the flags name comes first: a wrong one is said before MNIST is read (or downloaded)
    let neurons = match spec.model {
        ModelKind::Gfr => Some(network_neurons(spec, obs)?),
        ModelKind::Rnn | ModelKind::Lstm => None,
    };
    let device = spec.device.device().context(flag("device"))?.autodiff();
    crate::fit::store::check_writable(&spec.save_dir, &flag("save_dir"))?;
    let (mut train_set, mut test_set, source) =
        mnist::load(&spec.mnist_dir, spec.offline, &Downloads(obs))?;
    match &source {
        MnistSource::Dir(d) => obs.note(&format!(
            "MNIST from {}: {} training, {} test digits",
            d.display(),
            train_set.len(),
            test_set.len()
        )),
        MnistSource::BuiltInSample { why } => obs.note(&format!(
            // offline, the reason is the setting that said so
            "no MNIST files in {} ({}; or put train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], \
             t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] there); using the built-in SAMPLE of real MNIST: \
             {} training, {} test digits",
            spec.mnist_dir.display(),
            if spec.offline { obs.setting("offline") } else { why.clone() },
            train_set.len(),
            test_set.len()
        )),
    }
    if let Some(n) = spec.train_limit {
        train_set = train_set.truncate(n);
    }
    if let Some(n) = spec.test_limit {
        test_set = test_set.truncate(n);
    }
    for stale in crate::data::pickle::clean_stale_temporaries(&spec.save_dir) {
        obs.note(&format!(
            "removed {}, left by a process that no longer runs",
            stale.display()
        ));
    }
    device.seed(spec.seed);
    let run = Run {
        spec,
        obs,
        train_set: &train_set,
        test_set: &test_set,
        mnist: match &source {
            MnistSource::Dir(d) => d.display().to_string(),
            MnistSource::BuiltInSample { .. } => "built-in sample".into(),
        },
        device: &device,
    };
    match neurons {
        Some(neurons) => run.gfr(neurons),
        None => run.baseline(),
    }
}

/// The GFR network's neurons `spec` names and whether they are biological.
fn network_neurons(
    spec: &NetworkSpec,
    obs: &dyn NetworkObserver,
) -> Result<(Vec<NeuronParams>, bool)> {
    Ok(match &spec.neurons {
        NeuronSource::Default => (vec![default_neuron(); spec.n_nodes], false),
        NeuronSource::Biological { dataset, pair } => {
            let ds = crate::dataset::Dataset::load(dataset).with_context(|| {
                format!(
                    "{} bio: no dataset of fitted neurons at {} {} \
                     (`gfr dataset build` writes it)",
                    obs.setting("neurons"),
                    obs.setting("dataset"),
                    dataset.display()
                )
            })?;
            let (n, replacement) = model::biological_neurons(&ds, *pair, spec.n_nodes, spec.seed)?;
            if replacement {
                obs.note(&format!(
                    "note: {} {} exceeds the {} neurons of {} for pair {}/{}: drawn with replacement",
                    obs.setting("n_nodes"),
                    spec.n_nodes,
                    ds.pairs[pair].len(),
                    dataset.display(),
                    pair.0,
                    pair.1
                ));
            }
            (n, true)
        }
        NeuronSource::File { path, shuffle } => {
            let mut n = read_network_neurons(path, &obs.setting("neurons"))?;
            if *shuffle {
                use rand::{SeedableRng, seq::SliceRandom};
                n.shuffle(&mut rand::rngs::StdRng::seed_from_u64(spec.seed));
            }
            let bio = n.iter().any(|p| p.activation.max_current != 1.0);
            if n.len() != spec.n_nodes {
                obs.note(&format!(
                    "note: {} neurons from {}: the network has H = {} ({} {} is not used)",
                    n.len(),
                    path.display(),
                    n.len(),
                    obs.setting("n_nodes"),
                    spec.n_nodes
                ));
            }
            (n, bio)
        }
    })
}

/// One run under way: the spec and what [`run_network`] made of it.
struct Run<'a> {
    spec: &'a NetworkSpec,
    obs: &'a dyn NetworkObserver,
    train_set: &'a Mnist,
    test_set: &'a Mnist,
    /// The MNIST source as the JSON names it.
    mnist: String,
    device: &'a burn::tensor::Device,
}

/// What the training of one network gives back.
struct Trained<M> {
    name: String,
    net: M,
    history: Vec<EpochStats>,
}

impl Run<'_> {
    fn flag(&self, field: &str) -> String {
        self.obs.setting(field)
    }

    /// Trains the GFR network of `neurons` (biological or not).
    fn gfr(
        &self,
        (neurons, biological): (Vec<NeuronParams>, bool),
    ) -> Result<Option<SavedNetwork>> {
        let (spec, obs, device) = (self.spec, self.obs, self.device);
        let n_nodes = neurons.len();
        let bins: Vec<(u32, u32)> = neurons
            .iter()
            .map(|p| (p.bin_size, p.activation.bin_size))
            .collect();
        let bio_input = spec.bio_input;
        let bio_units = match bio_input {
            BioInput::Published => BioUnits::Physical,
            BioInput::Relative => spec.bio_units,
        };
        let net = if biological {
            GfrNetwork::biological(&neurons, bio_input, device)
        } else {
            GfrNetwork::new(&neurons, false, device)
        };
        // the published biological network freezes the activation with the neurons
        let freeze_activations = spec.freeze_activations || (biological && spec.freeze_neurons);
        let net = net.with_history_scale(spec.history_scale).tap_neurons(|l| {
            l.with_trainable_filters(!spec.freeze_neurons)
                .with_trainable_activation(!freeze_activations)
        });
        let net = if biological {
            net.with_bio_units(bio_units)
        } else {
            net
        };
        // what was applied: a network with nothing to train in them stays physical
        let bio_units = net.bio_units();
        let state = |frozen| if frozen { "frozen" } else { "trained" };
        obs.note(&format!(
            "{} neurons{}: α, β {}; b, c {}; W_in, b_in, W_rec, b_rec, W_out, b_out trained",
            if biological { "biological" } else { "default" },
            if biological {
                format!(
                    " ({} {}, {} {})",
                    self.flag("bio_input"),
                    bio_input.name(),
                    self.flag("bio_units"),
                    bio_units.name()
                )
            } else {
                String::new()
            },
            state(spec.freeze_neurons),
            state(freeze_activations),
        ));
        let base = format!(
            "gfr_l_{n_nodes}_{}_{}",
            py_bool(spec.freeze_neurons),
            py_bool(spec.freeze_activations)
        );
        let diagnostics_init = spec.diagnose.then(|| {
            let d = diagnose(&net, self.train_set, 256, device);
            obs.note(&format!("before training, {}", d.table()));
            d
        });
        if silent_readout(&net, self.train_set, device) {
            obs.note(&format!(
                "warning: every hidden neuron is silent at the readout step for the first training digits, \
                 so no gradient reaches the input weights and training cannot start. With biological neurons \
                 use `{} relative` (the default), which drives each neuron relative to its own threshold; \
                 `{}` shows how far from threshold the neurons sit (see the README)",
                self.flag("bio_input"),
                self.flag("diagnose")
            ));
        }
        let (trainable, total) = parameter_counts(&net);
        let (rnn_h, lstm_h) = matched_hidden_sizes(trainable);
        obs.note(&format!(
            "GFR network: H = {n_nodes}, {trainable} trainable of {total} parameters (a matched RNN has H = {rnn_h}, an LSTM H = {lstm_h})"
        ));
        let gfr = GfrRun {
            neurons: spec.neurons.name(),
            history_scale: spec.history_scale,
            shuffle_neurons: matches!(spec.neurons, NeuronSource::File { shuffle: true, .. }),
            bio_input: biological.then_some(bio_input),
            bio_units: biological.then_some(bio_units),
            dataset: match &spec.neurons {
                NeuronSource::Biological { dataset, .. } => Some(dataset.display().to_string()),
                _ => None,
            },
            bio_pair: match &spec.neurons {
                NeuronSource::Biological { pair, .. } => Some(*pair),
                _ => None,
            },
            activations_frozen: freeze_activations,
            final_neurons: Vec::new(),
            diagnostics: RunDiagnostics::default(),
        };
        let settings = self.settings(ModelKind::Gfr, n_nodes, Some(&gfr));
        let Some(Trained { name, net, history }) = self.train(net, &base, &settings)? else {
            return Ok(None);
        };
        let diagnostics_trained = spec.diagnose.then(|| {
            let d = diagnose(&net, self.train_set, 256, device);
            obs.note(&format!("after training, {}", d.table()));
            d
        });
        let final_neurons = net
            .neurons
            .to_params(bins[0].0)
            .into_iter()
            .zip(&bins)
            .map(|(mut p, &(bin, actv_bin))| {
                (p.bin_size, p.activation.bin_size) = (bin, actv_bin);
                params_json(&p)
            })
            .collect();
        let gfr = GfrRun {
            final_neurons,
            diagnostics: RunDiagnostics {
                init: diagnostics_init,
                trained: diagnostics_trained,
            },
            ..gfr
        };
        self.finish(
            name,
            net,
            history,
            n_nodes,
            (trainable, total),
            Some(gfr),
            None,
            &settings,
        )
        .map(Some)
    }

    fn baseline(&self) -> Result<Option<SavedNetwork>> {
        let (spec, obs, device) = (self.spec, self.obs, self.device);
        if spec.diagnose {
            obs.note(&format!(
                "note: {} looks at GFR neurons; it does nothing for {} rnn|lstm",
                self.flag("diagnose"),
                self.flag("model")
            ));
        }
        let gfr_trainable = parameter_counts(&GfrNetwork::new(
            &vec![default_neuron(); spec.n_nodes],
            false,
            device,
        ))
        .0;
        let (rnn_h, lstm_h) = matched_hidden_sizes(gfr_trainable);
        let (kind, h) = if spec.model == ModelKind::Rnn {
            (ModelKind::Rnn, rnn_h)
        } else {
            (ModelKind::Lstm, lstm_h)
        };
        let base = format!("{}_l_{}", kind.name(), spec.n_nodes);
        let settings = self.settings(kind, spec.n_nodes, None);
        macro_rules! run {
            ($net:expr) => {{
                let net = $net;
                let counts = parameter_counts(&net);
                obs.note(&format!(
                    "{}: H = {h}, {} parameters (matched to the GFR network's {gfr_trainable} trainable at H = {})",
                    kind.name(),
                    counts.0,
                    spec.n_nodes
                ));
                let Some(Trained { name, net, history }) = self.train(net, &base, &settings)? else {
                    return Ok(None);
                };
                self.finish(name, net, history, spec.n_nodes, counts, None, Some(h), &settings)
            }};
        }
        if kind == ModelKind::Rnn {
            run!(RnnNetwork::new(h, device)).map(Some)
        } else {
            run!(LstmNetwork::new(h, device)).map(Some)
        }
    }

    /// The settings that make a run what it is (written into its JSON): a run whose JSON or
    /// checkpoint records other settings is never replaced or resumed.
    fn settings(
        &self,
        model: ModelKind,
        n_nodes: usize,
        gfr: Option<&GfrRun>,
    ) -> serde_json::Value {
        let spec = self.spec;
        let mut run = serde_json::json!({
            "model": model.name(), "lr": spec.lr, "lr_schedule": spec.lr_schedule.name(), "epochs": spec.epochs, "batch_size": spec.batch_size,
            "n_nodes": n_nodes, "freeze_neurons": spec.freeze_neurons,
            "freeze_activations": spec.freeze_activations, "seed": spec.seed, "mnist": self.mnist,
            "n_train": self.train_set.len(), "n_test": self.test_set.len(),
        });
        if let Some(g) = gfr {
            run["neurons"] = g.neurons.clone().into();
            run["history_scale"] = g.history_scale.into();
            run["shuffle_neurons"] = g.shuffle_neurons.into();
            // only what differs from runs saved before these settings were recorded (the
            // relative input in physical units), so that those still resume and replace
            if g.bio_input == Some(BioInput::Published) {
                run["bio_input"] = "published".into();
            }
            if g.bio_units == Some(BioUnits::Relative) {
                run["bio_units"] = "relative".into();
            }
            if let (Some(dataset), Some(pair)) = (&g.dataset, g.bio_pair) {
                run["dataset"] = dataset.clone().into();
                run["bio_pair"] = serde_json::json!([pair.0, pair.1]);
            }
        }
        run
    }

    fn checkpoint(&self, name: &str, settings: &serde_json::Value) -> Checkpoint {
        Checkpoint {
            dir: self.spec.save_dir.join(format!("{name}.checkpoint")),
            run: settings.clone(),
        }
    }

    /// The name this run saves under: `base` unless an earlier run of other settings holds it
    /// (its JSON or checkpoint), then `{base}_run2`, `_run3`, … (the first free or
    /// same-settings one); `overwrite` takes `base` regardless.
    fn name(&self, base: &str, settings: &serde_json::Value) -> String {
        let same = |j: &serde_json::Value| {
            settings
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| j.get(k) == Some(v))
        };
        for k in 1.. {
            let name = if k == 1 {
                base.to_string()
            } else {
                format!("{base}_run{k}")
            };
            let json = self.spec.save_dir.join(format!("{name}.json"));
            let ckpt = self.checkpoint(&name, settings);
            let saved = std::fs::read(&json)
                .ok()
                .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap_or_default());
            // a checkpoint folder without a state (killed in its first epoch) holds nothing
            let state = ckpt.state().ok().flatten();
            if saved.is_none() && state.is_none() {
                return name;
            }
            let ok = saved.as_ref().is_none_or(same)
                && state.as_ref().is_none_or(|s| s.run == *settings);
            if ok || (k == 1 && self.spec.overwrite) {
                if !ok {
                    self.obs.note(&format!(
                        "{}: replacing {} (a run of other settings)",
                        self.flag("overwrite"),
                        json.display()
                    ));
                }
                return name;
            }
            if k == 1 {
                self.obs.note(&format!(
                    "{} holds a run of other settings (seed, lr, neurons, …); this run is saved as \
                     {base}_runN instead ({} replaces it)",
                    json.display(),
                    self.flag("overwrite")
                ));
            }
        }
        unreachable!()
    }

    /// Picks the run's name, then trains from scratch or (`resume`) from its checkpoint,
    /// checkpointing every epoch. None when `resume` finds the run already complete.
    fn train<M: LineClassifier>(
        &self,
        net: M,
        base: &str,
        settings: &serde_json::Value,
    ) -> Result<Option<Trained<M>>> {
        let (spec, obs) = (self.spec, self.obs);
        let name = self.name(base, settings);
        if name != base {
            obs.note(&format!("saving this run as {name}"));
        }
        let ckpt = self.checkpoint(&name, settings);
        let state = ckpt.state()?;
        let same_state = state.as_ref().is_some_and(|s| s.run == *settings);
        let (net, optim, history) = if spec.resume && same_state {
            let (net, optim, history) = ckpt.load(net)?.expect("a saved state");
            obs.note(&format!(
                "resuming {name} after epoch {} of {} ({})",
                history.len(),
                spec.epochs,
                ckpt.dir.display()
            ));
            (net, optim, history)
        } else {
            if state.is_some() && !spec.overwrite {
                bail!(
                    "{} holds this run's checkpoint; {} continues it, {} starts over",
                    ckpt.dir.display(),
                    self.flag("resume"),
                    self.flag("overwrite")
                );
            }
            if spec.resume {
                let done = spec.save_dir.join(format!("{name}.json"));
                if done.exists() {
                    obs.note(&format!(
                        "{} is complete; nothing to resume",
                        done.display()
                    ));
                    return Ok(None);
                }
                obs.note(&format!(
                    "no checkpoint of this run in {}; starting it",
                    spec.save_dir.display()
                ));
            }
            ckpt.remove();
            (net, adam(), Vec::new())
        };
        let settings = TrainSettings {
            lr: spec.lr,
            schedule: spec.lr_schedule,
            epochs: spec.epochs,
            batch_size: spec.batch_size,
            seed: spec.seed,
        };
        obs.note(&format!(
            "Adam, lr {}{}, {} epoch{} of batches of {}",
            spec.lr,
            match spec.lr_schedule {
                LrSchedule::Constant => " (constant)".to_string(),
                LrSchedule::Anneal => format!(
                    " (annealed to 0 over the last {:.0} % of the steps)",
                    100.0 * crate::network::ANNEAL_FRACTION
                ),
            },
            spec.epochs,
            if spec.epochs == 1 { "" } else { "s" },
            spec.batch_size
        ));
        let (net, history) = train_resumable(
            net,
            optim,
            history,
            self.train_set,
            self.test_set,
            &settings,
            self.device,
            Some(&ckpt),
            &Training(self.obs),
        );
        if self.obs.cancelled() {
            // the checkpoint of the last whole epoch stands: `resume` goes on from it
            return Err(
                anyhow::Error::new(crate::error::Interrupted).context(format!(
                    "{name} stopped after epoch {} of {} ({})",
                    history.len(),
                    spec.epochs,
                    ckpt.dir.display()
                )),
            );
        }
        Ok(Some(Trained { name, net, history }))
    }

    /// Saves the trained network and its JSON, then drops the checkpoint.
    #[allow(clippy::too_many_arguments)]
    fn finish<M: burn::module::Module>(
        &self,
        name: String,
        net: M,
        history: Vec<EpochStats>,
        n_nodes: usize,
        (trainable_params, total_params): (usize, usize),
        gfr: Option<GfrRun>,
        hidden: Option<usize>,
        settings: &serde_json::Value,
    ) -> Result<SavedNetwork> {
        let spec = self.spec;
        let weights = save_network(&spec.save_dir, &name, net, &self.flag("save_dir"))?;
        let last = |f: fn(&EpochStats) -> f64| history.last().map_or(f64::NAN, f);
        let run = NetworkRun {
            model: spec.model,
            lr: spec.lr,
            lr_schedule: spec.lr_schedule,
            epochs: spec.epochs,
            batch_size: spec.batch_size,
            n_nodes,
            freeze_neurons: spec.freeze_neurons,
            freeze_activations: spec.freeze_activations,
            seed: spec.seed,
            device: spec.device,
            mnist: self.mnist.clone(),
            n_train: self.train_set.len(),
            n_test: self.test_set.len(),
            trainable_params,
            total_params,
            final_train_accuracy: last(|e| e.train_accuracy),
            final_train_loss: last(|e| e.train_loss),
            final_test_accuracy_step1: last(|e| e.test_accuracy_step1),
            final_test_accuracy_vote: last(|e| e.test_accuracy_vote),
            history,
            gfr,
            hidden,
        };
        let value = serde_json::to_value(&run)?;
        debug_assert!(
            settings
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| value.get(k) == Some(v)),
            "the run's JSON records its settings"
        );
        let json = spec.save_dir.join(format!("{name}.json"));
        crate::data::pickle::write_atomic(&json, &serde_json::to_vec_pretty(&value)?)?;
        self.checkpoint(&name, settings).remove();
        Ok(SavedNetwork {
            name,
            run,
            json,
            weights,
        })
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// A neuron in the layout of the network JSON's `final_neurons` (the Python GFR layout).
pub fn params_json(p: &NeuronParams) -> serde_json::Value {
    p.to_json()
}

/// The trained neurons (`final_neurons`) of a network JSON written by [`run_network`].
pub fn neurons_from_network_json(path: &Path) -> Result<Vec<NeuronParams>> {
    read_network_neurons(path, "neurons")
}

/// [`neurons_from_network_json`]; an unreadable file is said to be the value of `setting`.
fn read_network_neurons(path: &Path, setting: &str) -> Result<Vec<NeuronParams>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{setting}: cannot read {} (expected default, bio or a network JSON)",
            path.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    let list = v["final_neurons"].as_array().with_context(|| {
        format!(
            "{}: no `final_neurons` list (not a GFR network file)",
            path.display()
        )
    })?;
    let mut out = list
        .iter()
        .enumerate()
        .map(|(i, n)| {
            NeuronParams::from_py(&crate::dataset::json_to_py(n))
                .with_context(|| format!("{}: final_neurons[{i}]", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let Some(first) = out.first() else {
        bail!(
            "{}: `final_neurons` is empty (no neurons to build a network from)",
            path.display()
        );
    };
    let (bin, lambda) = (first.bin_size, first.lambda.clone());
    if let Some(i) = out
        .iter()
        .position(|p| p.bin_size != bin || p.lambda != lambda)
    {
        bail!(
            "{}: final_neurons[{i}] has bin size {} ms and {} decay rates, final_neurons[0] {bin} ms and {}: the neurons of a layer must share them",
            path.display(),
            out[i].bin_size,
            out[i].lambda.len(),
            lambda.len()
        );
    }
    model::pad_degrees(&mut out);
    Ok(out)
}

/// Saves a trained network with Burn's recorder (burnpack), atomically; returns its path.
fn save_network<M: burn::module::Module>(
    dir: &Path,
    name: &str,
    net: M,
    setting: &str,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {setting} {}", dir.display()))?;
    let path = dir.join(format!("{name}.bpk"));
    let tmp = dir.join(format!(".{name}.bpk.{}.tmp", std::process::id()));
    net.save_file(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e:?}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The network JSON reader (`--neurons FILE.json`) under mutation fuzzing; an empty or
    /// inconsistent `final_neurons` is an error, never a panic.
    #[test]
    fn network_json_reader_survives_mutations() {
        use crate::fuzz::{DEFAULT_ITERATIONS, fuzz, iterations};
        let dir = std::env::temp_dir().join(format!("gfr-fuzz-netjson-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let neuron = |bin: u32| {
            let act = crate::neuron::ActivationParams {
                max_current: 1.0,
                max_firing_rate: 1.0,
                poly_coeff: vec![0.0, 1.0],
                threshold: 0.0,
                bin_size: bin,
            };
            params_json(&crate::neuron::NeuronParams::initial(bin, act))
        };
        let good = serde_json::json!({"model": "gfr", "final_neurons": [neuron(20), neuron(20)]});
        let p = dir.join("good.json");
        std::fs::write(&p, good.to_string()).unwrap();
        assert_eq!(neurons_from_network_json(&p).unwrap().len(), 2);
        for (bad, says) in [
            (serde_json::json!({"final_neurons": []}), "empty"),
            (
                serde_json::json!({"final_neurons": [neuron(20), neuron(50)]}),
                "final_neurons[1]",
            ),
        ] {
            std::fs::write(&p, bad.to_string()).unwrap();
            let e = format!("{:#}", neurons_from_network_json(&p).unwrap_err());
            assert!(e.contains(says) && e.contains("good.json"), "{e}");
        }
        let file = dir.join("fuzz.json");
        let done = fuzz(
            "network-json",
            vec![good.to_string().into_bytes()],
            iterations(DEFAULT_ITERATIONS),
            move |b| {
                std::fs::write(&file, b).unwrap();
                if let Ok(n) = neurons_from_network_json(&file) {
                    // the neurons must make a layer
                    let _ = crate::neuron::GfrLayer::new(&n, &crate::device::cpu());
                }
            },
        );
        done.unwrap_or_else(|e| panic!("{e}"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
