//! `gfr fit`: one GFR neuron per cell.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use gfr::data::{DataDir, read_cell_ids};
use gfr::fit::{FitOptions, FitProgress, fit_cells, summary_table};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    BinSizes, ConfigPath, DEFAULT_BATCH_CELLS, DeviceArg, InputDataDir, ProgressBars,
    load_fit_config,
};

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
    let config = load_fit_config(a.config.config_path.clone())?;
    let data_dir = DataDir::new(&a.data.data_dir);
    let ids_path = a.cell_ids.clone().unwrap_or_else(|| data_dir.cell_ids());
    let ids = gfr::fit::shard_cells(read_cell_ids(&ids_path)?, a.shard);
    if let Some((k, n)) = a.shard {
        eprintln!("shard {k}/{n}: {} cells", ids.len());
    }
    let device = a.device.backend().device().context("--device")?;
    let opts = FitOptions {
        bin_size: a.bins.bin_size,
        activation_bin_size: a.bins.activation_bin_size,
        degree: a.degree,
        l1: a.c,
        save_path: a.save_path.clone(),
        config,
        data_dir,
        device,
        seed: a.seed.seed,
        batch_cells: a.batch_cells,
        resume: a.resume,
        shard: a.shard,
    };
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
