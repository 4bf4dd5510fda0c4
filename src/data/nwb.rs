//! Reading Allen Cell Types ephys recordings: NWB 1.x files (HDF5), as the Allen SDK reads them.
//!
//! Per sweep N: `epochs/Sweep_N/stimulus/timeseries` (a link to `stimulus/presentation/Sweep_N`
//! with `data` in A, `starting_time` with attribute `rate` in Hz, and `aibs_stimulus_name`),
//! `epochs/Sweep_N/response/timeseries` (to `acquisition/timeseries/Sweep_N`, `data` in V),
//! `epochs/Experiment_N/stimulus/{idx_start, count}` (the index range without the test pulse;
//! absent: the whole sweep) and spike times (s) in `analysis/spike_times/Sweep_N` (older
//! files: `analysis/aibs_spike_times/Sweep_N`).
//!
//! Units follow the Allen SDK's `NwbDataSet.get_sweep`: `data` is multiplied by its
//! `conversion` attribute only in files of pipeline version 1.1 or later (the `version` entry
//! of the key/value list `general/generated_by`); older files, and files without a readable
//! version (taken as 0.0), store A directly and carry conversion values that are wrong.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rust_hdf5::{H5Dataset, H5File};

use super::binning::RawSweep;

/// The recording of a cell: the Allen SDK cache layout `NWB_DIR/specimen_{id}/ephys.nwb`,
/// or `NWB_DIR/{id}.nwb`.
pub fn nwb_path(nwb_dir: &Path, cell_id: u64) -> Option<PathBuf> {
    [
        nwb_dir
            .join(format!("specimen_{cell_id}"))
            .join("ephys.nwb"),
        nwb_dir.join(format!("{cell_id}.nwb")),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

pub(crate) fn h5<T>(r: rust_hdf5::Result<T>, what: &str) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// A numeric dataset as f64, whatever its stored type.
pub(crate) fn read_f64(ds: &H5Dataset, what: &str) -> Result<Vec<f64>> {
    match ds.read_numeric_as::<f64>() {
        Ok(v) => Ok(v),
        Err(_) => Ok(h5(ds.read_numeric_as::<i64>(), what)?
            .into_iter()
            .map(|x| x as f64)
            .collect()),
    }
}

fn read_int(f: &H5File, path: &str) -> Result<Option<i64>> {
    let Ok(ds) = f.dataset(path) else {
        return Ok(None);
    };
    let v = match ds.read_numeric_as::<i64>() {
        Ok(v) => v,
        Err(_) => read_f64(&ds, path)?.into_iter().map(|x| x as i64).collect(),
    };
    Ok(v.first().copied())
}

/// The Allen pipeline version (major, minor) of a file, as the Allen SDK's
/// `get_pipeline_version` reads it: `general/generated_by` lists keys and values in turn; the
/// value after `version` is split at dots into at least two integers. Anything else is (0, 0).
pub fn pipeline_version(f: &H5File) -> (u32, u32) {
    let Some(info) = f
        .dataset("general/generated_by")
        .ok()
        .and_then(|d| d.read_strings_lossy().ok())
    else {
        return (0, 0);
    };
    let info: Vec<String> = info
        .iter()
        .map(|s| s.trim_end_matches('\0').to_string())
        .collect();
    let Some(version) = info
        .iter()
        .position(|k| k == "version")
        .and_then(|i| info.get(i + 1))
    else {
        return (0, 0);
    };
    let toks: Vec<&str> = version.split('.').collect();
    match (
        toks.first().and_then(|t| t.trim().parse().ok()),
        toks.get(1).and_then(|t| t.trim().parse().ok()),
    ) {
        (Some(major), Some(minor)) => (major, minor),
        _ => (0, 0),
    }
}

/// Whether the Allen SDK applies `conversion` to a file of this pipeline version (1.1 and
/// later).
pub fn applies_conversion((major, minor): (u32, u32)) -> bool {
    (major == 1 && minor > 0) || major > 1
}

/// `data` of a time series, multiplied by its `conversion` attribute (when it has one) if
/// `convert`.
fn series_data(f: &H5File, series: &str, convert: bool) -> Result<Vec<f64>> {
    let path = format!("{series}/data");
    let ds = h5(f.dataset(&path), &path)?;
    let mut v = read_f64(&ds, &path)?;
    if convert
        && let Ok(a) = ds.attr("conversion")
        && let Ok(c) = a.read_numeric_as::<f64>()
        && let Some(&c) = c.first()
        && c != 1.0
    {
        v.iter_mut().for_each(|x| *x *= c);
    }
    Ok(v)
}

fn read_string(f: &H5File, path: &str) -> Option<String> {
    let ds = f.dataset(path).ok()?;
    ds.read_strings_lossy()
        .ok()?
        .into_iter()
        .next()
        .map(|s| s.trim_end_matches('\0').trim().to_string())
}

/// Sweep numbers N of the `epochs/Sweep_N` groups, ascending.
fn sweep_numbers(f: &H5File) -> Result<Vec<u32>> {
    let epochs = h5(f.root_group().group("epochs"), "group `epochs`")?;
    let mut nums: Vec<u32> = h5(epochs.group_names(), "group `epochs`")?
        .iter()
        .filter_map(|n| n.strip_prefix("Sweep_")?.parse().ok())
        .collect();
    nums.sort_unstable();
    Ok(nums)
}

fn read_sweep(f: &H5File, n: u32, convert: bool) -> Result<RawSweep> {
    let stim = format!("epochs/Sweep_{n}/stimulus/timeseries");
    let mut stimulus = series_data(f, &stim, convert)?;
    let rate_path = format!("{stim}/starting_time");
    let st = h5(f.dataset(&rate_path), &rate_path)?;
    let rate = h5(
        h5(st.attr("rate"), &format!("{rate_path} attribute `rate`"))?.read_numeric_as::<f64>(),
        "attribute `rate`",
    )?
    .first()
    .copied()
    .with_context(|| format!("{rate_path}: attribute `rate` is empty"))?;
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("{rate_path}: sampling rate {rate} is not a positive number");
    }
    let stimulus_name = read_string(
        f,
        &format!("stimulus/presentation/Sweep_{n}/aibs_stimulus_name"),
    )
    .or_else(|| read_string(f, &format!("{stim}/aibs_stimulus_name")))
    .with_context(|| format!("sweep {n}: no aibs_stimulus_name"))?;
    // the sweep's own range within its series (the Allen SDK expects it to start at 0)
    let start = read_int(f, &format!("epochs/Sweep_{n}/stimulus/idx_start"))?
        .unwrap_or(0)
        .max(0) as usize;
    let count =
        read_int(f, &format!("epochs/Sweep_{n}/stimulus/count"))?.map(|c| c.max(0) as usize);
    if let Some(c) = count
        && start
            .checked_add(c)
            .is_some_and(|end| end <= stimulus.len())
    {
        stimulus = stimulus[start..start + c].to_vec();
    }
    let response = series_data(f, &format!("epochs/Sweep_{n}/response/timeseries"), convert)
        .or_else(|_| series_data(f, &format!("acquisition/timeseries/Sweep_{n}"), convert))
        .unwrap_or_default();
    let exp = format!("epochs/Experiment_{n}/stimulus");
    let experiment_range = match (
        read_int(f, &format!("{exp}/idx_start"))?,
        read_int(f, &format!("{exp}/count"))?,
    ) {
        (Some(s), Some(c)) if s >= 0 && c > 0 && s.checked_add(c).is_some() => {
            Some((s as usize, (s + c - 1) as usize))
        }
        _ => Some((0, stimulus.len().saturating_sub(1))),
    };
    let spike_times = ["spike_times", "aibs_spike_times"]
        .iter()
        .find_map(|g| f.dataset(&format!("analysis/{g}/Sweep_{n}")).ok())
        .map(|ds| read_f64(&ds, &format!("analysis/spike_times/Sweep_{n}")))
        .transpose()?
        .unwrap_or_default();
    if let Some(i) = stimulus.iter().position(|x| !x.is_finite()) {
        bail!("sweep {n}: stimulus sample {i} is {}", stimulus[i]);
    }
    Ok(RawSweep {
        stimulus_name,
        sampling_rate: rate,
        stimulus,
        response,
        spike_times,
        experiment_range,
    })
}

/// Every sweep of an NWB file. A sweep that cannot be read makes the file fail (a partial cell
/// would silently change its maximum firing rate); errors name the file and the sweep.
pub fn read_nwb(path: &Path) -> Result<Vec<RawSweep>> {
    Ok(read_nwb_numbered(path)?
        .into_iter()
        .map(|(_, s)| s)
        .collect())
}

/// [`read_nwb`] with each sweep's number N (`Sweep_N`).
pub fn read_nwb_numbered(path: &Path) -> Result<Vec<(u32, RawSweep)>> {
    // a corrupt file must not take the run down, even if the HDF5 reader panics on it
    std::panic::catch_unwind(|| read_numbered(path)).unwrap_or_else(|_| {
        bail!(
            "{}: the HDF5 reader failed on this file (corrupt or truncated?)",
            path.display()
        )
    })
}

fn read_numbered(path: &Path) -> Result<Vec<(u32, RawSweep)>> {
    let f = H5File::open(path)
        .map_err(|e| anyhow::anyhow!("{} is not a readable NWB/HDF5 file: {e}", path.display()))?;
    read_numbered_from(&f, path)
}

/// [`read_nwb_numbered`] on a file already open (`path` names it in errors).
pub(crate) fn read_numbered_from(f: &H5File, path: &Path) -> Result<Vec<(u32, RawSweep)>> {
    let nums = sweep_numbers(f).with_context(|| path.display().to_string())?;
    if nums.is_empty() {
        bail!("{}: no epochs/Sweep_N groups", path.display());
    }
    let convert = applies_conversion(pipeline_version(f));
    nums.iter()
        .map(|&n| {
            read_sweep(f, n, convert)
                .map(|s| (n, s))
                .with_context(|| format!("{}: Sweep_{n}", path.display()))
        })
        .collect()
}
