//! The processed-data layout of the seed (`DATA_DIR/…`):
//!
//! * `processed_data/processed_I_and_firing_rate_{id}.pickle` — a list of sweep dicts
//!   `{stimulus_name, sampling_rate, current: {bin: [pA…]}, firing_rate: {bin: [ms⁻¹…]}}`
//! * `max_firing_rates/{id}.pickle` — one float, γ in ms⁻¹
//! * `cell_ids.csv` — cell ids separated by commas or newlines

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::binning::ProcessedSweep;
use super::pickle::{
    PyValue, PyValueExt, dict, float_list, int_dict, read_pickle, write_atomic, write_pickle,
};

/// Largest plausible firing rate (ms⁻¹, i.e. 10 kHz): binned rates and γ above it are errors
/// (usually Hz written where ms⁻¹ belongs).
pub const MAX_FIRING_RATE: f64 = 10.0;
/// Smallest usable maximum firing rate γ (ms⁻¹, i.e. 0.1 Hz); 0 means the cell never fired twice.
pub const MIN_MAX_FIRING_RATE: f64 = 1e-4;

/// Paths of the processed-data layout under one data directory.
#[derive(Clone, Debug)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    /// The layout under the data directory `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }
    /// `processed_data/processed_I_and_firing_rate_{id}.pickle`: the cell's binned sweeps.
    pub fn processed(&self, cell_id: u64) -> PathBuf {
        self.0
            .join("processed_data")
            .join(format!("processed_I_and_firing_rate_{cell_id}.pickle"))
    }
    /// `max_firing_rates/{id}.pickle`: the cell's γ (ms⁻¹).
    pub fn max_firing_rate(&self, cell_id: u64) -> PathBuf {
        self.0
            .join("max_firing_rates")
            .join(format!("{cell_id}.pickle"))
    }
    /// `cell_ids.csv`: the ids of the cells to fit.
    pub fn cell_ids(&self) -> PathBuf {
        self.0.join("cell_ids.csv")
    }
}

/// All processed data of one cell.
#[derive(Clone, Debug)]
pub struct CellRecording {
    /// The cell's id (the specimen id for Allen cells).
    pub cell_id: u64,
    /// The binned sweeps, in recording order.
    pub sweeps: Vec<ProcessedSweep>,
    /// γ (ms⁻¹).
    pub max_firing_rate: f64,
}

/// The error of [`CellRecording::load`] for a cell that never fires (maximum firing rate 0):
/// a cell that cannot give a neuron, as opposed to data that cannot be read.
#[derive(Debug)]
pub struct NeverFires(String);

impl std::fmt::Display for NeverFires {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NeverFires {}

impl CellRecording {
    /// Sweeps with a given stimulus name, in recording order.
    pub fn sweeps_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ProcessedSweep> + 'a {
        self.sweeps.iter().filter(move |s| s.stimulus_name == name)
    }

    /// Whether the cell has at least one sweep of stimulus `name`.
    pub fn has_stimulus(&self, name: &str) -> bool {
        self.sweeps_named(name).next().is_some()
    }

    /// Reads a cell's processed sweeps and maximum firing rate, rejecting NaN / infinite values.
    pub fn load(dir: &DataDir, cell_id: u64) -> Result<Self> {
        let path = dir.processed(cell_id);
        let sweeps = read_processed(&path)?;
        let rate_path = dir.max_firing_rate(cell_id);
        let max_firing_rate = read_pickle(&rate_path)?
            .floats_flat()
            .ok()
            .and_then(|v| v.first().copied())
            .with_context(|| format!("{}: expected one float (ms⁻¹)", rate_path.display()))?;
        if max_firing_rate == 0.0 {
            return Err(NeverFires(format!(
                "{}: maximum firing rate is 0 (fewer than two spikes in any sweep): a neuron that can never fire",
                rate_path.display()
            ))
            .into());
        }
        if !(MIN_MAX_FIRING_RATE..=MAX_FIRING_RATE).contains(&max_firing_rate) {
            bail!(
                "{}: maximum firing rate {max_firing_rate} ms⁻¹ is outside {MIN_MAX_FIRING_RATE}–{MAX_FIRING_RATE} ms⁻¹ (units are spikes per ms)",
                rate_path.display()
            );
        }
        Ok(Self {
            cell_id,
            sweeps,
            max_firing_rate,
        })
    }

