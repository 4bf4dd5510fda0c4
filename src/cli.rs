//! Command-line interface: one subcommand per pipeline stage, with the seed's flag spellings.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use gfr::data::{DataDir, read_cell_ids, write_cell_ids};
use gfr::device::Backend;
use gfr::fit::{FitConfig, FitOptions, fit_cells, summary_table};
use gfr::simulate::{GroundTruth, simulate_cell};

/// Cells fitted together by default: batching changes no result (on the CPU, bit for bit) and
/// saves about 40% of the time (`gfr bench`).
const DEFAULT_BATCH_CELLS: usize = 16;

/// Default input files, read from the working folder when there; else the copy compiled in.
const DEFAULT_CONFIG: &str = "configs/default.json";
const DEFAULT_METADATA: &str = "data/metadata.csv";

/// The flag's path; else `default` when it is in the working folder; else `None` (the caller
/// uses the built-in copy), said in one line.
fn default_input(flag: Option<PathBuf>, default: &str) -> Option<PathBuf> {
    if flag.is_some() {
        return flag;
    }
    let p = PathBuf::from(default);
    if p.exists() {
        return Some(p);
    }
    eprintln!("{default} is not in this folder: using the copy built into gfr");
    None
}

/// The fitting config of `--config-path` (see [`default_input`]).
fn load_fit_config(flag: Option<PathBuf>) -> Result<FitConfig> {
    match default_input(flag, DEFAULT_CONFIG) {
        Some(p) => FitConfig::load(&p),
        None => Ok(FitConfig::builtin()),
    }
}

/// Cre lines of `--metadata` (see [`default_input`]) and where they came from.
fn load_cre_lines(
    flag: Option<PathBuf>,
) -> Result<(std::collections::HashMap<u64, String>, String)> {
    match default_input(flag, DEFAULT_METADATA) {
        Some(p) => Ok((gfr::dataset::read_cre_lines(&p)?, p.display().to_string())),
        None => Ok((
            gfr::dataset::builtin_cre_lines()?,
            format!("the built-in {DEFAULT_METADATA}"),
        )),
    }
}

#[derive(Parser)]
#[command(
    name = "gfr",
    version,
    about = "Generalized Firing Rate neurons: fit them to recordings, train networks of them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn Allen Cell Types recordings (NWB) into binned current / firing-rate traces.
    Preprocess(PreprocessArgs),
    /// Simulate spiking cells under an Allen-like protocol and write them as processed data.
    Simulate(SimulateArgs),
    /// Fit one GFR neuron per cell (activation, then filters) and save the results.
    Fit(FitArgs),
    /// Benchmark fitting on simulated cells: seconds per cell and per epoch, cells per hour,
    /// peak memory.
    Bench(BenchArgs),
    /// The dataset of fitted neurons: build, import, export, summary, show.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Run a fitted neuron on a current trace and write its firing rate per bin.
    Predict(PredictArgs),
    /// Train a recurrent network of GFR neurons (or an RNN / LSTM baseline) on
    /// line-by-line MNIST. Also accepts the seed's positional form:
    /// `gfr network 1e-3 30 64 128 True False`.
    Network(NetworkArgs),
    /// Figures: a fitted cell, the dataset's EVRs, network training curves.
    #[command(subcommand)]
    Plot(PlotCommand),
}

