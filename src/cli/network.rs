//! `gfr network`: networks of GFR neurons (or RNN / LSTM baselines) on line-by-line MNIST.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{DEFAULT_DATASET, DeviceArg};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct NetworkArgs {
    /// Seed form: LR EPOCHS BATCH_SIZE N_NODES FREEZE_NEURONS FREEZE_ACTIVATIONS.
    #[arg(num_args = 0..=6, value_name = "POSITIONAL")]
    positional: Vec<String>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// anneal: --lr for the first 3/4 of the steps, then a half cosine down to 0 over the last
    /// quarter (gfr's default); constant: --lr throughout, as the published networks train.
    #[arg(long = "lr-schedule", value_enum, default_value_t = LrScheduleArg::Anneal)]
    lr_schedule: LrScheduleArg,
    /// Passes over the training digits.
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// Digits per mini-batch.
    #[arg(
        long = "batch-size",
        visible_alias = "batch_size",
        default_value_t = 64
    )]
    batch_size: usize,
    /// Hidden neurons H.
    #[arg(long = "n-nodes", visible_alias = "n_nodes", default_value_t = 128)]
    n_nodes: usize,
    /// Do not train α, β (only the weights, biases and, unless frozen too, the activations;
    /// with biological neurons the activations b, c are frozen too, as published).
    #[arg(long = "freeze-neurons", visible_alias = "freeze_neurons")]
    freeze_neurons: bool,
    /// Do not train b, c.
    #[arg(long = "freeze-activations", visible_alias = "freeze_activations")]
    freeze_activations: bool,
    /// default, bio (drawn from --dataset), or a network JSON written by an earlier run.
    #[arg(long, default_value = "default")]
    neurons: String,
    /// Dataset of fitted neurons for `--neurons bio`.
    #[arg(long, default_value = DEFAULT_DATASET)]
    dataset: PathBuf,
    /// Bin size and activation bin size of the neurons drawn for `--neurons bio`.
    #[arg(long = "bio-pair", default_value = "20/20", value_parser = parse_pair)]
    bio_pair: (u32, u32),
    /// How the network's drive reaches biological neurons: `relative` (gfr: relative to each
    /// neuron's threshold and f-I slope, rates read out as a fraction of the cell's maximum; see
    /// docs/model.md) or `published` (spec §5: σ/28-scaled input, W_in ~ N(1.5, 3²), 1/H recurrence).
    #[arg(long = "bio-input", value_enum, default_value_t = BioInputArg::Relative)]
    bio_input: BioInputArg,
    /// The units biological neurons' threshold b and rate-history weights β are trained in:
    /// `relative` (gfr: each neuron's own input range and maximum rate, so Adam moves them as
    /// fast as a default neuron's; see docs/model.md) or `physical` (pA and ms⁻¹, published).
    /// Default: relative with `--bio-input relative`, physical with `published` (the only
    /// choice there).
    #[arg(long = "bio-units", value_enum)]
    bio_units: Option<BioUnitsArg>,
    /// Shuffle the neurons taken from `--neurons FILE`.
    #[arg(long = "shuffle-neurons")]
    shuffle_neurons: bool,
    /// gfr: a network of GFR neurons; rnn / lstm: a baseline with about as many parameters.
    #[arg(long, value_enum, default_value_t = ModelKind::Gfr)]
    model: ModelKind,
    /// Folder with MNIST IDX files. When they are not there, gfr downloads them there; when
    /// that fails (offline), it uses the built-in 6,000/1,000-digit sample.
    #[arg(long = "mnist-dir", default_value = "data/mnist")]
    mnist_dir: PathBuf,
    /// s in the rate-history term s · β̃ · f (β̃ = 1000 β / s): the same function, but Adam moves
    /// the feedback gain by about s · lr per step. 1000 is the published parameterisation,
    /// which explodes with trainable neurons. GFR networks only.
    #[arg(long = "history-scale", default_value_t = gfr::network::HISTORY_SCALE)]
    history_scale: f64,
    /// Print what the hidden layer does on 256 training digits before and after training
    /// (fraction of neurons firing per step, distance from threshold, input current, gradient
    /// reaching the input weights) and save it in the run's JSON. GFR networks only.
    #[arg(long)]
    diagnose: bool,
    /// Do not try to download MNIST when --mnist-dir is empty (use the built-in sample)
    #[arg(long)]
    offline: bool,
    /// Use only the first N training digits.
    #[arg(long = "train-limit")]
    train_limit: Option<usize>,
    /// Use only the first N test digits.
    #[arg(long = "test-limit")]
    test_limit: Option<usize>,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    seed: super::SeedArg,
    /// Folder for the trained network (.bpk) and its JSON.
    #[arg(long = "save-dir", default_value = "model/network_params")]
    save_dir: PathBuf,
    /// Continue this run (same settings) from its last epoch's checkpoint
    /// (SAVE_DIR/{name}.checkpoint/, written after every epoch).
    #[arg(long)]
    resume: bool,
    /// Replace an earlier run of other settings saved under the same name (without it this
    /// run gets the name {name}_run2, _run3, …), or start over from a checkpoint.
    #[arg(long)]
    overwrite: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LrScheduleArg {
    Anneal,
    Constant,
}

