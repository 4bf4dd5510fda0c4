//! `gfr fit`: one GFR neuron per cell.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use gfr::data::{DataDir, read_cell_ids};
use gfr::fit::{FitOptions, FitProgress, fit_cells, summary_table};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{BinSizes, ConfigPath, DeviceArg, InputDataDir, ProgressBars, load_fit_config};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct FitArgs {
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
    #[command(flatten)]
    config: ConfigPath,
    #[command(flatten)]
    data: InputDataDir,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    seed: super::SeedArg,
    #[command(flatten)]
    batch: super::BatchCells,
    /// Fit only every N-th cell starting at K (`K/N`, 0 ≤ K < N), e.g. one Slurm array task.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Submit the fit as an N-task Slurm job array (task K fits `--shard K/N`) with sbatch,
    /// and a dependent job that builds the dataset; prints the job ids and how to watch,
    /// cancel and resubmit. Paths are made absolute, so it works from any folder.
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    slurm: Option<usize>,
    /// An option for sbatch (repeatable), e.g. `--slurm-arg=--partition=cpu`,
    /// `--slurm-arg=--time=02:00:00`, `--slurm-arg=--cpus-per-task=4`.
    #[arg(
        long = "slurm-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "slurm"
    )]
    slurm_arg: Vec<String>,
    /// With --slurm: no dependent `gfr dataset build` job.
    #[arg(long = "no-build", requires = "slurm")]
    no_build: bool,
    /// With --slurm: print the batch scripts instead of submitting them.
    #[arg(long = "dry-run", requires = "slurm")]
    dry_run: bool,
    /// Skip cells whose saved result for this bin-size pair was made with this config
    /// (config, degree, C, seed), whatever `retrain_model` says: finish an interrupted run.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    bars: ProgressBars,
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

pub(super) fn run(a: FitArgs) -> Result<()> {
    FitOptions::check_bins(
        a.bins.bin_size,
        a.bins.activation_bin_size,
        a.c,
        &super::flag,
    )?;
    if let Some(n) = a.slurm {
        return submit(&a, n);
    }
    let config = load_fit_config(a.config.config_path.clone())?;
    let data_dir = DataDir::new(&a.data.data_dir);
    let ids_path = a.cell_ids.clone().unwrap_or_else(|| data_dir.cell_ids());
    let ids = gfr::fit::shard_cells(read_cell_ids(&ids_path)?, a.shard);
    if let Some((k, n)) = a.shard {
        eprintln!("shard {k}/{n}: {} cells", ids.len());
    }
    let device = a.device.backend().device().context("--device")?;
    let opts = options(&a, config, device);
    opts.check(&super::flag)?;
    opts.check_data_dir(&super::flag)?;
    eprintln!(
        "fitting {} cells: bin {} ms, activation bin {} ms, config `{}` ({} runs), device {}",
        ids.len(),
        a.bins.bin_size,
        a.bins.activation_bin_size,
        opts.config.config_name,
        opts.config.hparams.len(),
        a.device.backend().name()
    );
    let reports = fit_cells(&ids, &opts, &FitBars::new(ids.len(), a.bars.quiet))?;
    print!("{}", summary_table(&reports));
    println!(
        "summary: {}",
        opts.pair_dir()
            .join(gfr::fit::summary_name(opts.shard))
            .display()
    );
    gfr::fit::run_outcome(&reports)
}

/// The fit's options from the flags.
fn options(a: &FitArgs, config: gfr::FitConfig, device: gfr::Device) -> FitOptions {
    FitOptions {
        bin_size: a.bins.bin_size,
        activation_bin_size: a.bins.activation_bin_size,
        degree: a.degree,
        l1: a.c,
        save_path: a.save_path.clone(),
        config,
        data_dir: DataDir::new(&a.data.data_dir),
        device,
        seed: a.seed.seed,
        batch_cells: a.batch.or_default(a.device.backend()),
        resume: a.resume,
        shard: a.shard,
    }
}

