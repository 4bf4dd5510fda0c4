//! Fetching recordings from the Allen Brain Atlas API (`gfr preprocess --download`): the cell
//! list, and each cell's NWB file (the well-known file of type `NWBDownload`), resumable and
//! written atomically into the Allen SDK cache layout `NWB_DIR/specimen_{id}/ephys.nwb`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The Allen Brain Atlas API.
pub const API: &str = "https://api.brain-map.org";

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(Duration::from_secs(10)))
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn query(agent: &ureq::Agent, criteria: &str) -> Result<Vec<serde_json::Value>> {
    let url = format!("{API}/api/v2/data/query.json?criteria={criteria}");
    let text = agent
        .get(&url)
        .call()
        .with_context(|| format!("cannot reach the Allen Brain Atlas API ({API})"))?
        .body_mut()
        .read_to_string()
        .context("reading the API's answer")?;
    let v: serde_json::Value =
        serde_json::from_str(&text).context("the API's answer is not JSON")?;
    if v["success"] != serde_json::Value::Bool(true) {
        bail!("the API refused the query: {}", v["msg"]);
    }
    Ok(v["msg"].as_array().cloned().unwrap_or_default())
}

/// Every cell id of the Allen Cell Types database, from the API.
pub fn list_cells() -> Result<Vec<u64>> {
    let rows = query(
        &agent(),
        "model::ApiCellTypesSpecimenDetail,rma::options[num_rows$eq'all']",
    )?;
    let mut ids: Vec<u64> = rows
        .iter()
        .filter_map(|r| r["specimen__id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        bail!("the API listed no cells");
    }
    Ok(ids)
}

/// Callbacks of a download (no-ops by default); the command line draws its progress bars
/// through them.
pub trait DownloadProgress {
    /// A file `label` starts (or resumes at `done` bytes); `total` bytes when the server says.
    fn download_started(&self, _label: &str, _done: u64, _total: Option<u64>) {}
    /// `bytes` more arrived.
    fn download_advanced(&self, _bytes: u64) {}
    /// The file is complete (or the download stopped).
    fn download_finished(&self) {}
    /// A line for the user.
    fn download_note(&self, _line: &str) {}
}

impl DownloadProgress for () {}

/// Downloads a cell's NWB file to `NWB_DIR/specimen_{id}/ephys.nwb` (resuming a partial
/// `.part` file), unless it is already there. Returns the path.
pub fn download_nwb(
    nwb_dir: &Path,
    cell_id: u64,
    progress: &dyn DownloadProgress,
) -> Result<PathBuf> {
    let path = nwb_dir
        .join(format!("specimen_{cell_id}"))
        .join("ephys.nwb");
    if path.is_file() {
        return Ok(path);
    }
    let agent = agent();
    let files = query(
        &agent,
        &format!(
            "model::WellKnownFile,rma::criteria,[attachable_id$eq{cell_id}],well_known_file_type[name$eq'NWBDownload'],rma::options[num_rows$eq'all']"
        ),
    )?;
    let link = files
        .iter()
        .find_map(|f| f["download_link"].as_str())
        .with_context(|| format!("the API has no NWB file for cell {cell_id}"))?;
    fetch(
        &agent,
        &format!("{API}{link}"),
        &path,
        &cell_id.to_string(),
        progress,
    )
    .with_context(|| format!("downloading cell {cell_id}"))?;
    Ok(path)
}

/// Downloads `url` to `path` through `path.part` (resumed when a partial file is there) and
/// renames it into place, reporting progress on `label` through `progress`.
pub fn fetch(
    agent: &ureq::Agent,
    url: &str,
    path: &Path,
    label: &str,
    progress: &dyn DownloadProgress,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let part = PathBuf::from(format!("{}.part", path.display()));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let mut resp = match req.call() {
        // the partial file is already whole (or not this file): start over
        Err(ureq::Error::StatusCode(416)) if have > 0 => {
            std::fs::remove_file(&part)
                .with_context(|| format!("cannot remove {}", part.display()))?;
            return fetch(agent, url, path, label, progress);
        }
        r => r.with_context(|| format!("cannot fetch {url}"))?,
    };
    let resumed = resp.status() == 206;
    let remaining: Option<u64> = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let start = if resumed { have } else { 0 };
    progress.download_started(label, start, remaining.map(|r| start + r));
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .with_context(|| format!("cannot write {}", part.display()))?;
    let mut reader = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("download of {label} interrupted (run again to resume)"))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", part.display()))?;
        progress.download_advanced(n as u64);
    }
    progress.download_finished();
    out.sync_all().ok();
    drop(out);
    std::fs::rename(&part, path)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}
