//! Where fit results live: one folder per (bin size, activation bin size) pair under the save
//! path, `SAVE_PATH/bin{B}_actv{A}/{id}.pickle`, with the run's summaries beside them; the
//! flat layout of earlier versions (`SAVE_PATH/{id}.pickle`) is still read.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The folder name of a (bin size, activation bin size) pair: `bin20_actv100`.
pub fn pair_dir_name(bin_size: u32, actv_bin_size: u32) -> String {
    format!("bin{bin_size}_actv{actv_bin_size}")
}

/// The pair a folder name stands for (`bin20_actv100` → (20, 100)).
pub fn parse_pair_dir(name: &str) -> Option<(u32, u32)> {
    let (b, a) = name.strip_prefix("bin")?.split_once("_actv")?;
    Some((b.parse().ok()?, a.parse().ok()?))
}

/// `SAVE_PATH/bin{B}_actv{A}`.
pub fn pair_dir(save_path: &Path, bin_size: u32, actv_bin_size: u32) -> PathBuf {
    save_path.join(pair_dir_name(bin_size, actv_bin_size))
}

/// The summary file of a run: `fit_summary.json`, or `fit_summary.shard-K-of-N.json` for
/// shard K of N (so that shards never overwrite each other's).
pub fn summary_name(shard: Option<(usize, usize)>) -> String {
    match shard {
        Some((k, n)) => format!("fit_summary.shard-{k}-of-{n}.json"),
        None => "fit_summary.json".into(),
    }
}

/// A result file found under a params folder.
#[derive(Clone, Debug)]
pub struct FoundResult {
    /// The cell id (the file's stem).
    pub cell_id: u64,
    /// Path of the result pickle.
    pub path: PathBuf,
}