/// `--slurm N`: the fit as a job array, every path absolute.
fn submit(a: &FitArgs, n: usize) -> Result<()> {
    if n == 0 {
        anyhow::bail!("--slurm 0: must be at least 1 task");
    }
    let abs = |p: &std::path::Path| -> Result<String> {
        Ok(gfr::slurm::absolute(p)?.display().to_string())
    };
    let data_dir = DataDir::new(&a.data.data_dir);
    let ids = a.cell_ids.clone().unwrap_or_else(|| data_dir.cell_ids());
    let cells = read_cell_ids(&ids)?.len();
    // the config of a run without --config-path: the working folder's, else the built-in
    let config = super::default_input(a.config.config_path.clone(), super::DEFAULT_CONFIG);
    let load = match &config {
        Some(p) => gfr::FitConfig::load(p)?,
        None => gfr::FitConfig::builtin(),
    };
    // every setting and the data folder are checked here, before anything is written or
    // submitted, as the tasks would check them (on the CPU: the login node may have no GPU)
    let opts = options(a, load.clone(), gfr::cpu());
    opts.check(&super::flag)?;
    opts.check_data_dir(&super::flag)?;
    let load = opts.config;
    let mut args = vec![
        abs(&ids)?,
        "--bin-size".into(),
        a.bins.bin_size.to_string(),
        "--activation-bin-size".into(),
        a.bins.activation_bin_size.to_string(),
        "--degree".into(),
        a.degree.to_string(),
        "--C".into(),
        a.c.to_string(),
        "--save-path".into(),
        abs(&a.save_path)?,
        "--data-dir".into(),
        abs(&a.data.data_dir)?,
        "--device".into(),
        a.device.backend().name().into(),
        "--seed".into(),
        a.seed.seed.to_string(),
        "--batch-cells".into(),
        opts.batch_cells.to_string(),
    ];
    if let Some(c) = &config {
        args.extend(["--config-path".into(), abs(c)?]);
    }
    if a.resume {
        args.push("--resume".into());
    }
    let exe = std::env::current_exe().context("cannot find the gfr binary's own path")?;
    let job = gfr::slurm::SlurmFit {
        tasks: n,
        exe,
        workdir: std::env::current_dir().context("the working folder")?,
        fit_args: args,
        save_path: gfr::slurm::absolute(&a.save_path)?,
        pair: gfr::fit::pair_dir_name(a.bins.bin_size, a.bins.activation_bin_size),
        sbatch_args: a.slurm_arg.clone(),
        build: !a.no_build,
    };
    eprintln!(
        "{cells} cells in {n} tasks (config `{}`), results in {}",
        load.config_name,
        job.pair_dir().display()
    );
    if a.dry_run {
        println!(
            "# {}/fit.sbatch (sbatch {})",
            job.script_dir().display(),
            a.slurm_arg.join(" ")
        );
        print!("{}", job.array_script());
        if job.build {
            println!(
                "\n# {}/dataset-build.sbatch (sbatch --dependency=afterok:ARRAY_JOB)",
                job.script_dir().display()
            );
            print!("{}", job.build_script());
        }
        return Ok(());
    }
    let (id, build) = job.submit()?;
    let script = job.script_dir().join("fit.sbatch");
    println!("submitted job array {id} ({n} tasks)");
    if let Some(b) = &build {
        println!(
            "submitted job {b}: `gfr dataset build` into {} once every task succeeded",
            job.dataset().display()
        );
    }
    println!("logs:      {}/fit-task-K.log", job.log_dir().display());
    println!("watch:     squeue -j {id}    (afterwards: sacct -j {id})");
    println!("cancel:    scancel {id}    (one task: scancel {id}_K)");
    println!(
        "resubmit task K (it resumes): sbatch --array=K {} {} --resume",
        a.slurm_arg.join(" "),
        script.display()
    );
    Ok(())
}

/// The two progress bars of `gfr fit` (cells; epochs of the current run) and its per-cell lines.
struct FitBars {
    mp: MultiProgress,
    cells: ProgressBar,
    epochs: ProgressBar,
    /// "run i/k" of the current run, shown before the loss.
    run: std::cell::RefCell<String>,
    quiet: bool,
}

impl FitBars {
    fn new(cells: usize, quiet: bool) -> Self {
        let mp = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let bar = mp.add(ProgressBar::new(cells as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "cells  {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
            )
            .unwrap(),
        );
        let epochs = mp.add(ProgressBar::new(0));
        epochs
            .set_style(ProgressStyle::with_template("epochs {bar:30} {pos}/{len} {msg}").unwrap());
        Self {
            mp,
            cells: bar,
            epochs,
            run: Default::default(),
            quiet,
        }
    }
}

impl FitProgress for FitBars {
    fn setting(&self, field: &str) -> String {
        super::flag(field)
    }
    fn stage(&self, msg: &str) {
        self.epochs.set_message(msg.to_string());
    }
    fn note(&self, msg: &str) {
        // a hidden bar (--quiet, or no terminal) prints nothing through println
        if self.epochs.is_hidden() {
            eprintln!("{msg}");
        } else {
            self.epochs.println(msg);
        }
    }
    fn run_started(&self, run: usize, runs: usize, epochs: usize) {
        self.epochs.reset();
        self.epochs.set_length(epochs as u64);
        *self.run.borrow_mut() = format!("run {}/{runs}", run + 1);
        self.epochs.set_message(self.run.borrow().clone());
    }
    fn epoch(&self, _epoch: usize, train_loss: f64) {
        self.epochs.inc(1);
        self.epochs
            .set_message(format!("{} loss {train_loss:.4}", self.run.borrow()));
    }
    fn batch_started(&self, chunk: &[u64]) {
        self.cells.set_message(match chunk {
            [one] => format!("cell {one}"),
            many => format!(
                "cells {}…{} ({} together)",
                many[0],
                many[many.len() - 1],
                many.len()
            ),
        });
    }
    fn cell_done(&self, r: &gfr::fit::CellReport) {
        let line = match (&r.val_evr, &r.test_evr) {
            (Some(v), Some(t)) if r.status != gfr::fit::CellStatus::Failed => format!(
                "cell {}: {} (val EVR {v:.3}, test EVR {t:.3}, {:.2} s)",
                r.cell_id, r.status, r.seconds
            ),
            _ => format!("cell {}: {} — {}", r.cell_id, r.status, r.message),
        };
        if self.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!("{line}")
        } else {
            self.mp.println(line).ok();
        }
        self.cells.inc(1);
    }
    fn finished(&self) {
        self.epochs.finish_and_clear();
        self.cells.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use clap::Parser;

    /// Negative numbers after flags are values, not flags (they are then checked).
    #[test]
    fn negative_numbers_are_values() {
        let cli = Cli::try_parse_from(["gfr", "fit", "--C", "-1", "--degree", "1"]).unwrap();
        let Command::Fit(a) = cli.command else {
            panic!("not fit")
        };
        assert_eq!(a.c, -1.0);
    }
}
