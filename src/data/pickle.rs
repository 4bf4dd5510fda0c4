//! Python pickle I/O: building and reading plain dicts / lists / floats, and atomic writes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
pub use serde_pickle::Value as PyValue;
use serde_pickle::{HashableValue, SerOptions};

/// A Python dict with string keys.
pub fn dict<'a>(items: impl IntoIterator<Item = (&'a str, PyValue)>) -> PyValue {
    PyValue::Dict(
        items
            .into_iter()
            .map(|(k, v)| (HashableValue::String(k.to_string()), v))
            .collect(),
    )
}

/// A Python dict with int keys.
pub fn int_dict(items: impl IntoIterator<Item = (i64, PyValue)>) -> PyValue {
    PyValue::Dict(
        items
            .into_iter()
            .map(|(k, v)| (HashableValue::I64(k), v))
            .collect(),
    )
}

/// A Python list of floats.
pub fn float_list(xs: &[f64]) -> PyValue {
    PyValue::List(xs.iter().map(|&x| PyValue::F64(x)).collect())
}

/// A Python int.
pub fn int(x: i64) -> PyValue {
    PyValue::I64(x)
}

/// Typed access to pickled values, with errors that name the key or the type found.
pub trait PyValueExt {
    /// The value of string key `key` of a dict; an error if it is not a dict or lacks the key.
    fn get(&self, key: &str) -> Result<&PyValue>;
    /// The value of string key `key`, or None if absent or not a dict.
    fn get_opt(&self, key: &str) -> Option<&PyValue>;
    /// The value of int key `key` of a dict (or of the same number as a string key).
    fn get_int_key(&self, key: i64) -> Result<&PyValue>;
    /// A float, int or bool as `f64`.
    fn as_f64(&self) -> Result<f64>;
    /// A non-negative int (or whole float) as `u32`.
    fn as_u32(&self) -> Result<u32>;
    /// A Python str.
    fn as_str(&self) -> Result<&str>;
    /// The items of a list or tuple.
    fn as_list(&self) -> Result<&[PyValue]>;
    /// A list (or tuple) of numbers.
    fn floats(&self) -> Result<Vec<f64>>;
    /// A number, a list of numbers, or a list of such lists, flattened.
    fn floats_flat(&self) -> Result<Vec<f64>>;
    /// The entries of a dict.
    fn dict_items(&self) -> Result<&BTreeMap<HashableValue, PyValue>>;
}

fn type_name(v: &PyValue) -> &'static str {
    match v {
        PyValue::None => "None",
        PyValue::Bool(_) => "bool",
        PyValue::I64(_) | PyValue::Int(_) => "int",
        PyValue::F64(_) => "float",
        PyValue::Bytes(_) => "bytes",
        PyValue::String(_) => "str",
        PyValue::List(_) => "list",
        PyValue::Tuple(_) => "tuple",
        PyValue::Set(_) | PyValue::FrozenSet(_) => "set",
        PyValue::Dict(_) => "dict",
    }
}

impl PyValueExt for PyValue {
    fn get(&self, key: &str) -> Result<&PyValue> {
        match self
            .dict_items()?
            .get(&HashableValue::String(key.to_string()))
        {
            Some(v) => Ok(v),
            None => bail!("missing key `{key}`"),
        }
    }

    fn get_opt(&self, key: &str) -> Option<&PyValue> {
        self.dict_items()
            .ok()?
            .get(&HashableValue::String(key.to_string()))
    }

    fn get_int_key(&self, key: i64) -> Result<&PyValue> {
        let d = self.dict_items()?;
        d.get(&HashableValue::I64(key))
            .or_else(|| d.get(&HashableValue::String(key.to_string())))
            .with_context(|| format!("missing key {key}"))
    }

    fn as_f64(&self) -> Result<f64> {
        match self {
            PyValue::F64(x) => Ok(*x),
            PyValue::I64(x) => Ok(*x as f64),
            PyValue::Bool(b) => Ok(*b as u8 as f64),
            other => bail!("expected a number, found {}", type_name(other)),
        }
    }

    fn as_u32(&self) -> Result<u32> {
        match self {
            PyValue::I64(x) if *x >= 0 && *x <= u32::MAX as i64 => Ok(*x as u32),
            PyValue::F64(x) if x.fract() == 0.0 && *x >= 0.0 => Ok(*x as u32),
            other => bail!("expected a non-negative int, found {}", type_name(other)),
        }
    }

