//! `gfr simulate`: synthetic cells written as processed data.

use anyhow::Result;
use clap::Args;

use gfr::data::DataDir;
use gfr::simulate::{GroundTruth, simulate_into, simulate_nwb_into};

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
    /// Write NWB 2 files instead of processed data: NWB_DIR/{id}.nwb (pynwb / IPFX layout,
    /// 50 kHz, the membrane potential with spike waveforms) and NWB_DIR/cell_ids.csv, for
    /// `gfr preprocess --nwb-dir NWB_DIR` (AdEx cells only).
    #[arg(long = "nwb-dir", visible_alias = "nwb_dir", conflicts_with = "truth")]
    nwb_dir: Option<std::path::PathBuf>,
}

pub(super) fn run(a: SimulateArgs) -> Result<()> {
    let bar = super::progress_bar(
        a.cells as u64,
        "simulating {bar:30} {pos}/{len} {msg}",
        false,
    );
    if let Some(nwb_dir) = &a.nwb_dir {
        let ids = simulate_nwb_into(
            nwb_dir,
            a.cells,
            a.first_id,
            a.seed.seed,
            a.overwrite,
            &super::flag,
            |cell| {
                let spikes: usize = cell.spike_times.iter().map(Vec::len).sum();
                say(
                    &bar,
                    format!(
                        "cell {}: {} — {} sweeps, {spikes} spikes",
                        cell.cell_id,
                        cell.description,
                        cell.sweeps.len()
                    ),
                );
                bar.inc(1);
            },
        )?;
        bar.finish_and_clear();
        println!(
            "wrote {} NWB 2 files to {} (ids in {}); next: gfr preprocess --nwb-dir {}",
            ids.len(),
            nwb_dir.display(),
            nwb_dir.join("cell_ids.csv").display(),
            nwb_dir.display(),
        );
        return Ok(());
    }
    let dir = DataDir::new(&a.data.data_dir);
    let ids = simulate_into(
        &dir,
        a.cells,
        a.first_id,
        a.seed.seed,
        a.truth.into(),
        a.overwrite,
        &super::flag,
        |cell| {
            say(
                &bar,
                format!(
                    "cell {}: {} — {} sweeps, max rate {:.3} ms⁻¹",
                    cell.recording.cell_id,
                    cell.description,
                    cell.recording.sweeps.len(),
                    cell.recording.max_firing_rate
                ),
            );
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
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
