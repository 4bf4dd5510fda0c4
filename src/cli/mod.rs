//! Command-line interface: one subcommand per pipeline stage, with the seed's flag spellings.
//!
//! This file holds the top-level parser, the dispatch and what several commands share (default
//! inputs, flattened argument groups); each command's arguments and code are in its own file.

mod bench;
mod dataset;
mod fit;
mod network;
mod plot;
mod predict;
mod preprocess;
mod reference;
mod simulate;
mod spikes;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use indicatif::ProgressBar;

use gfr::device::Backend;
use gfr::fit::FitConfig;

use gfr::fit::default_batch_cells;

/// Default input files, read from the working folder when there; else the copy compiled in.
const DEFAULT_CONFIG: &str = "configs/default.json";
use gfr::dataset::DEFAULT_METADATA;

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

/// Cre lines of `--metadata` ([`gfr::dataset::cre_lines`]) and where they came from.
fn load_cre_lines(
    flag: Option<PathBuf>,
) -> Result<(std::collections::HashMap<u64, String>, String)> {
    let (cre, source) = gfr::dataset::cre_lines(flag.as_deref())?;
    note_builtin_metadata(&source);
    Ok((cre, source))
}

/// Says so when the metadata came from the copy built into gfr.
fn note_builtin_metadata(source: &str) {
    if source.starts_with("the built-in") {
        eprintln!("{DEFAULT_METADATA} is not in this folder: using the copy built into gfr");
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
    Preprocess(preprocess::PreprocessArgs),
    /// Simulate spiking cells under an Allen-like protocol and write them as processed data.
    Simulate(simulate::SimulateArgs),
    /// Fit one GFR neuron per cell (activation, then filters) and save the results.
    Fit(fit::FitArgs),
    /// Benchmark fitting on simulated cells: seconds per cell and per epoch, cells per hour,
    /// peak memory.
    Bench(bench::BenchArgs),
    /// The dataset of fitted neurons: build, import, export, summary, show.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// Run a fitted neuron on a current trace and write its firing rate per bin.
    Predict(predict::PredictArgs),
    /// Train a recurrent network of GFR neurons (or an RNN / LSTM baseline) on
    /// line-by-line MNIST. Also accepts the seed's positional form:
    /// `gfr network 1e-3 30 64 128 True False`.
    Network(network::NetworkArgs),
    /// Figures: a fitted cell, the dataset's EVRs, network training curves.
    #[command(subcommand)]
    Plot(plot::PlotCommand),
    /// Spike times of a cell's sweeps: stored in its NWB file (NWB 1) or detected from the
    /// membrane potential (NWB 2; NWB 1 too, as a check), as CSV, with a figure per sweep.
    Spikes(spikes::SpikesArgs),
    /// Print a shell completion script (e.g. `gfr completions bash > ~/.local/share/bash-completion/completions/gfr`).
    Completions(reference::CompletionsArgs),
    /// Print this command-line reference as Markdown (docs/cli.md), or write man pages.
    Reference(reference::ReferenceArgs),
}

use gfr::dataset::DEFAULT_DATASET;

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

/// `--data-dir` of the commands that write processed data.
#[derive(Args)]
struct OutputDataDir {
    /// Where to write processed_data/, max_firing_rates/ and cell_ids.csv.
    #[arg(long = "data-dir", visible_alias = "data_dir", default_value = "data")]
    data_dir: PathBuf,
}

/// `--data-dir` of the commands that read processed data.
#[derive(Args)]
struct InputDataDir {
    /// Folder with processed_data/ and max_firing_rates/.
    #[arg(long = "data-dir", visible_alias = "data_dir", default_value = "data")]
    data_dir: PathBuf,
}

/// `--config-path`: the fitting config (see [`load_fit_config`]).
#[derive(Args)]
struct ConfigPath {
    /// Fitting config (JSON) [default: configs/default.json when in the working folder, else
    /// the copy built into gfr].
    #[arg(long = "config-path", visible_alias = "config_path")]
    config_path: Option<PathBuf>,
}

/// `--device`: the backend.
#[derive(Args)]
struct DeviceArg {
    /// Backend: cpu (ndarray) or wgpu.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
}

impl DeviceArg {
    fn backend(&self) -> Backend {
        match self.device {
            DeviceChoice::Cpu => Backend::Cpu,
            DeviceChoice::Wgpu => Backend::Wgpu,
        }
    }
}

/// `--device` values ([`Backend`]).
#[derive(Clone, Copy, clap::ValueEnum)]
enum DeviceChoice {
    /// ndarray on the CPU.
    Cpu,
    /// wgpu: Vulkan / Metal / DX12 / GL, whichever the machine offers.
    Wgpu,
}

/// `--format` values ([`gfr::plot::Format`]).
#[derive(Clone, Copy, clap::ValueEnum)]
enum ImageFormat {
    Png,
    Svg,
}

impl From<ImageFormat> for gfr::plot::Format {
    fn from(f: ImageFormat) -> Self {
        match f {
            ImageFormat::Png => Self::Png,
            ImageFormat::Svg => Self::Svg,
        }
    }
}

/// `--seed` of the commands that draw random numbers.
#[derive(Args)]
struct SeedArg {
    /// Random seed; the same seed repeats every draw (simulated cells; activation restarts
    /// and group order of a fit; a network's initial weights, batch order and drawn neurons).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// `--batch-cells` of `gfr fit` and `gfr bench`.
#[derive(Args)]
struct BatchCells {
    /// Fit N cells together in one batched model (each keeps its own parameters, optimizer
    /// state, schedule, early stop and selection: on the CPU the results are those of
    /// one-at-a-time bit for bit, on wgpu up to float rounding; 1 fits one cell at a time)
    /// [default: 16 on the CPU, 2500 on wgpu].
    #[arg(long = "batch-cells", visible_alias = "batch_cells")]
    batch_cells: Option<usize>,
}

impl BatchCells {
    /// The flag's value, else the backend's default.
    fn or_default(&self, backend: Backend) -> usize {
        self.batch_cells
            .unwrap_or_else(|| default_batch_cells(backend))
    }
}

/// `--quiet` of the commands that draw progress bars (`gfr network` says it in the singular).
#[derive(Args)]
struct ProgressBars {
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn run() -> Result<()> {
    // usage errors exit 1 like every other error before the work (clap's own is 2); --help
    // and --version exit 0
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { 1 } else { 0 })
    });
    match cli.command {
        Command::Preprocess(a) => preprocess::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Fit(a) => fit::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Dataset(c) => dataset::run(c),
        Command::Predict(a) => predict::run(a),
        Command::Network(a) => network::run(a),
        Command::Plot(c) => plot::run(c),
        Command::Spikes(a) => spikes::run(a),
        Command::Completions(a) => reference::completions(a),
        Command::Reference(a) => reference::reference(a),
    }
}