#[derive(Subcommand)]
enum PlotCommand {
    /// Prediction vs recording on Noise 2, the activation fit, and the kernels of one cell.
    Fit {
        /// The cell to plot.
        #[arg(long = "cell-id", visible_alias = "cell_id")]
        cell_id: u64,
        /// Folder of fit results (its bin{B}_actv{A} folders are searched too).
        #[arg(
            long = "params-dir",
            visible_alias = "params_dir",
            default_value = "model/params"
        )]
        params_dir: PathBuf,
        /// Bin size of the result, when the cell has results for several pairs.
        #[arg(long = "bin-size", visible_alias = "bin_size")]
        bin_size: Option<u32>,
        /// Activation bin size of the result, when the cell has results for several pairs.
        #[arg(long = "activation-bin-size", visible_alias = "activation_bin_size")]
        activation_bin_size: Option<u32>,
        /// Folder with processed_data/ and max_firing_rates/.
        #[arg(long = "data-dir", visible_alias = "data_dir", default_value = "data")]
        data_dir: PathBuf,
        /// Folder for the figures.
        #[arg(long, default_value = "figures")]
        out: PathBuf,
        /// Image format.
        #[arg(long, value_enum, default_value_t = gfr::plot::Format::Png)]
        format: gfr::plot::Format,
    },
    /// Histograms of validation and test EVR per (bin, activation bin) pair.
    Dataset {
        /// Dataset pickle of fitted neurons.
        #[arg(long, default_value = DEFAULT_DATASET)]
        dataset: PathBuf,
        /// Folder for the figures.
        #[arg(long, default_value = "figures")]
        out: PathBuf,
        /// Image format.
        #[arg(long, value_enum, default_value_t = gfr::plot::Format::Png)]
        format: gfr::plot::Format,
    },
    /// Train loss and test accuracy per epoch; several files overlay.
    Network {
        /// Network JSON files written by `gfr network`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Folder for the figures.
        #[arg(long, default_value = "figures")]
        out: PathBuf,
        /// Image format.
        #[arg(long, value_enum, default_value_t = gfr::plot::Format::Png)]
        format: gfr::plot::Format,
    },
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct NetworkArgs {
    /// Seed form: LR EPOCHS BATCH_SIZE N_NODES FREEZE_NEURONS FREEZE_ACTIVATIONS.
    #[arg(num_args = 0..=6, value_name = "POSITIONAL")]
    positional: Vec<String>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
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
    /// the README) or `published` (spec §5: σ/28-scaled input, W_in ~ N(1.5, 3²), 1/H recurrence).
    #[arg(long = "bio-input", value_enum, default_value_t = BioInputArg::Relative)]
    bio_input: BioInputArg,
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
    /// Backend: cpu (ndarray) or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Random seed (initial weights, batch order, drawn neurons).
    #[arg(long, default_value_t = 0)]
    seed: u64,
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

#[derive(Subcommand)]
enum DatasetCommand {
    /// Gather per-cell fit results, apply the criteria (val EVR > 0.5, train loss < 0.45),
    /// add cre lines, and write the dataset pickle (and optionally the JSON list).
    Build {
        /// Folders of fit results (repeatable; shards merge): their pair folders
        /// `bin{B}_actv{A}/` and flat `{id}.pickle` files are read; per cell and pair the
        /// result with the best validation EVR is kept.
        #[arg(
            long = "params-dir",
            visible_alias = "params_dir",
            default_value = "model/params"
        )]
        params_dir: Vec<PathBuf>,
        /// Dataset pickle to write.
        #[arg(long, default_value = DEFAULT_DATASET)]
        out: PathBuf,
        /// Also write the published JSON list here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Allen cell metadata table (specimen__id, line_name) [default: data/metadata.csv
        /// when in the working folder, else the copy built into gfr].
        #[arg(long)]
        metadata: Option<PathBuf>,
        /// Replace an existing dataset even by an empty one.
        #[arg(long)]
        overwrite: bool,
    },
    /// Read a dataset in the published JSON format into the pickle.
    Import {
        /// The published JSON list (`model/gfr_dataset.json`; bare NaN as pandas writes it is fine).
        file: PathBuf,
        /// Dataset pickle to write.
        #[arg(long, default_value = DEFAULT_DATASET)]
        out: PathBuf,
    },
    /// Write the dataset as the published JSON list.
    Export {
        /// JSON file to write.
        #[arg(long)]
        json: PathBuf,
        /// Dataset pickle to read.
        #[arg(long, default_value = DEFAULT_DATASET)]
        dataset: PathBuf,
    },
    /// Cell counts per (bin size, activation bin size).
    Summary {
        /// Dataset pickle to read.
        #[arg(long, default_value = DEFAULT_DATASET)]
        dataset: PathBuf,
    },
    /// One cell's record and neuron parameters.
    Show {
        /// The cell to show.
        cell_id: u64,
        #[command(flatten)]
        bins: BinSizes,
        /// Dataset pickle to read.
        #[arg(long, default_value = DEFAULT_DATASET)]
        dataset: PathBuf,
    },
}

const DEFAULT_DATASET: &str = "model/gfr_dataset.pickle";

