//! `gfr plot`: figures of a fitted cell, the dataset's EVRs and network training curves.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use gfr::data::DataDir;

use super::{DEFAULT_DATASET, InputDataDir};

#[derive(Subcommand)]
pub(super) enum PlotCommand {
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
        #[command(flatten)]
        data: InputDataDir,
        #[command(flatten)]
        figures: Figures,
    },
    /// Histograms of validation and test EVR per (bin, activation bin) pair.
    Dataset {
        /// Dataset pickle of fitted neurons.
        #[arg(long, default_value = DEFAULT_DATASET)]
        dataset: PathBuf,
        #[command(flatten)]
        figures: Figures,
    },
    /// Train loss and test accuracy per epoch; several files overlay.
    Network {
        /// Network JSON files written by `gfr network`.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        figures: Figures,
    },
}

/// `--out` and `--format`: where and how a command writes its figures.
#[derive(Args)]
pub(super) struct Figures {
    /// Folder for the figures.
    #[arg(long, default_value = "figures")]
    out: PathBuf,
    /// Image format.
    #[arg(long, value_enum, default_value_t = super::ImageFormat::Png)]
    format: super::ImageFormat,
}

pub(super) fn run(c: PlotCommand) -> Result<()> {
    use gfr::plot::*;
    let files = match c {
        PlotCommand::Fit {
            cell_id,
            params_dir,
            bin_size,
            activation_bin_size,
            data: InputDataDir { data_dir },
            figures: Figures { out, format },
        } => {
            let file =
                gfr::fit::store::find_result(&params_dir, cell_id, bin_size, activation_bin_size)
                    .context("the fit result (--params-dir; --bin-size and --activation-bin-size choose the pair)")?;
            let dir = file.parent().unwrap_or(std::path::Path::new("."));
            plot_fit(cell_id, dir, &DataDir::new(data_dir), &out, format.into())?
        }
        PlotCommand::Dataset {
            dataset,
            figures: Figures { out, format },
        } => vec![plot_dataset(
            &gfr::dataset::Dataset::load(&dataset)?,
            &out,
            format.into(),
        )?],
        PlotCommand::Network {
            files,
            figures: Figures { out, format },
        } => vec![plot_networks(&files, &out, format.into())?],
    };
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(())
}