    /// Writes both files of the cell atomically.
    pub fn save(&self, dir: &DataDir) -> Result<()> {
        write_processed(&dir.processed(self.cell_id), &self.sweeps)?;
        write_pickle(
            &dir.max_firing_rate(self.cell_id),
            &PyValue::F64(self.max_firing_rate),
        )
    }
}

fn sweep_to_py(s: &ProcessedSweep) -> PyValue {
    let traces =
        |m: &BTreeMap<u32, Vec<f64>>| int_dict(m.iter().map(|(&k, v)| (k as i64, float_list(v))));
    dict([
        ("stimulus_name", PyValue::String(s.stimulus_name.clone())),
        ("sampling_rate", PyValue::F64(s.sampling_rate)),
        ("current", traces(&s.current)),
        ("firing_rate", traces(&s.firing_rate)),
    ])
}

fn sweep_from_py(v: &PyValue) -> Result<ProcessedSweep> {
    let traces = |key: &str| -> Result<BTreeMap<u32, Vec<f64>>> {
        let mut out = BTreeMap::new();
        for (k, trace) in v
            .get(key)?
            .dict_items()
            .with_context(|| format!("field `{key}`"))?
        {
            let bin = match k {
                serde_pickle::HashableValue::I64(b) if *b > 0 => *b as u32,
                serde_pickle::HashableValue::F64(b) if *b > 0.0 && b.fract() == 0.0 => *b as u32,
                other => bail!("field `{key}`: bin-size key {other:?} is not a positive int"),
            };
            let xs = trace
                .floats_flat()
                .with_context(|| format!("field `{key}`[{bin}]"))?;
            if let Some(i) = xs.iter().position(|x| !x.is_finite()) {
                bail!(
                    "field `{key}`[{bin}] has a non-finite value ({}) at bin {i}",
                    xs[i]
                );
            }
            if key == "firing_rate"
                && let Some(i) = xs.iter().position(|x| !(0.0..=MAX_FIRING_RATE).contains(x))
            {
                bail!(
                    "field `{key}`[{bin}] has the rate {} ms⁻¹ at bin {i}, outside 0–{MAX_FIRING_RATE} ms⁻¹",
                    xs[i]
                );
            }
            out.insert(bin, xs);
        }
        Ok(out)
    };
    let s = ProcessedSweep {
        stimulus_name: v
            .get("stimulus_name")?
            .as_str()
            .context("field `stimulus_name`")?
            .to_string(),
        sampling_rate: v
            .get("sampling_rate")
            .and_then(|x| x.as_f64())
            .unwrap_or(f64::NAN),
        current: traces("current")?,
        firing_rate: traces("firing_rate")?,
    };
    for (bin, c) in &s.current {
        if s.firing_rate.get(bin).map(Vec::len) != Some(c.len()) {
            bail!("`current` and `firing_rate` differ in length at bin size {bin}");
        }
    }
    Ok(s)
}

/// Reads a processed-sweeps pickle; errors name the file and the sweep.
pub fn read_processed(path: &Path) -> Result<Vec<ProcessedSweep>> {
    let v = read_pickle(path)?;
    let list = v
        .as_list()
        .with_context(|| format!("{}: expected a list of sweeps", path.display()))?;
    list.iter()
        .enumerate()
        .map(|(i, s)| sweep_from_py(s).with_context(|| format!("{}: sweep {i}", path.display())))
        .collect()
}

/// Writes a processed-sweeps pickle atomically.
pub fn write_processed(path: &Path, sweeps: &[ProcessedSweep]) -> Result<()> {
    write_pickle(
        path,
        &PyValue::List(sweeps.iter().map(sweep_to_py).collect()),
    )
}