/// `--bin-size` and `--activation-bin-size`, with the seed's underscore spellings.
#[derive(Args, Clone, Copy)]
struct BinSizes {
    /// Model bin size Δt in ms: 10, 20, 50 or 100.
    #[arg(long = "bin-size", visible_alias = "bin_size", default_value_t = 20)]
    bin_size: u32,
    /// Activation bin size Δt' in ms: 20 or 100 (10 and 50 also work).
    #[arg(
        long = "activation-bin-size",
        visible_alias = "activation_bin_size",
        default_value_t = 20
    )]
    activation_bin_size: u32,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct PredictArgs {
    /// Cell id (looked up in --dataset).
    #[arg(long = "cell-id", visible_alias = "cell_id")]
    cell_id: Option<u64>,
    #[command(flatten)]
    bins: BinSizes,
    /// Dataset pickle to take the neuron from.
    #[arg(long, conflicts_with = "params")]
    dataset: Option<PathBuf>,
    /// A per-cell fit result (`model/params/bin{B}_actv{A}/{id}.pickle`) to take the neuron from.
    #[arg(long)]
    params: Option<PathBuf>,
    /// Current trace: CSV, one value per bin (pA); a header and a `current` column are optional.
    #[arg(long)]
    current: PathBuf,
    /// Output CSV (bin, current_pA, rate_per_ms); stdout when absent.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct BenchArgs {
    /// Number of simulated cells.
    #[arg(long, default_value_t = 20)]
    cells: usize,
    /// Fitting config (JSON) [default: configs/default.json when in the working folder, else
    /// the copy built into gfr].
    #[arg(long = "config-path", visible_alias = "config_path")]
    config_path: Option<PathBuf>,
    /// Backend: cpu (ndarray) or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Random seed of the simulated cells and the fit.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cells fitted together (`gfr fit --batch-cells`).
    #[arg(long = "batch-cells", default_value_t = DEFAULT_BATCH_CELLS)]
    batch_cells: usize,
    /// Also write the numbers as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Benchmark network training instead: seconds per epoch of the default GFR network on the
    /// built-in 6,000-digit sample.
    #[arg(long)]
    network: bool,
    /// Network benchmark: hidden neurons H.
    #[arg(long = "n-nodes", default_value_t = 128)]
    n_nodes: usize,
    /// Network benchmark: digits per mini-batch.
    #[arg(long = "batch-size", default_value_t = 64)]
    batch_size: usize,
    /// Network benchmark: epochs timed.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct PreprocessArgs {
    /// CSV of cell ids; without it, every cell of the metadata table (written to
    /// DATA_DIR/cell_ids.csv).
    #[arg(long = "cell-ids", visible_alias = "cell_ids")]
    cell_ids: Option<PathBuf>,
    /// Folder of NWB files: `specimen_{id}/ephys.nwb` (Allen SDK cache) or `{id}.nwb`.
    #[arg(
        long = "nwb-dir",
        visible_alias = "nwb_dir",
        default_value = "cell_types"
    )]
    nwb_dir: PathBuf,
    /// Where to write processed_data/, max_firing_rates/ and cell_ids.csv.
    #[arg(long = "data-dir", visible_alias = "data_dir", default_value = "data")]
    data_dir: PathBuf,
    /// Allen cell metadata table (column `specimen__id`) [default: data/metadata.csv when in
    /// the working folder, else the copy built into gfr].
    #[arg(long)]
    metadata: Option<PathBuf>,
    /// Fetch missing NWB files from the Allen Brain Atlas API (resumable), and without
    /// --cell-ids list the cells from the API.
    #[arg(long)]
    download: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct SimulateArgs {
    /// Number of cells.
    #[arg(long, default_value_t = 4)]
    cells: usize,
    /// Random seed; the same seed gives the same cells.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write processed_data/, max_firing_rates/ and cell_ids.csv.
    #[arg(long = "data-dir", visible_alias = "data_dir", default_value = "data")]
    data_dir: PathBuf,
    /// The model that generates spikes.
    #[arg(long, value_enum, default_value_t = GroundTruth::Adex)]
    truth: GroundTruth,
    /// Id of the first cell; the others follow.
    #[arg(long = "first-id", default_value_t = 900_000_001)]
    first_id: u64,
    /// Replace a DATA_DIR/cell_ids.csv that lists other cells.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct FitArgs {
    /// CSV of cell ids (commas or newlines); default DATA_DIR/cell_ids.csv.
    cell_ids: Option<PathBuf>,
    #[command(flatten)]
    bins: BinSizes,
    /// Degree d of the activation polynomial.
    #[arg(long, default_value_t = 1)]
    degree: usize,
    /// L1 weight C on the filter weights.
    #[arg(long = "C", default_value_t = 0.0)]
    c: f64,
    /// Folder for the results: `bin{B}_actv{A}/{id}.pickle` and `bin{B}_actv{A}/fit_summary.json`
    /// (one folder per bin-size pair).
    #[arg(
        long = "save-path",
        visible_alias = "save_path",
        default_value = "model/params/"
    )]
    save_path: PathBuf,
    /// Fitting config (JSON) [default: configs/default.json when in the working folder, else
    /// the copy built into gfr].
    #[arg(long = "config-path", visible_alias = "config_path")]
    config_path: Option<PathBuf>,
    /// Folder with processed_data/ and max_firing_rates/.
    #[arg(long = "data-dir", visible_alias = "data_dir", default_value = "data")]
    data_dir: PathBuf,
    /// Backend: cpu (ndarray) or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Random seed (activation restarts, group order).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fit N cells together in one batched model (each keeps its own parameters, optimizer
    /// state, schedule, early stop and selection: on the CPU the results are those of
    /// one-at-a-time bit for bit, on wgpu up to float rounding; 1 fits one cell at a time).
    #[arg(
        long = "batch-cells",
        visible_alias = "batch_cells",
        default_value_t = DEFAULT_BATCH_CELLS
    )]
    batch_cells: usize,
    /// Fit only every N-th cell starting at K (`K/N`, 0 ≤ K < N), e.g. one Slurm array task.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Skip cells whose saved result for this bin-size pair was made with this config
    /// (config, degree, C, seed), whatever `retrain_model` says: finish an interrupted run.
    #[arg(long)]
    resume: bool,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let (k, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected K/N, e.g. 0/8"))?;
    let k: usize = k
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: K is not a number"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("`{s}`: N is not a number"))?;
    if n == 0 || k >= n {
        return Err(format!("`{s}`: need 0 ≤ K < N"));
    }
    Ok((k, n))
}

pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Preprocess(a) => preprocess(a),
        Command::Simulate(a) => simulate(a),
        Command::Fit(a) => fit(a),
        Command::Bench(a) => bench(a),
        Command::Dataset(c) => dataset(c),
        Command::Predict(a) => predict(a),
        Command::Network(a) => network(a),
        Command::Plot(c) => plot(c),
    }
}

fn plot(c: PlotCommand) -> Result<()> {
    use gfr::plot::*;
    let files = match c {
        PlotCommand::Fit {
            cell_id,
            params_dir,
            bin_size,
            activation_bin_size,
            data_dir,
            out,
            format,
        } => {
            let file =
                gfr::fit::store::find_result(&params_dir, cell_id, bin_size, activation_bin_size)?;
            let dir = file.parent().unwrap_or(std::path::Path::new("."));
            plot_fit(cell_id, dir, &DataDir::new(data_dir), &out, format)?
        }
        PlotCommand::Dataset {
            dataset,
            out,
            format,
        } => vec![plot_dataset(
            &gfr::dataset::Dataset::load(&dataset)?,
            &out,
            format,
        )?],
        PlotCommand::Network { files, out, format } => vec![plot_networks(&files, &out, format)?],
    };
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

fn network(mut a: NetworkArgs) -> Result<()> {
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
    let spec = NetworkSpec {
        lr: a.lr,
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
        model: a.model.into(),
        history_scale: a.history_scale,
        mnist_dir: a.mnist_dir,
        offline: a.offline,
        train_limit: a.train_limit,
        test_limit: a.test_limit,
        device: a.device,
        seed: a.seed,
        save_dir: a.save_dir,
        resume: a.resume,
        overwrite: a.overwrite,
        diagnose: a.diagnose,
        quiet: a.quiet,
    };
    if let Some(saved) = run_network(&spec, &Stderr)? {
        println!(
            "saved {} and {}",
            saved.json.display(),
            saved.weights.display()
        );
    }
    Ok(())
}

/// Prints a run's notes on stderr and names settings by their flags.
struct Stderr;

impl gfr::network::NetworkObserver for Stderr {
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }

    fn setting(&self, field: &str) -> String {
        format!("--{}", field.replace('_', "-"))
    }
}

/// Checks that the folder of output file `file` (given by `flag`) can take files.
fn check_out_folder(file: &std::path::Path, flag: &str) -> Result<()> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    gfr::fit::store::check_writable(dir.unwrap_or(std::path::Path::new(".")), flag)
        .with_context(|| format!("{flag} {} cannot be written", file.display()))
}

