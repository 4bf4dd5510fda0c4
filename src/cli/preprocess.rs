//! `gfr preprocess`: Allen Cell Types recordings (NWB) to binned traces.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use gfr::data::{DataDir, read_cell_ids};

use super::{OutputDataDir, ProgressBars, say};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct PreprocessArgs {
    /// CSV of cell ids; without it, NWB_DIR/cell_ids.csv when there (as `gfr simulate
    /// --nwb-dir` writes it), else every cell of the metadata table. The list is written to
    /// DATA_DIR/cell_ids.csv, which `gfr fit` reads, unless one of other cells is there.
    #[arg(long = "cell-ids", visible_alias = "cell_ids")]
    cell_ids: Option<PathBuf>,
    /// Folder of NWB files: `specimen_{id}/ephys.nwb` (Allen SDK cache) or `{id}.nwb`.
    #[arg(
        long = "nwb-dir",
        visible_alias = "nwb_dir",
        default_value = "cell_types"
    )]
    nwb_dir: PathBuf,
    #[command(flatten)]
    data: OutputDataDir,
    /// Allen cell metadata table (column `specimen__id`) [default: data/metadata.csv when in
    /// the working folder, else the copy built into gfr].
    #[arg(long)]
    metadata: Option<PathBuf>,
    /// Fetch missing NWB files from the Allen Brain Atlas API (resumable), and without
    /// --cell-ids list the cells from the API.
    #[arg(long)]
    download: bool,
    #[command(flatten)]
    bars: ProgressBars,
}

pub(super) fn run(a: PreprocessArgs) -> Result<()> {
    use gfr::data::preprocess::preprocess_cells;
    let data = DataDir::new(&a.data.data_dir);
    let where_to_put = || {
        format!(
            "put the NWB files in {dir}/specimen_{{id}}/ephys.nwb (the Allen SDK's CellTypesCache layout) or {dir}/{{id}}.nwb",
            dir = a.nwb_dir.display()
        )
    };
    // what the flags name is checked before any download or cell list: a mistyped NWB
    // folder would otherwise list every cell of the metadata table and fail each
    if !a.download && !a.nwb_dir.is_dir() {
        return Err(anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "--nwb-dir {}: no such folder ({}; or --download fetches them)",
                a.nwb_dir.display(),
                where_to_put()
            ),
        )));
    }
    // (the stimulus-name mapping, read again per cell: a bad one is said now)
    gfr::data::nwb2::Nwb2Options::for_nwb_dir(&a.nwb_dir)?;
    if a.download {
        gfr::fit::store::check_writable(&data.0, "--data-dir")?;
    }
    let ids = match &a.cell_ids {
        Some(p) => read_cell_ids(p)?,
        None => {
            let online = match a.download.then(gfr::data::download::list_cells) {
                Some(Ok(mut ids)) => {
                    ids.sort_unstable();
                    Some((ids, "the Allen Brain Atlas API".to_string()))
                }
                Some(Err(e)) => {
                    eprintln!("cannot list cells online ({e:#}); using the metadata table");
                    None
                }
                None => None,
            };
            let (ids, source) = match online {
                Some(listed) => listed,
                None => {
                    let (ids, source) =
                        gfr::data::preprocess::default_cells(&a.nwb_dir, a.metadata.as_deref())
                    .context(
                        "without --cell-ids the cell list comes from NWB_DIR/cell_ids.csv or --metadata",
                    )?;
                    super::note_builtin_metadata(&source);
                    (ids, source)
                }
            };
            eprintln!("{} cells from {source}", ids.len());
            ids
        }
    };
    if a.download {
        let missing: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|&id| gfr::data::nwb::nwb_path(&a.nwb_dir, id).is_none())
            .collect();
        eprintln!(
            "downloading {} missing NWB files into {}",
            missing.len(),
            a.nwb_dir.display()
        );
        let bar = ProgressBar::new(0);
        if a.bars.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        for (k, &id) in missing.iter().enumerate() {
            if let Err(e) = gfr::data::download::download_nwb(&a.nwb_dir, id, &Bytes(&bar)) {
                if k == 0 {
                    bar.finish_and_clear();
                    // nothing came through: most likely offline
                    bail!("--download: {e:#}\n{}", where_to_put());
                }
                say(&bar, format!("cell {id}: download failed: {e:#}"));
            }
        }
        bar.finish_and_clear();
    }
    // (after the downloads: a download that fails at once leaves nothing behind)
    match gfr::data::preprocess::record_cell_list(&data, &ids)? {
        Some(note) => eprintln!("{note}"),
        None => eprintln!("cell ids in {}", data.cell_ids().display()),
    }
    let bar = super::progress_bar(
        ids.len() as u64,
        "preprocessing {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        a.bars.quiet,
    );
    let summary = preprocess_cells(&a.nwb_dir, &data, &ids, &Bar(&bar))?;
    bar.finish_and_clear();
    println!(
        "preprocessed {} cells: {} done, {} skipped (outputs exist), {} failed",
        summary.total(),
        summary.done.len(),
        summary.skipped.len(),
        summary.failed.len()
    );
    for (id, why) in &summary.failed {
        println!("  failed {id}: {why}");
    }
    summary.outcome()
}

/// A download's bytes on a progress bar.
pub(super) struct Bytes<'a>(pub(super) &'a ProgressBar);

impl gfr::data::download::DownloadProgress for Bytes<'_> {
    fn download_started(&self, label: &str, done: u64, total: Option<u64>) {
        self.0.set_style(
            ProgressStyle::with_template("  {msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap(),
        );
        self.0.set_message(label.to_string());
        self.0.set_length(total.unwrap_or(done));
        self.0.set_position(done);
    }
    fn download_advanced(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn download_note(&self, line: &str) {
        say(self.0, line.to_string());
    }
}

/// The progress bar and the per-cell lines of `gfr preprocess`.
struct Bar<'a>(&'a ProgressBar);

impl gfr::data::preprocess::PreprocessProgress for Bar<'_> {
    fn cell_started(&self, _index: usize, _total: usize, cell_id: u64) {
        self.0.set_message(format!("cell {cell_id}"));
    }
    fn note(&self, cell_id: u64, msg: &str) {
        say(self.0, format!("cell {cell_id}: {msg}"));
    }
    fn cell_done(&self, cell_id: u64, outcome: &gfr::data::preprocess::Outcome) {
        use gfr::data::preprocess::Outcome;
        let line = match outcome {
            Outcome::Done {
                sweeps,
                max_firing_rate,
            } => format!(
                "cell {cell_id}: {sweeps} sweeps, max firing rate {max_firing_rate:.3} ms⁻¹"
            ),
            Outcome::Skipped(why) => format!("cell {cell_id}: skipped, {why}"),
            Outcome::Failed(why) => format!("cell {cell_id}: FAILED, {why}"),
        };
        say(self.0, line);
        self.0.inc(1);
    }
}
