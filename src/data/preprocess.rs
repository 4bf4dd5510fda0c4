//! `gfr preprocess`: NWB recordings → the processed-data layout, one cell at a time.

use std::path::Path;

use super::binning::{PROCESSED_BIN_SIZES, bin_sweep, max_firing_rate, onset};
use super::nwb::{nwb_path, read_nwb_numbered};
use super::processed::{CellRecording, DataDir};

/// Stimuli the fit uses (training, validation, test): each of their sweeps needs an onset.
pub const FITTED_STIMULI: [&str; 4] = ["Long Square", "Ramp", "Noise 1", "Noise 2"];

/// What happened to one cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Written: number of sweeps, γ (ms⁻¹).
    Done {
        sweeps: usize,
        max_firing_rate: f64,
    },
    Skipped(String),
    Failed(String),
}

/// Bins every sweep of a cell's NWB file and writes its processed pickle and maximum firing
/// rate. Existing outputs are kept (skipped); errors name the file.
pub fn preprocess_cell(nwb_dir: &Path, data: &DataDir, cell_id: u64) -> Outcome {
    let (out, rate) = (data.processed(cell_id), data.max_firing_rate(cell_id));
    if out.exists() && rate.exists() {
        return Outcome::Skipped(format!("{} already exists", out.display()));
    }
    let Some(path) = nwb_path(nwb_dir, cell_id) else {
        return Outcome::Failed(format!(
            "no recording: looked for {} and {}",
            nwb_dir
                .join(format!("specimen_{cell_id}"))
                .join("ephys.nwb")
                .display(),
            nwb_dir.join(format!("{cell_id}.nwb")).display()
        ));
    };
    let raw = match read_nwb_numbered(&path) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    // a sweep the fit uses whose current never changes has no onset to align its bins to
    if let Some((n, s)) = raw
        .iter()
        .find(|(_, s)| FITTED_STIMULI.contains(&s.stimulus_name.as_str()) && onset(s).is_none())
    {
        return Outcome::Failed(format!(
            "{}: Sweep_{n} ({}): no stimulus onset found (the current never changes)",
            path.display(),
            s.stimulus_name
        ));
    }
    let raw: Vec<_> = raw.into_iter().map(|(_, s)| s).collect();
    let cell = CellRecording {
        cell_id,
        sweeps: raw
            .iter()
            .map(|s| bin_sweep(s, &PROCESSED_BIN_SIZES))
            .collect(),
        max_firing_rate: max_firing_rate(&raw),
    };
    match cell.save(data) {
        Ok(()) => Outcome::Done {
            sweeps: cell.sweeps.len(),
            max_firing_rate: cell.max_firing_rate,
        },
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}