/// The result files under `dir`: `dir/binB_actvA/{id}.pickle` and `dir/{id}.pickle` (the flat
/// layout of earlier versions, or a pair folder named directly), sorted by path.
pub fn result_files(dir: &Path) -> Result<Vec<FoundResult>> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read folder {}", dir.display()))?;
    for e in entries.flatten() {
        if e.path().is_dir() && parse_pair_dir(&e.file_name().to_string_lossy()).is_some() {
            dirs.push(e.path());
        }
    }
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if let Some(cell_id) = path
                .extension()
                .filter(|x| *x == "pickle")
                .and_then(|_| path.file_stem()?.to_str()?.parse::<u64>().ok())
            {
                out.push(FoundResult { cell_id, path });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// The result of `cell_id` under `dir` (see [`result_files`]), of the pair given by `bin_size`
/// and `actv_bin_size` when set. Errors list what was found when there is none or several.
pub fn find_result(
    dir: &Path,
    cell_id: u64,
    bin_size: Option<u32>,
    actv_bin_size: Option<u32>,
) -> Result<PathBuf> {
    let mut hits = Vec::new();
    for f in result_files(dir)?
        .into_iter()
        .filter(|f| f.cell_id == cell_id)
    {
        let pair = super::FitResult::load(&f.path)?.pair();
        if bin_size.is_none_or(|b| b == pair.0) && actv_bin_size.is_none_or(|a| a == pair.1) {
            hits.push((pair, f.path));
        }
    }
    match hits.len() {
        0 => anyhow::bail!(
            "no fit result for cell {cell_id}{} in {} (looked for {cell_id}.pickle there and in \
             its bin{{B}}_actv{{A}} folders)",
            match (bin_size, actv_bin_size) {
                (None, None) => String::new(),
                (b, a) => format!(
                    " at bin size {} / activation bin size {}",
                    b.map_or("any".into(), |x| x.to_string()),
                    a.map_or("any".into(), |x| x.to_string())
                ),
            },
            dir.display()
        ),
        1 => Ok(hits.remove(0).1),
        _ => anyhow::bail!(
            "cell {cell_id} has results for several bin-size pairs in {}: {}; choose one pair \
             (bin size and activation bin size)",
            dir.display(),
            hits.iter()
                .map(|((b, a), p)| format!("({b}, {a}) {}", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `(K, N)` of a shard's summary file name (`fit_summary.shard-K-of-N.json`).
pub fn parse_shard_summary(name: &str) -> Option<(usize, usize)> {
    let rest = name
        .strip_prefix("fit_summary.shard-")?
        .strip_suffix(".json")?;
    let (k, n) = rest.split_once("-of-")?;
    Some((k.parse().ok()?, n.parse().ok()?))
}

/// The shards missing from sharded runs, one line each (`FOLDER: shard K of N`): in every
/// folder holding summaries of shards of N, each K in 0..N without its summary (the task did
/// not run, or stopped before its end, when the summary is written).
pub fn missing_shards(summaries: &[PathBuf]) -> Vec<String> {
    let mut seen: std::collections::BTreeMap<(PathBuf, usize), std::collections::BTreeSet<usize>> =
        Default::default();
    for s in summaries {
        let name = s.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some((k, n)) = name.as_deref().and_then(parse_shard_summary) {
            let dir = s.parent().unwrap_or(Path::new(".")).to_path_buf();
            seen.entry((dir, n)).or_default().insert(k);
        }
    }
    let mut out = Vec::new();
    for ((dir, n), ks) in seen {
        for k in (0..n).filter(|k| !ks.contains(k)) {
            out.push(format!("{}: shard {k} of {n}", dir.display()));
        }
    }
    out
}

/// The fit summaries (`fit_summary*.json`) in `dir` and its pair folders, sorted.
pub fn summary_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() && parse_pair_dir(&e.file_name().to_string_lossy()).is_some() {
                dirs.push(e.path());
            }
        }
    }
    for d in dirs {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("fit_summary") && name.ends_with(".json") {
                    out.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// An exclusive lock on a result folder (`DIR/.lock`, `flock`), held while a process compares
/// its result with the saved one and writes it; released on drop, and by the OS when the
/// process dies (so a killed run never leaves a stale lock).
pub struct FolderLock {
    _file: File,
}

impl FolderLock {
    /// Creates `dir` if needed and takes its lock, waiting while another process holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
        let path = dir.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

/// Checks that files can be created in `dir` (creating it), by writing and removing a probe.
pub fn check_writable(dir: &Path, flag: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{flag} {}: cannot create the folder", dir.display()))?;
    let probe = dir.join(format!(".write-probe.{}.tmp", std::process::id()));
    std::fs::write(&probe, b"gfr")
        .with_context(|| format!("{flag} {}: cannot write files there", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Checks, before any work, that `file` can be written where a flag names it (`flag`): not a
/// folder, and its folder can take files (created if missing).
pub fn check_output_file(file: &Path, flag: &str) -> Result<()> {
    if file.is_dir() {
        bail!("{flag} {}: is a folder (give a file name)", file.display());
    }
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
    check_writable(dir.unwrap_or(Path::new(".")), flag)
        .with_context(|| format!("{flag} {} cannot be written", file.display()))
}

/// A stable 64-bit FNV-1a hash, as 16 hex digits (recorded in results to recognise a config).
pub fn fnv_hex(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_folders_name_and_parse() {
        assert_eq!(pair_dir_name(20, 100), "bin20_actv100");
        assert_eq!(parse_pair_dir("bin20_actv100"), Some((20, 100)));
        assert_eq!(parse_pair_dir("bin20"), None);
        assert_eq!(parse_pair_dir("binx_actv20"), None);
        assert_eq!(summary_name(Some((1, 4))), "fit_summary.shard-1-of-4.json");
        assert_ne!(fnv_hex(b"a"), fnv_hex(b"b"));
        assert_eq!(fnv_hex(b"").len(), 16);
    }

    #[test]
    fn results_are_found_in_pair_folders_and_the_flat_layout() {
        let dir = std::env::temp_dir().join(format!("gfr-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for p in [
            "1.pickle",
            "bin20_actv20/2.pickle",
            "bin50_actv100/2.pickle",
        ] {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
        std::fs::create_dir_all(dir.join("other")).unwrap();
        std::fs::write(dir.join("other/3.pickle"), b"").unwrap();
        std::fs::write(dir.join("bin20_actv20/fit_summary.shard-0-of-2.json"), b"").unwrap();
        std::fs::write(dir.join("bin20_actv20/.2.pickle.1.tmp"), b"").unwrap();
        let found: Vec<(u64, String)> = result_files(&dir)
            .unwrap()
            .into_iter()
            .map(|f| {
                let rel = f.path.strip_prefix(&dir).unwrap().display().to_string();
                (f.cell_id, rel)
            })
            .collect();
        assert_eq!(
            found,
            vec![
                (1, "1.pickle".to_string()),
                (2, "bin20_actv20/2.pickle".to_string()),
                (2, "bin50_actv100/2.pickle".to_string()),
            ]
        );
        assert_eq!(
            summary_files(&dir),
            vec![dir.join("bin20_actv20/fit_summary.shard-0-of-2.json")]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
