//! `gfr dataset`: the dataset of fitted neurons (build, import, export, summary, show).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::{BinSizes, DEFAULT_DATASET, load_cre_lines};

#[derive(Subcommand)]
pub(super) enum DatasetCommand {
    /// Gather per-cell fit results, apply the criteria (val EVR > 0.5, train loss < 0.45),
    /// add cre lines, and write the dataset pickle (and optionally the JSON list).
    #[command(allow_negative_numbers = true)]
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
        #[command(flatten)]
        out: DatasetOut,
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
        /// Build even when a sharded fit misses shards (said, and listed).
        #[arg(long = "allow-missing")]
        allow_missing: bool,
        /// Include neurons whose validation EVR is above this (published: 0.5).
        #[arg(long = "min-val-evr", default_value_t = gfr::dataset::MIN_VAL_EVR)]
        min_val_evr: f64,
        /// Include neurons whose final train loss (padded-length average, as published) is
        /// below this (published: 0.45).
        #[arg(long = "max-train-loss", default_value_t = gfr::dataset::MAX_TRAIN_LOSS)]
        max_train_loss: f64,
    },
    /// Read a dataset in the published JSON format into the pickle.
    Import {
        /// The published JSON list (`model/gfr_dataset.json`; bare NaN as pandas writes it is fine).
        file: PathBuf,
        #[command(flatten)]
        out: DatasetOut,
    },
    /// Write the dataset as the published JSON list.
    Export {
        /// JSON file to write.
        #[arg(long)]
        json: PathBuf,
        #[command(flatten)]
        dataset: DatasetIn,
    },
    /// Cell counts per (bin size, activation bin size).
    Summary {
        #[command(flatten)]
        dataset: DatasetIn,
    },
    /// One cell's record and neuron parameters.
    Show {
        /// The cell to show.
        cell_id: u64,
        #[command(flatten)]
        bins: BinSizes,
        #[command(flatten)]
        dataset: DatasetIn,
    },
}

/// `--dataset`: the dataset pickle a command reads.
#[derive(Args)]
pub(super) struct DatasetIn {
    /// Dataset pickle to read.
    #[arg(long, default_value = DEFAULT_DATASET)]
    dataset: PathBuf,
}

/// `--out`: the dataset pickle a command writes.
#[derive(Args)]
pub(super) struct DatasetOut {
    /// Dataset pickle to write.
    #[arg(long, default_value = DEFAULT_DATASET)]
    out: PathBuf,
}

pub(super) fn run(c: DatasetCommand) -> Result<()> {
    use gfr::dataset::Dataset;
    match c {
        DatasetCommand::Build {
            params_dir,
            out: DatasetOut { out },
            json,
            metadata,
            overwrite,
            min_val_evr,
            max_train_loss,
            allow_missing,
        } => {
            let mut seen = std::collections::HashSet::new();
            for d in &params_dir {
                if !seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())) {
                    eprintln!("note: --params-dir {} given twice: read once", d.display());
                }
            }
            let (cre, _) = load_cre_lines(metadata)?;
            let criteria = gfr::dataset::Criteria {
                min_val_evr,
                max_train_loss,
            };
            let (ds, report) = gfr::dataset::build_and_save(
                &params_dir,
                &out,
                json.as_deref(),
                &cre,
                &criteria,
                overwrite,
                allow_missing,
                &super::flag,
            )?;
            if !report.missing_shards.is_empty() {
                println!(
                    "warning: built without the missing shards ({}): {}",
                    super::flag("allow_missing"),
                    report.missing_shards.join(", ")
                );
            }
            for e in &report.unreadable {
                eprintln!("skipped unreadable result: {e}");
            }
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
            println!(
                "{} results included, {} excluded (val EVR ≤ {min_val_evr} or train loss ≥ {max_train_loss}), {} unreadable",
                report.included,
                report.excluded,
                report.unreadable.len()
            );
            print!("{}", ds.summary());
            println!("wrote {}", out.display());
            if let Some(j) = json {
                println!("wrote {}", j.display());
            }
        }
        DatasetCommand::Import {
            file,
            out: DatasetOut { out },
        } => {
            let ds = Dataset::load_json(&file)?;
            // as `dataset build`: an empty dataset never replaces one
            if ds.n_records() == 0 && out.exists() {
                bail!(
                    "{} holds no records; {} exists and was left unchanged",
                    file.display(),
                    out.display()
                );
            }
            ds.save(&out)?;
            print!("{}", ds.summary());
            println!(
                "imported {} records from {} into {}",
                ds.n_records(),
                file.display(),
                out.display()
            );
        }
        DatasetCommand::Export {
            json,
            dataset: DatasetIn { dataset },
        } => {
            let ds = Dataset::load(&dataset)?;
            ds.save_json(&json)?;
            println!("exported {} records to {}", ds.n_records(), json.display());
        }
        DatasetCommand::Summary {
            dataset: DatasetIn { dataset },
        } => print!("{}", Dataset::load(&dataset)?.summary()),
        DatasetCommand::Show {
            cell_id,
            bins,
            dataset: DatasetIn { dataset },
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