fn dataset(c: DatasetCommand) -> Result<()> {
    use gfr::dataset::{Dataset, MAX_TRAIN_LOSS, MIN_VAL_EVR};
    match c {
        DatasetCommand::Build {
            params_dir,
            out,
            json,
            metadata,
            overwrite,
        } => {
            // a folder named twice is read once (else its results drop each other as duplicates
            // and its summaries count twice)
            let mut seen = std::collections::HashSet::new();
            let params_dir: Vec<PathBuf> = params_dir
                .into_iter()
                .filter(|d| {
                    let first = seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
                    if !first {
                        eprintln!("note: --params-dir {} given twice: read once", d.display());
                    }
                    first
                })
                .collect();
            // the output folders take files: checked before reading every result
            check_out_folder(&out, "--out")?;
            if let Some(j) = &json {
                check_out_folder(j, "--json")?;
            }
            let (cre, _) = load_cre_lines(metadata)?;
            let (ds, report) = Dataset::build(&params_dir, &cre)?;
            for e in &report.unreadable {
                eprintln!("skipped unreadable result: {e}");
            }
            let dirs: Vec<String> = params_dir.iter().map(|d| d.display().to_string()).collect();
            if !report.partial.is_empty() {
                println!(
                    "{} partial results left out (a fit stopped between its runs; `gfr fit --resume` with the same config ends them): {}",
                    report.partial.len(),
                    report
                        .partial
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if report.found == 0 {
                bail!(
                    "no readable fit results in {}{}; {} was not written",
                    dirs.join(", "),
                    if report.partial.is_empty() {
                        ""
                    } else {
                        " (only partial ones: run `gfr fit --resume` to end them)"
                    },
                    out.display()
                );
            }
            if ds.n_records() == 0 && out.exists() && !overwrite {
                bail!(
                    "none of the {} results in {} meets the criteria; {} exists and was left \
                     unchanged (--overwrite replaces it with an empty dataset)",
                    report.found,
                    dirs.join(", "),
                    out.display()
                );
            }
            if !report.duplicates.is_empty() {
                println!(
                    "{} duplicate results dropped (same cell and pair; the best validation EVR kept): {}",
                    report.duplicates.len(),
                    report
                        .duplicates
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if report.fallback > 0 {
                println!(
                    "{} included cells had their activation fitted at 100 ms (fallback; \
                     `actv_bin_size_used` in their records), filed under the pair asked for",
                    report.fallback
                );
            }
            print_fit_summaries(&report.summaries);
            ds.save(&out)?;
            println!(
                "{} results included, {} excluded (val EVR ≤ {MIN_VAL_EVR} or train loss ≥ {MAX_TRAIN_LOSS}), {} unreadable",
                report.included,
                report.excluded,
                report.unreadable.len()
            );
            print!("{}", ds.summary());
            println!("wrote {}", out.display());
            if let Some(j) = json {
                ds.save_json(&j)?;
                println!("wrote {}", j.display());
            }
        }
        DatasetCommand::Import { file, out } => {
            let ds = Dataset::load_json(&file)?;
            ds.save(&out)?;
            print!("{}", ds.summary());
            println!(
                "imported {} records from {} into {}",
                ds.n_records(),
                file.display(),
                out.display()
            );
        }
        DatasetCommand::Export { json, dataset } => {
            let ds = Dataset::load(&dataset)?;
            ds.save_json(&json)?;
            println!("exported {} records to {}", ds.n_records(), json.display());
        }
        DatasetCommand::Summary { dataset } => print!("{}", Dataset::load(&dataset)?.summary()),
        DatasetCommand::Show {
            cell_id,
            bins,
            dataset,
        } => {
            let ds = Dataset::load(&dataset)?;
            let r = ds.record(cell_id, bins.bin_size, bins.activation_bin_size)?;
            let p = &r.params;
            let a = &p.activation;
            println!(
                "cell {}  cre-line {}  bin {} ms  activation bin {} ms",
                r.cell_id,
                if r.cre_line.is_empty() {
                    "—"
                } else {
                    &r.cre_line
                },
                r.bin_size,
                r.actv_bin_size
            );
            println!(
                "val EVR {:.4}  test EVR {:.4}  train loss {:.4}  test loss {:.4}",
                r.val_evr, r.test_evr, r.train_loss, r.test_loss
            );
            println!("{:>10}  {:>12}  {:>12}", "τ (ms)", "α", "β");
            for i in 0..p.n_filters() {
                let tau = if p.lambda[i] >= 1.0 {
                    "—".to_string()
                } else {
                    format!("{:.0}", -(p.bin_size as f64) / (1.0 - p.lambda[i]).ln())
                };
                println!("{tau:>10}  {:>12.5}  {:>12.6}", p.alpha[i], p.beta[i]);
            }
            println!(
                "activation: γ = {:.4} ms⁻¹, σ = {:.2} pA, b = {:.2} pA, c = {:?}",
                a.max_firing_rate, a.max_current, a.threshold, a.poly_coeff
            );
        }
    }
    Ok(())
}

/// Totals of the fit summaries (`fit_summary*.json`, one per run or shard) beside the results.
fn print_fit_summaries(files: &[PathBuf]) {
    if files.is_empty() {
        return;
    }
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut unfit: Vec<String> = Vec::new();
    let mut bad = Vec::new();
    for f in files {
        let rows = std::fs::read(f)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<serde_json::Value>>(&b).ok());
        let Some(rows) = rows else {
            bad.push(f.display().to_string());
            continue;
        };
        for r in rows {
            let status = r["status"].as_str().unwrap_or("?").to_string();
            if status == "failed" {
                unfit.push(format!("{} ({})", r["cell_id"], f.display()));
            }
            *counts.entry(status).or_default() += 1;
        }
    }
    let totals: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!(
        "{} fit summaries: {}",
        files.len() - bad.len(),
        totals.join(", ")
    );
    if !unfit.is_empty() {
        println!("failed cells: {}", unfit.join(", "));
    }
    for b in bad {
        eprintln!("warning: {b} is not a fit summary; ignored");
    }
}

fn predict(a: PredictArgs) -> Result<()> {
    let params = match (&a.dataset, &a.params) {
        (_, Some(p)) => {
            let r = gfr::fit::FitResult::load(p)?;
            if r.params.bin_size != a.bins.bin_size {
                bail!(
                    "--bin-size {}: {} was fitted at {} ms",
                    a.bins.bin_size,
                    p.display(),
                    r.params.bin_size
                );
            }
            r.params
        }
        (d, None) => {
            let path = d.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATASET));
            let id = a.cell_id.context("--cell-id is required with --dataset")?;
            gfr::dataset::Dataset::load(&path)?
                .record(id, a.bins.bin_size, a.bins.activation_bin_size)?
                .params
                .clone()
        }
    };
    let current = read_trace(&a.current)?;
    let rates = params.predict(&current);
    if let Some(i) = rates.iter().position(|r| !r.is_finite()) {
        bail!(
            "the neuron's rate is {} at bin {i}: its parameters or the current ({}) are out of range",
            rates[i],
            a.current.display()
        );
    }
    let mut text = String::from("bin,current_pA,rate_per_ms\n");
    for (i, (c, r)) in current.iter().zip(&rates).enumerate() {
        text += &format!("{i},{c},{r}\n");
    }
    match a.out {
        Some(p) => {
            gfr::data::pickle::write_atomic(&p, text.as_bytes())?;
            eprintln!("wrote {} bins to {}", rates.len(), p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// A current trace from CSV: one value per bin, as one column (optionally with a header; a
/// column named like `current` is chosen when there are several) or one row.
fn read_trace(path: &std::path::Path) -> Result<Vec<f64>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read current file {}", path.display()))?;
    let rows: Vec<csv::StringRecord> = rdr
        .records()
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{}: not CSV", path.display()))?;
    let rows: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| r.iter().any(|f| !f.is_empty()))
        .collect();
    let Some(first) = rows.first() else {
        bail!("{}: no values", path.display())
    };
    let header = first.iter().any(|f| f.parse::<f64>().is_err());
    let body = if header { &rows[1..] } else { &rows[..] };
    let col = if header {
        first
            .iter()
            .position(|h| h.to_lowercase().contains("current") || h == "I")
            .unwrap_or(first.len() - 1)
    } else {
        0
    };
    let values: Vec<&str> = if body.len() == 1 && !header {
        body[0].iter().collect()
    } else {
        body.iter().map(|r| r.get(col).unwrap_or("")).collect()
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let x: f64 = v.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: value {} (`{v}`) is not a number",
                    path.display(),
                    i + 1
                )
            })?;
            if !x.is_finite() {
                bail!("{}: value {} is {x}", path.display(), i + 1)
            }
            Ok(x)
        })
        .collect()
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.cells == 0 || a.batch_cells == 0 {
        bail!("--cells and --batch-cells must be at least 1");
    }
    let device = a.device.device().context("--device")?;
    if a.network {
        eprintln!(
            "benchmark: {} epochs of the default GFR network, H = {}, batch {}, on {}",
            a.epochs,
            a.n_nodes,
            a.batch_size,
            a.device.name()
        );
        let b = gfr::bench::bench_network(
            a.n_nodes,
            a.batch_size,
            a.epochs.max(1),
            a.device.name(),
            device,
        );
        println!("seconds per epoch   {:.3}", b.seconds_per_epoch);
        println!("test acc (step 1)   {:.3}", b.test_accuracy_step1);
        println!("peak memory (MB)    {:.0}", b.peak_memory_mb);
        if let Some(p) = a.json {
            gfr::data::pickle::write_atomic(&p, &serde_json::to_vec_pretty(&b)?)?;
        }
        return Ok(());
    }
    let config = load_fit_config(a.config_path.clone())?;
    eprintln!(
        "benchmark: fitting {} simulated cells with config `{}` on {}",
        a.cells,
        config.config_name,
        a.device.name()
    );
    let b = gfr::bench::bench_fit(
        a.cells,
        a.batch_cells,
        config,
        a.device.name(),
        device,
        a.seed,
    )?;
    println!(
        "cells               {} ({} at a time)",
        b.cells, b.batch_cells
    );
    println!("seconds per cell    {:.3}", b.seconds_per_cell);
    println!("seconds per epoch   {:.5}", b.seconds_per_epoch);
    println!("cells per hour      {:.0}", b.cells_per_hour);
    println!("median test EVR     {:.3}", b.median_test_evr);
    println!("peak memory (MB)    {:.0}", b.peak_memory_mb);
    if let Some(p) = a.json {
        gfr::data::pickle::write_atomic(&p, &serde_json::to_vec_pretty(&b)?)?;
    }
    Ok(())
}