impl From<LrScheduleArg> for gfr::network::LrSchedule {
    fn from(s: LrScheduleArg) -> Self {
        match s {
            LrScheduleArg::Anneal => Self::Anneal,
            LrScheduleArg::Constant => Self::Constant,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BioInputArg {
    Relative,
    Published,
}

impl From<BioInputArg> for gfr::network::BioInput {
    fn from(b: BioInputArg) -> Self {
        match b {
            BioInputArg::Relative => Self::Relative,
            BioInputArg::Published => Self::Published,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BioUnitsArg {
    Relative,
    Physical,
}

impl From<BioUnitsArg> for gfr::network::BioUnits {
    fn from(b: BioUnitsArg) -> Self {
        match b {
            BioUnitsArg::Relative => Self::Relative,
            BioUnitsArg::Physical => Self::Physical,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ModelKind {
    Gfr,
    Rnn,
    Lstm,
}

impl From<ModelKind> for gfr::network::ModelKind {
    fn from(m: ModelKind) -> Self {
        match m {
            ModelKind::Gfr => Self::Gfr,
            ModelKind::Rnn => Self::Rnn,
            ModelKind::Lstm => Self::Lstm,
        }
    }
}

fn parse_pair(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected BIN/ACTIVATION_BIN, e.g. 20/20"))?;
    Ok((
        a.parse().map_err(|_| format!("`{s}`: bad bin size"))?,
        b.parse()
            .map_err(|_| format!("`{s}`: bad activation bin size"))?,
    ))
}

fn parse_bool(s: &str, what: &str) -> Result<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => bail!("{what}: `{s}` is not True or False"),
    }
}

pub(super) fn run(mut a: NetworkArgs) -> Result<()> {
    use gfr::network::{NetworkSpec, NeuronSource, run_network};
    let p = &a.positional;
    let names = [
        "lr",
        "epochs",
        "batch_size",
        "n_nodes",
        "freeze_neurons",
        "freeze_activations",
    ];
    for (i, v) in p.iter().enumerate() {
        let bad = || format!("positional {} (`{v}`)", names[i]);
        match i {
            0 => a.lr = v.parse().with_context(bad)?,
            1 => a.epochs = v.parse().with_context(bad)?,
            2 => a.batch_size = v.parse().with_context(bad)?,
            3 => a.n_nodes = v.parse().with_context(bad)?,
            4 => a.freeze_neurons = parse_bool(v, names[i])?,
            _ => a.freeze_activations = parse_bool(v, names[i])?,
        }
    }
    if a.bio_units.is_some() && a.neurons == "default" {
        eprintln!(
            "note: --bio-units applies to biological neurons (--neurons bio or a file of them); \
             default neurons already train in the units they are driven in"
        );
    }
    let bio_units = gfr::network::bio_units_for(
        a.bio_units.map(Into::into),
        a.bio_input.into(),
        &super::flag,
    )?;
    let spec = NetworkSpec {
        lr: a.lr,
        lr_schedule: a.lr_schedule.into(),
        epochs: a.epochs,
        batch_size: a.batch_size,
        n_nodes: a.n_nodes,
        freeze_neurons: a.freeze_neurons,
        freeze_activations: a.freeze_activations,
        neurons: match a.neurons.as_str() {
            "default" => NeuronSource::Default,
            "bio" => NeuronSource::Biological {
                dataset: a.dataset,
                pair: a.bio_pair,
            },
            file => NeuronSource::File {
                path: PathBuf::from(file),
                shuffle: a.shuffle_neurons,
            },
        },
        bio_input: a.bio_input.into(),
        bio_units,
        model: a.model.into(),
        history_scale: a.history_scale,
        mnist_dir: a.mnist_dir,
        offline: a.offline,
        train_limit: a.train_limit,
        test_limit: a.test_limit,
        device: a.device.backend(),
        seed: a.seed.seed,
        save_dir: a.save_dir,
        resume: a.resume,
        overwrite: a.overwrite,
        diagnose: a.diagnose,
    };
    if let Some(saved) = run_network(&spec, &EpochBar::new(a.quiet))? {
        println!(
            "saved {} and {}",
            saved.json.display(),
            saved.weights.display()
        );
    }
    Ok(())
}

/// Prints a run's notes on stderr, names settings by their flags, and draws the epoch's
/// progress bar and a line per epoch.
struct EpochBar {
    bar: indicatif::ProgressBar,
    training: std::cell::Cell<bool>,
    /// The bar of the MNIST file being downloaded.
    download: indicatif::ProgressBar,
}

impl EpochBar {
    fn new(quiet: bool) -> Self {
        let bar = super::progress_bar(
            0,
            "epoch {msg} {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}]",
            quiet,
        );
        Self {
            bar,
            training: Default::default(),
            download: indicatif::ProgressBar::new(0),
        }
    }
}

impl gfr::network::NetworkObserver for EpochBar {
    fn note(&self, line: &str) {
        // a hidden bar (--quiet, or no terminal: `gfr network … > log`) prints nothing
        // through println
        if self.training.get() && !self.bar.is_hidden() {
            self.bar.println(line)
        } else {
            eprintln!("{line}");
        }
    }

    fn setting(&self, field: &str) -> String {
        super::flag(field)
    }

    fn epoch_started(&self, epoch: usize, epochs: usize, batches: usize) {
        self.training.set(true);
        self.bar.reset();
        self.bar.set_length(batches as u64);
        self.bar.set_message(format!("{}/{epochs}", epoch + 1));
    }

    fn batch_done(&self) {
        self.bar.inc(1);
    }

    fn epoch_done(&self, s: &gfr::network::EpochStats) {
        self.note(&s.to_string());
    }

    fn training_finished(&self) {
        self.bar.finish_and_clear();
        self.training.set(false);
    }

    fn download_started(&self, label: &str, done: u64, total: Option<u64>) {
        use gfr::data::download::DownloadProgress;
        super::preprocess::Bytes(&self.download).download_started(label, done, total);
    }

    fn download_advanced(&self, bytes: u64) {
        self.download.inc(bytes);
    }

    fn download_finished(&self) {
        self.download.finish_and_clear();
        self.download.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use clap::Parser;

    /// Negative numbers after flags are values, not flags (they are then checked).
    #[test]
    fn negative_numbers_are_values() {
        let cli = Cli::try_parse_from(["gfr", "network", "--history-scale", "-1"]).unwrap();
        let Command::Network(a) = cli.command else {
            panic!("not network")
        };
        assert_eq!(a.history_scale, -1.0);
    }
}