    fn as_str(&self) -> Result<&str> {
        match self {
            PyValue::String(s) => Ok(s),
            other => bail!("expected a str, found {}", type_name(other)),
        }
    }

    fn as_list(&self) -> Result<&[PyValue]> {
        match self {
            PyValue::List(v) | PyValue::Tuple(v) => Ok(v),
            other => bail!("expected a list, found {}", type_name(other)),
        }
    }

    fn floats(&self) -> Result<Vec<f64>> {
        self.as_list()?
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_f64().with_context(|| format!("at index {i}")))
            .collect()
    }

    fn floats_flat(&self) -> Result<Vec<f64>> {
        match self {
            PyValue::List(v) | PyValue::Tuple(v) => {
                let mut out = Vec::new();
                for (i, x) in v.iter().enumerate() {
                    out.extend(x.floats_flat().with_context(|| format!("at index {i}"))?);
                }
                Ok(out)
            }
            other => Ok(vec![other.as_f64()?]),
        }
    }

    fn dict_items(&self) -> Result<&BTreeMap<HashableValue, PyValue>> {
        match self {
            PyValue::Dict(d) => Ok(d),
            other => bail!("expected a dict, found {}", type_name(other)),
        }
    }
}

/// Reads a pickle file into a value, within bounds on size, depth and expansion (see
/// [`super::unpickle`]); numpy scalars and arrays become numbers and lists. Errors name the
/// file.
pub fn read_pickle(path: &Path) -> Result<PyValue> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > super::unpickle::MAX_PICKLE_BYTES {
        bail!(
            "{} is {size} bytes, more than the {} bytes gfr reads from a pickle",
            path.display(),
            super::unpickle::MAX_PICKLE_BYTES
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    super::unpickle::unpickle(&bytes)
        .with_context(|| format!("{} is not a readable pickle file", path.display()))
}

/// A value as pickle bytes (protocol 3), as [`write_pickle`] writes them.
pub fn to_bytes(value: &PyValue) -> Result<Vec<u8>> {
    serde_pickle::value_to_vec(value, SerOptions::new()).context("cannot encode pickle")
}

/// Writes a value as a pickle (protocol 3), atomically.
pub fn write_pickle(path: &Path, value: &PyValue) -> Result<()> {
    let bytes = to_bytes(value).with_context(|| format!("for {}", path.display()))?;
    write_atomic(path, &bytes)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place, so that a
/// crash never leaves a half-written file where a good one was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let file_name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    if let Err(e) = std::fs::write(&tmp, bytes) {
        // a full disk leaves a partial temporary: remove it
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!(
            "cannot move {} into place at {}",
            tmp.display(),
            path.display()
        )
    })
}

/// Whether process `pid` is alive (Linux: `/proc/PID` exists). Where there is no `/proc`,
/// every process counts as alive, so nothing is removed.
pub fn pid_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Removes the temporaries `.NAME.PID.tmp` that [`write_atomic`] (or a checkpoint) left in
/// `dir` when process PID was killed between write and rename; returns those removed.
/// Temporaries of live processes are kept.
pub fn clean_stale_temporaries(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
            continue;
        };
        let Some(pid) = stem.rsplit('.').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !pid_alive(pid) {
            let path = e.path();
            let gone = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if gone.is_ok() {
                removed.push(path);
            }
        }
    }
    removed.sort();
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access_names_the_missing_key() {
        let v = dict([("x", float_list(&[1.0, 2.0]))]);
        assert_eq!(v.get("x").unwrap().floats().unwrap(), vec![1.0, 2.0]);
        let e = v.get("y").unwrap_err().to_string();
        assert!(e.contains("`y`"), "{e}");
        let e = v.get("x").unwrap().as_str().unwrap_err().to_string();
        assert!(e.contains("found list"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("gfr-pickle-{}", std::process::id()));
        let p = dir.join("a.pickle");
        write_pickle(&p, &int(3)).unwrap();
        write_pickle(&p, &int(4)).unwrap();
        assert!(matches!(read_pickle(&p).unwrap(), PyValue::I64(4)));
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = std::env::temp_dir().join(format!("gfr-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // a dead process: a child that has exited and been reaped
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.join(format!(".5.pickle.{dead}.tmp"));
        let live = dir.join(format!(".6.pickle.{}.tmp", std::process::id()));
        let other = dir.join("7.pickle");
        for p in [&stale, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert!(!pid_alive(dead));
        assert_eq!(clean_stale_temporaries(&dir), vec![stale.clone()]);
        assert!(!stale.exists() && live.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