fn preprocess(a: PreprocessArgs) -> Result<()> {
    use gfr::data::preprocess::{Outcome, preprocess_cell};
    let data = DataDir::new(&a.data_dir);
    let where_to_put = || {
        format!(
            "put the NWB files in {dir}/specimen_{{id}}/ephys.nwb (the Allen SDK's CellTypesCache layout) or {dir}/{{id}}.nwb",
            dir = a.nwb_dir.display()
        )
    };
    let ids = match &a.cell_ids {
        Some(p) => read_cell_ids(p)?,
        None => {
            let (mut ids, source) = match a.download.then(gfr::data::download::list_cells) {
                Some(Ok(ids)) => (ids, "the Allen Brain Atlas API".to_string()),
                other => {
                    if let Some(Err(e)) = other {
                        eprintln!("cannot list cells online ({e:#}); using the metadata table");
                    }
                    let (cre, source) = load_cre_lines(a.metadata.clone())
                        .context("without --cell-ids the cell list comes from --metadata")?;
                    (cre.into_keys().collect::<Vec<u64>>(), source)
                }
            };
            ids.sort_unstable();
            write_cell_ids(&data.cell_ids(), &ids)?;
            eprintln!(
                "{} cells from {source}; ids written to {}",
                ids.len(),
                data.cell_ids().display()
            );
            ids
        }
    };
    if a.download {
        let missing: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| gfr::data::nwb::nwb_path(&a.nwb_dir, id).is_none())
            .collect();
        eprintln!(
            "downloading {} missing NWB files into {}",
            missing.len(),
            a.nwb_dir.display()
        );
        let bar = ProgressBar::new(0);
        if a.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        for (k, &id) in missing.iter().enumerate() {
            if let Err(e) = gfr::data::download::download_nwb(&a.nwb_dir, id, &bar) {
                if k == 0 {
                    bar.finish_and_clear();
                    // nothing came through: most likely offline
                    bail!("--download: {e:#}\n{}", where_to_put());
                }
                say(&bar, format!("cell {id}: download failed: {e:#}"));
            }
        }
        bar.finish_and_clear();
    }
    let bar = ProgressBar::new(ids.len() as u64);
    if a.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "preprocessing {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .unwrap(),
    );
    let (mut done, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for &id in &ids {
        bar.set_message(format!("cell {id}"));
        match preprocess_cell(&a.nwb_dir, &data, id) {
            Outcome::Done {
                sweeps,
                max_firing_rate,
            } => {
                say(
                    &bar,
                    format!(
                        "cell {id}: {sweeps} sweeps, max firing rate {max_firing_rate:.3} ms⁻¹"
                    ),
                );
                done.push(id);
            }
            Outcome::Skipped(why) => {
                say(&bar, format!("cell {id}: skipped, {why}"));
                skipped.push((id, why));
            }
            Outcome::Failed(why) => {
                say(&bar, format!("cell {id}: FAILED, {why}"));
                failed.push((id, why));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "preprocessed {} cells: {} done, {} skipped (outputs exist), {} failed",
        ids.len(),
        done.len(),
        skipped.len(),
        failed.len()
    );
    for (id, why) in &failed {
        println!("  failed {id}: {why}");
    }
    if done.is_empty() && !failed.is_empty() && skipped.is_empty() {
        bail!("no cell could be preprocessed");
    }
    Ok(())
}

fn simulate(a: SimulateArgs) -> Result<()> {
    if a.cells == 0 {
        bail!("--cells must be at least 1");
    }
    let dir = DataDir::new(&a.data_dir);
    let new_ids: Vec<u64> = (0..a.cells as u64).map(|k| a.first_id + k).collect();
    if dir.cell_ids().exists() && !a.overwrite {
        let old = read_cell_ids(&dir.cell_ids()).unwrap_or_default();
        if old != new_ids {
            bail!(
                "{} exists and lists other cells ({} ids, first {}); nothing was simulated. \
                 Use another --data-dir, or --overwrite to replace the list",
                dir.cell_ids().display(),
                old.len(),
                old.first().map_or("—".to_string(), |x| x.to_string())
            );
        }
    }
    let bar = ProgressBar::new(a.cells as u64);
    bar.set_style(ProgressStyle::with_template("simulating {bar:30} {pos}/{len} {msg}").unwrap());
    let mut ids = Vec::new();
    for k in 0..a.cells {
        let id = a.first_id + k as u64;
        let cell = simulate_cell(id, k, a.seed, a.truth);
        cell.recording.save(&dir)?;
        say(
            &bar,
            format!(
                "cell {id}: {} — {} sweeps, max rate {:.3} ms⁻¹",
                cell.description,
                cell.recording.sweeps.len(),
                cell.recording.max_firing_rate
            ),
        );
        ids.push(id);
        bar.inc(1);
    }
    bar.finish_and_clear();
    write_cell_ids(&dir.cell_ids(), &ids)?;
    println!(
        "wrote {} cells to {} (ids in {})",
        ids.len(),
        a.data_dir.display(),
        dir.cell_ids().display()
    );
    Ok(())
}

fn fit(a: FitArgs) -> Result<()> {
    FitOptions::check_flags(a.bins.bin_size, a.bins.activation_bin_size, a.c)?;
    let config = load_fit_config(a.config_path.clone())?;
    let data_dir = DataDir::new(&a.data_dir);
    let ids_path = a.cell_ids.clone().unwrap_or_else(|| data_dir.cell_ids());
    let mut ids = read_cell_ids(&ids_path)?;
    if let Some((k, n)) = a.shard {
        ids = ids.into_iter().skip(k).step_by(n).collect();
        eprintln!("shard {k}/{n}: {} cells", ids.len());
    }
    let device = a.device.device().context("--device")?;
    let opts = FitOptions {
        bin_size: a.bins.bin_size,
        activation_bin_size: a.bins.activation_bin_size,
        degree: a.degree,
        l1: a.c,
        save_path: a.save_path.clone(),
        config,
        data_dir,
        device,
        seed: a.seed,
        batch_cells: a.batch_cells,
        resume: a.resume,
        shard: a.shard,
    };
    opts.check()?;
    // a mistyped --data-dir: one clear error, not one "cannot read" per cell
    let processed = a.data_dir.join("processed_data");
    if !processed.is_dir() {
        bail!(
            "--data-dir {}: {} is not a folder (`gfr preprocess` or `gfr simulate` writes it)",
            a.data_dir.display(),
            processed.display()
        );
    }
    eprintln!(
        "fitting {} cells: bin {} ms, activation bin {} ms, config `{}` ({} runs), device {}",
        ids.len(),
        a.bins.bin_size,
        a.bins.activation_bin_size,
        opts.config.config_name,
        opts.config.hparams.len(),
        a.device.name()
    );
    let reports = fit_cells(&ids, &opts, a.quiet)?;
    print!("{}", summary_table(&reports));
    println!(
        "summary: {}",
        opts.pair_dir()
            .join(gfr::fit::summary_name(opts.shard))
            .display()
    );
    let fitted = |r: &&gfr::fit::CellReport| {
        // a cell skipped because its saved result is kept (retrain_model false) is done
        r.status != gfr::fit::CellStatus::Failed
            && (r.status != gfr::fit::CellStatus::Skipped || r.val_evr.is_some())
    };
    if !reports.is_empty() && !reports.iter().any(|r| fitted(&r)) {
        bail!(
            "no cell was fitted: all {} were skipped or failed (reasons above)",
            reports.len()
        );
    }
    Ok(())
}

/// A line above a progress bar, or on stderr when there is no terminal to draw the bar on.
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `--help` describes every flag and argument of every subcommand in a line.
    #[test]
    fn every_argument_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "gfr", &mut missing);
        assert!(missing.is_empty(), "without a description: {missing:?}");
        Cli::command().debug_assert();
    }

    /// Negative numbers after flags are values, not flags (they are then checked).
    #[test]
    fn negative_numbers_are_values() {
        let cli = Cli::try_parse_from(["gfr", "fit", "--C", "-1", "--degree", "1"]).unwrap();
        let Command::Fit(a) = cli.command else {
            panic!("not fit")
        };
        assert_eq!(a.c, -1.0);
        let cli = Cli::try_parse_from(["gfr", "network", "--history-scale", "-1"]).unwrap();
        let Command::Network(a) = cli.command else {
            panic!("not network")
        };
        assert_eq!(a.history_scale, -1.0);
    }
}
