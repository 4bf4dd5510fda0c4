//! `gfr spikes`: the spike times of a cell's sweeps, stored in its NWB file or detected from
//! the membrane potential, written for checking, with a figure of a sweep.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use gfr::data::nwb2::Nwb2Options;
use gfr::data::spikes::{SpikeParams, cell_spikes, match_score};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct SpikesArgs {
    /// The cell whose NWB file is read.
    #[arg(long = "cell-id", visible_alias = "cell_id")]
    cell_id: u64,
    /// Folder of NWB files: `specimen_{id}/ephys.nwb` (Allen SDK cache) or `{id}.nwb`.
    #[arg(
        long = "nwb-dir",
        visible_alias = "nwb_dir",
        default_value = "cell_types"
    )]
    nwb_dir: PathBuf,
    /// CSV of every spike: cell_id, sweep_number, stimulus_name, source (stored / detected),
    /// spike_time_s.
    #[arg(long, default_value = "spikes.csv")]
    out: PathBuf,
    /// Also draw these sweeps (voltage with the spikes marked, and the stimulus) into
    /// --figures; repeat or separate with commas.
    #[arg(long = "plot-sweep", value_delimiter = ',')]
    plot_sweep: Vec<u32>,
    /// Folder for the figures.
    #[arg(long, default_value = "figures")]
    figures: PathBuf,
    /// Image format.
    #[arg(long, value_enum, default_value_t = super::ImageFormat::Png)]
    format: super::ImageFormat,
    /// dV/dt level whose upward crossing marks a putative spike (mV/ms; IPFX: 20).
    #[arg(long = "dv-cutoff", default_value_t = 20.0)]
    dv_cutoff: f64,
    /// Smallest accepted peak (mV; IPFX: −30).
    #[arg(long = "min-peak", default_value_t = -30.0)]
    min_peak: f64,
}

pub(super) fn run(a: SpikesArgs) -> Result<()> {
    // the flags first, then the file
    let params = SpikeParams {
        dv_cutoff: a.dv_cutoff,
        min_peak: a.min_peak,
        ..SpikeParams::default()
    };
    params.check(&super::flag)?;
    let path = gfr::data::nwb::nwb_path(&a.nwb_dir, a.cell_id).with_context(|| {
        format!(
            "no NWB file for cell {id} in {dir} (looked for {dir}/specimen_{id}/ephys.nwb and {dir}/{id}.nwb)",
            id = a.cell_id,
            dir = a.nwb_dir.display()
        )
    })?;
    let opts = Nwb2Options::for_nwb_dir(&a.nwb_dir)?;
    // the outputs' folders are checked before the file is read and its spikes detected
    gfr::fit::store::check_output_file(&a.out, "--out")?;
    if !a.plot_sweep.is_empty() {
        gfr::fit::store::check_writable(&a.figures, "--figures")?;
    }
    let (sweeps, notes) = cell_spikes(&path, &opts, &params)?;
    for n in &notes {
        eprintln!("{n}");
    }
    if sweeps.is_empty() {
        bail!("{}: no current-clamp sweeps", path.display());
    }
    // every argument is checked before anything is written
    let unknown: Vec<String> = a
        .plot_sweep
        .iter()
        .filter(|n| !sweeps.iter().any(|s| s.sweep_number == **n))
        .map(|n| n.to_string())
        .collect();
    if !unknown.is_empty() {
        bail!(
            "--plot-sweep {}: no such current-clamp sweep in {} (sweeps: {}); nothing was written",
            unknown.join(","),
            path.display(),
            sweeps
                .iter()
                .map(|s| s.sweep_number.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("{}", path.display());
    println!(
        "{:>6}  {:<14}  {:>7}  {:>8}  {:>6}",
        "sweep", "stimulus", "stored", "detected", "F1"
    );
    let mut csv = String::from("cell_id,sweep_number,stimulus_name,source,spike_time_s\n");
    for s in &sweeps {
        let f1 = s
            .stored
            .as_ref()
            .map(|st| match_score(&s.detected, st, 1e-3).2);
        println!(
            "{:>6}  {:<14}  {:>7}  {:>8}  {:>6}",
            s.sweep_number,
            s.stimulus_name,
            s.stored
                .as_ref()
                .map_or("-".into(), |v| v.len().to_string()),
            s.detected.len(),
            f1.map_or("-".into(), |f| format!("{f:.3}"))
        );
        let rows = s
            .stored
            .iter()
            .flat_map(|st| st.iter().map(|t| ("stored", *t)))
            .chain(s.detected.iter().map(|t| ("detected", *t)));
        for (source, t) in rows {
            csv += &format!(
                "{},{},{},{source},{t:.6}\n",
                a.cell_id,
                s.sweep_number,
                s.stimulus_name.replace(',', " ")
            );
        }
    }
    if sweeps.iter().any(|s| s.stored.is_some()) {
        println!("F1: detected against stored spike times within ±1 ms (NWB 1 files store them)");
    }
    gfr::data::pickle::write_atomic(&a.out, csv.as_bytes())?;
    println!("wrote {}", a.out.display());
    for n in &a.plot_sweep {
        let s = sweeps
            .iter()
            .find(|s| s.sweep_number == *n)
            .expect("checked above");
        let f = gfr::plot::plot_spikes(a.cell_id, s, &a.figures, a.format.into())?;
        println!("wrote {}", f.display());
    }
    Ok(())
}
