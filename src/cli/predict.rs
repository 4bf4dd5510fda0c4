//! `gfr predict`: a fitted neuron's firing rate for a current trace.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{BinSizes, DEFAULT_DATASET};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct PredictArgs {
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

pub(super) fn run(a: PredictArgs) -> Result<()> {
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
    let rates = params
        .predict_checked(&current)
        .with_context(|| format!("--current {}", a.current.display()))?;
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
