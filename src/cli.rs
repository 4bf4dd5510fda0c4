//! Command-line interface: one subcommand per pipeline stage, with the seed's flag spellings.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use gfr::data::{DataDir, read_cell_ids, write_cell_ids};
use gfr::device::Backend;
use gfr::fit::{FitConfig, FitOptions, fit_cells, summary_table};
use gfr::simulate::{GroundTruth, simulate_cell};

#[derive(Parser)]
#[command(name = "gfr", version, about = "Generalized Firing Rate neurons: fit them to recordings, train networks of them")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate spiking cells under an Allen-like protocol and write them as processed data.
    Simulate(SimulateArgs),
    /// Fit one GFR neuron per cell (activation, then filters) and save the results.
    Fit(FitArgs),
    /// Benchmark fitting on simulated cells: seconds per cell and per epoch, cells per hour,
    /// peak memory.
    Bench(BenchArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Number of simulated cells.
    #[arg(long, default_value_t = 20)]
    cells: usize,
    /// Fitting config (JSON).
    #[arg(long = "config-path", visible_alias = "config_path", default_value = "configs/default.json")]
    config_path: PathBuf,
    /// Backend: cpu (ndarray) or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the numbers as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
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
}

#[derive(Args)]
struct FitArgs {
    /// CSV of cell ids (commas or newlines); default DATA_DIR/cell_ids.csv.
    cell_ids: Option<PathBuf>,
    /// Model bin size Δt in ms: 10, 20, 50 or 100.
    #[arg(long = "bin-size", visible_alias = "bin_size", default_value_t = 20)]
    bin_size: u32,
    /// Activation bin size Δt' in ms: 20 or 100 (10 and 50 also work).
    #[arg(long = "activation-bin-size", visible_alias = "activation_bin_size", default_value_t = 20)]
    activation_bin_size: u32,
    /// Degree d of the activation polynomial.
    #[arg(long, default_value_t = 1)]
    degree: usize,
    /// L1 weight C on the filter weights.
    #[arg(long = "C", default_value_t = 0.0)]
    c: f64,
    /// Folder for the per-cell results `{id}.pickle` and fit_summary.json.
    #[arg(long = "save-path", visible_alias = "save_path", default_value = "model/params/")]
    save_path: PathBuf,
    /// Fitting config (JSON).
    #[arg(long = "config-path", visible_alias = "config_path", default_value = "configs/default.json")]
    config_path: PathBuf,
    /// Folder with processed_data/ and max_firing_rates/.
    #[arg(long = "data-dir", visible_alias = "data_dir", default_value = "data")]
    data_dir: PathBuf,
    /// Backend: cpu (ndarray) or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Random seed (activation restarts, group order).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Simulate(a) => simulate(a),
        Command::Fit(a) => fit(a),
        Command::Bench(a) => bench(a),
    }
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.cells == 0 {
        bail!("--cells must be at least 1");
    }
    let config = FitConfig::load(&a.config_path)?;
    let device = a.device.device().context("--device")?;
    eprintln!("benchmark: fitting {} simulated cells with config `{}` on {}", a.cells, config.config_name, a.device.name());
    let b = gfr::bench::bench_fit(a.cells, config, a.device.name(), device, a.seed)?;
    println!("cells               {}", b.cells);
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

fn simulate(a: SimulateArgs) -> Result<()> {
    if a.cells == 0 {
        bail!("--cells must be at least 1");
    }
    let dir = DataDir::new(&a.data_dir);
    let bar = ProgressBar::new(a.cells as u64);
    bar.set_style(ProgressStyle::with_template("simulating {bar:30} {pos}/{len} {msg}").unwrap());
    let mut ids = Vec::new();
    for k in 0..a.cells {
        let id = a.first_id + k as u64;
        let cell = simulate_cell(id, k, a.seed, a.truth);
        cell.recording.save(&dir)?;
        bar.println(format!(
            "cell {id}: {} — {} sweeps, max rate {:.3} ms⁻¹",
            cell.description,
            cell.recording.sweeps.len(),
            cell.recording.max_firing_rate
        ));
        ids.push(id);
        bar.inc(1);
    }
    bar.finish_and_clear();
    write_cell_ids(&dir.cell_ids(), &ids)?;
    println!("wrote {} cells to {} (ids in {})", ids.len(), a.data_dir.display(), dir.cell_ids().display());
    Ok(())
}

fn fit(a: FitArgs) -> Result<()> {
    FitOptions::check_flags(a.bin_size, a.activation_bin_size, a.c)?;
    let config = FitConfig::load(&a.config_path)?;
    let data_dir = DataDir::new(&a.data_dir);
    let ids_path = a.cell_ids.clone().unwrap_or_else(|| data_dir.cell_ids());
    let ids = read_cell_ids(&ids_path)?;
    let device = a.device.device().context("--device")?;
    let opts = FitOptions {
        bin_size: a.bin_size,
        activation_bin_size: a.activation_bin_size,
        degree: a.degree,
        l1: a.c,
        save_path: a.save_path.clone(),
        config,
        data_dir,
        device,
        seed: a.seed,
    };
    opts.check()?;
    eprintln!(
        "fitting {} cells: bin {} ms, activation bin {} ms, config `{}` ({} runs), device {}",
        ids.len(),
        a.bin_size,
        a.activation_bin_size,
        opts.config.config_name,
        opts.config.hparams.len(),
        a.device.name()
    );
    let reports = fit_cells(&ids, &opts, a.quiet)?;
    print!("{}", summary_table(&reports));
    println!("summary: {}", a.save_path.join("fit_summary.json").display());
    if reports.iter().all(|r| r.status == "failed" || r.status == "skipped") && reports.iter().any(|r| r.status == "failed") {
        bail!("no cell was fitted");
    }
    Ok(())
}
