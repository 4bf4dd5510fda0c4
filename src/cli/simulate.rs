//! `gfr simulate`: synthetic cells written as processed data.

use anyhow::{Result, bail};
use clap::Args;

use gfr::data::{DataDir, read_cell_ids, write_cell_ids};
use gfr::simulate::{GroundTruth, simulate_cells};

use super::{OutputDataDir, say};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct SimulateArgs {
    /// Number of cells.
    #[arg(long, default_value_t = 4)]
    cells: usize,
    #[command(flatten)]
    seed: super::SeedArg,
    #[command(flatten)]
    data: OutputDataDir,
    /// The model that generates spikes.
    #[arg(long, value_enum, default_value_t = Truth::Adex)]
    truth: Truth,
    /// Id of the first cell; the others follow.
    #[arg(long = "first-id", default_value_t = 900_000_001)]
    first_id: u64,
    /// Replace a DATA_DIR/cell_ids.csv that lists other cells.
    #[arg(long)]
    overwrite: bool,
}

pub(super) fn run(a: SimulateArgs) -> Result<()> {
    if a.cells == 0 {
        bail!("--cells must be at least 1");
    }
    let dir = DataDir::new(&a.data.data_dir);
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
    let bar = super::progress_bar(
        a.cells as u64,
        "simulating {bar:30} {pos}/{len} {msg}",
        false,
    );
    let ids = simulate_cells(a.first_id, a.cells, a.seed.seed, a.truth.into(), |cell| {
        let id = cell.recording.cell_id;
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
        bar.inc(1);
        Ok(id)
    })
    .into_iter()
    .collect::<Result<Vec<u64>>>()?;
    bar.finish_and_clear();
    write_cell_ids(&dir.cell_ids(), &ids)?;
    println!(
        "wrote {} cells to {} (ids in {})",
        ids.len(),
        a.data.data_dir.display(),
        dir.cell_ids().display()
    );
    Ok(())
}

/// `--truth` values ([`GroundTruth`]).
#[derive(Clone, Copy, clap::ValueEnum)]
enum Truth {
    /// Adaptive exponential integrate-and-fire neurons with intrinsic noise.
    Adex,
    /// A known GFR neuron with Poisson spike counts.
    Gfr,
}

impl From<Truth> for GroundTruth {
    fn from(t: Truth) -> Self {
        match t {
            Truth::Adex => Self::Adex,
            Truth::Gfr => Self::Gfr,
        }
    }
}
