//! `gfr preprocess`: NWB recordings → the processed-data layout, one cell at a time.

use std::path::Path;

use super::binning::{PROCESSED_BIN_SIZES, bin_sweep, max_firing_rate, onset};
use super::nwb::nwb_path;
use super::nwb2::{Nwb2Options, read_recording};
use super::processed::{CellRecording, DataDir};

/// Stimuli the fit uses (training, validation, test): each of their sweeps needs an onset.
pub const FITTED_STIMULI: [&str; 4] = ["Long Square", "Ramp", "Noise 1", "Noise 2"];

/// What happened to one cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Written: number of sweeps, γ (ms⁻¹).
    Done {
        /// Number of sweeps written.
        sweeps: usize,
        /// The cell's maximum firing rate γ (ms⁻¹).
        max_firing_rate: f64,
    },
    /// Not preprocessed because its output already exists; the reason.
    Skipped(String),
    /// Could not be preprocessed; the error.
    Failed(String),
}

/// Bins every sweep of a cell's NWB file (NWB 1, or NWB 2 with spikes detected from the
/// voltage) and writes its processed pickle and maximum firing rate. Existing outputs are kept
/// (skipped); errors name the file. Notes on skipped NWB 2 sweeps go to stderr; the user's
/// stimulus name mapping is picked up as [`Nwb2Options::for_nwb_dir`] says.
pub fn preprocess_cell(nwb_dir: &Path, data: &DataDir, cell_id: u64) -> Outcome {
    let opts = match Nwb2Options::for_nwb_dir(nwb_dir) {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    let (outcome, notes) = preprocess_cell_with(nwb_dir, data, cell_id, &opts);
    for n in notes {
        eprintln!("cell {cell_id}: {n}");
    }
    outcome
}

/// [`preprocess_cell`] with explicit NWB 2 options; returns the notes instead of printing
/// them.
pub fn preprocess_cell_with(
    nwb_dir: &Path,
    data: &DataDir,
    cell_id: u64,
    opts: &Nwb2Options,
) -> (Outcome, Vec<String>) {
    let (out, rate) = (data.processed(cell_id), data.max_firing_rate(cell_id));
    if out.exists() && rate.exists() {
        return (
            Outcome::Skipped(format!("{} already exists", out.display())),
            Vec::new(),
        );
    }
    let Some(path) = nwb_path(nwb_dir, cell_id) else {
        return (
            Outcome::Failed(format!(
                "no recording: looked for {} and {}",
                nwb_dir
                    .join(format!("specimen_{cell_id}"))
                    .join("ephys.nwb")
                    .display(),
                nwb_dir.join(format!("{cell_id}.nwb")).display()
            )),
            Vec::new(),
        );
    };
    let rec = match read_recording(&path, opts) {
        Ok(r) => r,
        Err(e) => return (Outcome::Failed(format!("{e:#}")), Vec::new()),
    };
    let mut notes = rec.notes;
    let (outcome, more) = bin_and_save(&path, data, cell_id, rec.sweeps);
    notes.extend(more);
    (outcome, notes)
}

fn bin_and_save(
    path: &Path,
    data: &DataDir,
    cell_id: u64,
    raw: Vec<(u32, super::binning::RawSweep)>,
) -> (Outcome, Vec<String>) {
    // a sweep the fit uses whose current never changes has no onset to align its bins to:
    // skipped with a note saying why; the cell fails only when nothing usable remains
    let mut notes = Vec::new();
    let raw: Vec<_> = raw
        .into_iter()
        .filter(|(n, s)| {
            let fitted = FITTED_STIMULI.contains(&s.stimulus_name.as_str());
            if fitted && onset(s).is_none() {
                notes.push(format!(
                    "Sweep_{n} ({}): skipped, {}",
                    s.stimulus_name,
                    no_onset_reason(s)
                ));
                return false;
            }
            true
        })
        .collect();
    if !raw
        .iter()
        .any(|(_, s)| FITTED_STIMULI.contains(&s.stimulus_name.as_str()))
    {
        return (
            Outcome::Failed(format!(
                "{}: no usable sweep of {} remains{}",
                path.display(),
                FITTED_STIMULI.join(", "),
                if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                }
            )),
            notes,
        );
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
    let outcome = match cell.save(data) {
        Ok(()) => Outcome::Done {
            sweeps: cell.sweeps.len(),
            max_firing_rate: cell.max_firing_rate,
        },
        Err(e) => Outcome::Failed(format!("{e:#}")),
    };
    (outcome, notes)
}

/// Why a sweep has no stimulus onset: its current never changes, or (IPFX's test-pulse rule)
/// its first change was taken for the test pulse and nothing changes after it.
fn no_onset_reason(s: &super::binning::RawSweep) -> String {
    let rate = s.sampling_rate;
    let first =
        (0..s.stimulus.len().saturating_sub(1)).find(|&k| s.stimulus[k + 1] != s.stimulus[k]);
    match (first, s.experiment_range) {
        (None, _) => "no stimulus onset found (the current never changes)".to_string(),
        (Some(k), Some((start, _))) if start > 0 => format!(
            "no stimulus onset found after the test pulse: the first current change, at {:.3} s, \
             was taken for the test pulse (IPFX's rule: a change within the first 0.4 s is the \
             test pulse, and the experiment starts after it, at {:.3} s), and the current does \
             not change after that. A protocol without a test pulse whose stimulus starts \
             within 0.4 s cannot be aligned this way: give its sweeps a test pulse, or start \
             the stimulus after 0.4 s",
            (k + 1) as f64 / rate,
            start as f64 / rate
        ),
        (Some(_), _) => "no stimulus onset found in the experiment epoch".to_string(),
    }
}

/// Callbacks of a preprocessing run over many cells (no-ops by default); the command line
/// draws its progress bar through them.
pub trait PreprocessProgress {
    /// Cell `cell_id` (the `index`-th of `total`) starts.
    fn cell_started(&self, _index: usize, _total: usize, _cell_id: u64) {}
    /// A remark about one cell (e.g. an NWB 2 sweep skipped).
    fn note(&self, _cell_id: u64, _msg: &str) {}
    /// Cell `cell_id` ended as `outcome`.
    fn cell_done(&self, _cell_id: u64, _outcome: &Outcome) {}
    /// Whether the caller wants the run to stop (asked before each cell); cells done are
    /// kept, and [`preprocess_cells`] returns [`crate::error::Interrupted`]. Never, by default.
    fn cancelled(&self) -> bool {
        false
    }
}

impl PreprocessProgress for () {}

/// What a preprocessing run did, cell by cell.
#[derive(Clone, Debug, Default)]
pub struct PreprocessSummary {
    /// Cells written: (id, sweeps, γ in ms⁻¹).
    pub done: Vec<(u64, usize, f64)>,
    /// Cells whose outputs already existed: (id, why).
    pub skipped: Vec<(u64, String)>,
    /// Cells that could not be preprocessed: (id, why). One failed cell never stops the run.
    pub failed: Vec<(u64, String)>,
}

impl PreprocessSummary {
    /// Number of cells in the run (done, skipped and failed).
    pub fn total(&self) -> usize {
        self.done.len() + self.skipped.len() + self.failed.len()
    }

    /// `Ok` when every cell was done or skipped for a stated reason; a
    /// [`crate::error::SomeFailed`] error when some failed.
    pub fn outcome(&self) -> anyhow::Result<()> {
        if self.failed.is_empty() {
            return Ok(());
        }
        Err(anyhow::Error::new(crate::error::SomeFailed {
            failed: self.failed.len(),
            total: self.total(),
        }))
    }
}

/// The cells to preprocess when no list is given: `NWB_DIR/cell_ids.csv` when there (as
/// `gfr simulate --nwb-dir` writes it), else every cell of the metadata table at `metadata`
/// (without one, as [`crate::dataset::cre_lines`] says), sorted; and where they came from.
pub fn default_cells(
    nwb_dir: &Path,
    metadata: Option<&Path>,
) -> anyhow::Result<(Vec<u64>, String)> {
    let listed = nwb_dir.join("cell_ids.csv");
    if listed.is_file() {
        let ids = super::read_cell_ids(&listed)?;
        return Ok((ids, listed.display().to_string()));
    }
    let (cre, source) = crate::dataset::cre_lines(metadata)?;
    let mut ids: Vec<u64> = cre.into_keys().collect();
    ids.sort_unstable();
    Ok((ids, source))
}

/// Records the cells being preprocessed as `DATA_DIR/cell_ids.csv` (the list `gfr fit` reads by
/// default) when there is none. A list there of other cells is kept: the returned note says so.
pub fn record_cell_list(data: &DataDir, ids: &[u64]) -> anyhow::Result<Option<String>> {
    let path = data.cell_ids();
    if !path.exists() {
        super::write_cell_ids(&path, ids)?;
        return Ok(None);
    }
    let old = super::read_cell_ids(&path).unwrap_or_default();
    Ok((old != ids).then(|| {
        format!(
            "{} lists other cells ({}): kept; give gfr fit the list of these cells",
            path.display(),
            old.len()
        )
    }))
}

/// Preprocesses every cell of `cell_ids` (see [`preprocess_cell_with`]), reporting through
/// `progress`. The NWB 2 stimulus-name mapping is read once, as [`Nwb2Options::for_nwb_dir`]
/// says; an unreadable mapping file is an error before any cell.
pub fn preprocess_cells(
    nwb_dir: &Path,
    data: &DataDir,
    cell_ids: &[u64],
    progress: &dyn PreprocessProgress,
) -> anyhow::Result<PreprocessSummary> {
    let opts = Nwb2Options::for_nwb_dir(nwb_dir)?;
    let mut summary = PreprocessSummary::default();
    for (k, &id) in cell_ids.iter().enumerate() {
        if progress.cancelled() {
            return Err(
                anyhow::Error::new(crate::error::Interrupted).context(format!(
                    "preprocessing stopped after {k} of {} cells",
                    cell_ids.len()
                )),
            );
        }
        progress.cell_started(k, cell_ids.len(), id);
        let (outcome, notes) = preprocess_cell_with(nwb_dir, data, id, &opts);
        for n in &notes {
            progress.note(id, n);
        }
        progress.cell_done(id, &outcome);
        match outcome {
            Outcome::Done {
                sweeps,
                max_firing_rate,
            } => summary.done.push((id, sweeps, max_firing_rate)),
            Outcome::Skipped(why) => summary.skipped.push((id, why)),
            Outcome::Failed(why) => summary.failed.push((id, why)),
        }
    }
    Ok(summary)
}
