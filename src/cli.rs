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
}

#[derive(Subcommand)]
enum DatasetCommand {
    /// Gather per-cell fit results, apply the criteria (val EVR > 0.5, train loss < 0.45),
    /// add cre lines, and write the dataset pickle (and optionally the JSON list).
    Build {
        /// Folders of per-cell results (repeatable; shards merge).
        #[arg(
            long = "params-dir",
            visible_alias = "params_dir",
            default_value = "model/params"
        )]
        params_dir: Vec<PathBuf>,
        #[arg(long, default_value = DEFAULT_DATASET)]
        out: PathBuf,
        /// Also write the published JSON list here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Allen cell metadata table (specimen__id, line_name).
        #[arg(long, default_value = "data/metadata.csv")]
        metadata: PathBuf,
    },
    /// Read a dataset in the published JSON format into the pickle.
    Import {
        file: PathBuf,
        #[arg(long, default_value = DEFAULT_DATASET)]
        out: PathBuf,
    },
    /// Write the dataset as the published JSON list.
    Export {
        #[arg(long)]
        json: PathBuf,
        #[arg(long, default_value = DEFAULT_DATASET)]
        dataset: PathBuf,
    },
    /// Cell counts per (bin size, activation bin size).
    Summary {
        #[arg(long, default_value = DEFAULT_DATASET)]
        dataset: PathBuf,
    },
    /// One cell's record and neuron parameters.
    Show {
        cell_id: u64,
        #[command(flatten)]
        bins: BinSizes,
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
struct PredictArgs {
    /// Cell id (looked up in --dataset).
    #[arg(long = "cell-id", visible_alias = "cell_id")]
    cell_id: Option<u64>,
    #[command(flatten)]
    bins: BinSizes,
    /// Dataset pickle to take the neuron from.
    #[arg(long, conflicts_with = "params")]
    dataset: Option<PathBuf>,
    /// A per-cell fit result (`model/params/{id}.pickle`) to take the neuron from.
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
struct BenchArgs {
    /// Number of simulated cells.
    #[arg(long, default_value_t = 20)]
    cells: usize,
    /// Fitting config (JSON).
    #[arg(
        long = "config-path",
        visible_alias = "config_path",
        default_value = "configs/default.json"
    )]
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
    #[command(flatten)]
    bins: BinSizes,
    /// Degree d of the activation polynomial.
    #[arg(long, default_value_t = 1)]
    degree: usize,
    /// L1 weight C on the filter weights.
    #[arg(long = "C", default_value_t = 0.0)]
    c: f64,
    /// Folder for the per-cell results `{id}.pickle` and fit_summary.json.
    #[arg(
        long = "save-path",
        visible_alias = "save_path",
        default_value = "model/params/"
    )]
    save_path: PathBuf,
    /// Fitting config (JSON).
    #[arg(
        long = "config-path",
        visible_alias = "config_path",
        default_value = "configs/default.json"
    )]
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
    /// Fit only every N-th cell starting at K (`K/N`, 0 ≤ K < N), e.g. one Slurm array task.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
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
        Command::Simulate(a) => simulate(a),
        Command::Fit(a) => fit(a),
        Command::Bench(a) => bench(a),
        Command::Dataset(c) => dataset(c),
        Command::Predict(a) => predict(a),
    }
}

fn dataset(c: DatasetCommand) -> Result<()> {
    use gfr::dataset::{Dataset, MAX_TRAIN_LOSS, MIN_VAL_EVR, read_cre_lines};
    match c {
        DatasetCommand::Build {
            params_dir,
            out,
            json,
            metadata,
        } => {
            let cre = if metadata.exists() {
                read_cre_lines(&metadata)?
            } else {
                eprintln!(
                    "warning: metadata table {} not found; cre lines left empty",
                    metadata.display()
                );
                Default::default()
            };
            let (ds, report) = Dataset::build(&params_dir, &cre)?;
            for e in &report.unreadable {
                eprintln!("skipped unreadable result: {e}");
            }
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
    if a.cells == 0 {
        bail!("--cells must be at least 1");
    }
    let config = FitConfig::load(&a.config_path)?;
    let device = a.device.device().context("--device")?;
    eprintln!(
        "benchmark: fitting {} simulated cells with config `{}` on {}",
        a.cells,
        config.config_name,
        a.device.name()
    );
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
    let config = FitConfig::load(&a.config_path)?;
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
    };
    opts.check()?;
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
        a.save_path.join("fit_summary.json").display()
    );
    if reports
        .iter()
        .all(|r| r.status == "failed" || r.status == "skipped")
        && reports.iter().any(|r| r.status == "failed")
    {
        bail!("no cell was fitted");
    }
    Ok(())
}