/// The flag that sets a library setting `field` (`bin_size` → `--bin-size`; the L1 weight
/// `l1` is the seed's `--C`): how the observers' `setting` names settings in errors.
fn flag(field: &str) -> String {
    match field {
        "l1" => "--C".to_string(),
        f => format!("--{}", f.replace('_', "-")),
    }
}

/// A progress bar of `len` steps on stderr, drawn with the indicatif `template` (hidden when
/// `quiet`): every command's bars are made here.
fn progress_bar(len: u64, template: &str, quiet: bool) -> ProgressBar {
    let target = if quiet {
        indicatif::ProgressDrawTarget::hidden()
    } else {
        indicatif::ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("a valid template"));
    bar
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

    /// `--batch-cells`'s help states the defaults the code uses.
    #[test]
    fn batch_cells_help_states_the_defaults() {
        use gfr::fit::{DEFAULT_BATCH_CELLS, DEFAULT_BATCH_CELLS_GPU};
        let cli = Cli::command();
        for sub in ["fit", "bench"] {
            let help = cli
                .find_subcommand(sub)
                .and_then(|c| c.get_arguments().find(|a| a.get_id() == "batch_cells"))
                .and_then(|a| a.get_help())
                .unwrap()
                .to_string();
            let stated = format!(
                "[default: {DEFAULT_BATCH_CELLS} on the CPU, {DEFAULT_BATCH_CELLS_GPU} on wgpu]"
            );
            assert!(help.contains(&stated), "{sub}: {help}");
        }
        assert_eq!(default_batch_cells(Backend::Cpu), DEFAULT_BATCH_CELLS);
        assert_eq!(default_batch_cells(Backend::Wgpu), DEFAULT_BATCH_CELLS_GPU);
    }

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
}