/// Reads cell ids separated by commas, whitespace or newlines; a header word is skipped, a
/// UTF-8 byte-order mark ignored, and an id listed twice kept once (with a warning).
pub fn read_cell_ids(path: &Path) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read cell-id file {}", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut repeated = Vec::new();
    for (i, tok) in text
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        let tok = tok.trim_matches('"');
        let id = match tok.parse::<u64>() {
            Ok(id) => Some(id),
            Err(e) if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) => {
                bail!(
                    "{}: cell id `{tok}` does not fit in 64 bits",
                    path.display()
                )
            }
            // `123.0` as pandas writes ids; exact only below 2^53
            Err(_) => tok
                .parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9_007_199_254_740_992.0)
                .map(|f| f as u64),
        };
        match id {
            Some(id) if seen.insert(id) => ids.push(id),
            Some(id) => repeated.push(id),
            None if i == 0 => {} // header such as `cell_id`
            None => bail!("{}: `{tok}` is not a cell id", path.display()),
        }
    }
    if ids.is_empty() {
        bail!("{}: no cell ids found", path.display());
    }
    if !repeated.is_empty() {
        repeated.dedup();
        eprintln!(
            "warning: {}: {} repeated cell id(s) ignored (each cell is fitted once): {}",
            path.display(),
            repeated.len(),
            repeated
                .iter()
                .take(10)
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(ids)
}

/// Writes cell ids one per line, atomically.
pub fn write_cell_ids(path: &Path, ids: &[u64]) -> Result<()> {
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processed_pickle_round_trips_and_rejects_nan() {
        let dir = std::env::temp_dir().join(format!("gfr-processed-{}", std::process::id()));
        let data = DataDir::new(&dir);
        let s = ProcessedSweep {
            stimulus_name: "Noise 1".into(),
            sampling_rate: 20_000.0,
            current: BTreeMap::from([(20, vec![1.0, 2.0]), (100, vec![])]),
            firing_rate: BTreeMap::from([(20, vec![0.0, 0.05]), (100, vec![])]),
        };
        let cell = CellRecording {
            cell_id: 7,
            sweeps: vec![s.clone()],
            max_firing_rate: 0.25,
        };
        cell.save(&data).unwrap();
        let back = CellRecording::load(&data, 7).unwrap();
        assert_eq!(back.sweeps, vec![s.clone()]);
        assert_eq!(back.max_firing_rate, 0.25);

        let mut bad = s;
        bad.current.insert(20, vec![1.0, f64::NAN]);
        write_processed(&data.processed(8), &[bad]).unwrap();
        let e = format!("{:#}", read_processed(&data.processed(8)).unwrap_err());
        assert!(
            e.contains("processed_I_and_firing_rate_8.pickle") && e.contains("non-finite"),
            "{e}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn cell_ids_accept_commas_newlines_and_a_header() {
        let p = std::env::temp_dir().join(format!("gfr-ids-{}.csv", std::process::id()));
        std::fs::write(&p, "cell_id\n123,456\n789\n").unwrap();
        assert_eq!(read_cell_ids(&p).unwrap(), vec![123, 456, 789]);
        std::fs::write(&p, "1,x2").unwrap();
        assert!(read_cell_ids(&p).unwrap_err().to_string().contains("`x2`"));
        // a byte-order mark does not hide the first id; repeats are fitted once
        std::fs::write(&p, "\u{feff}123\n456\n123\n7.0\n").unwrap();
        assert_eq!(read_cell_ids(&p).unwrap(), vec![123, 456, 7]);
        std::fs::write(&p, "\u{feff}cell_id\n5\n").unwrap();
        assert_eq!(read_cell_ids(&p).unwrap(), vec![5]);
        // an id past u64 is an error, not a wrapped number
        for big in ["18446744073709551616", "1e20"] {
            std::fs::write(&p, format!("1\n{big}\n")).unwrap();
            let e = read_cell_ids(&p).unwrap_err().to_string();
            assert!(e.contains(big), "{e}");
        }
        std::fs::remove_file(p).unwrap();
    }
}
