//! The dataset of fitted neurons (spec §4): `model/gfr_dataset.pickle`, a dict from
//! `(bin_size, actv_bin_size)` tuples to lists of records, and the published JSON list form.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use serde_json::{Value as Json, json};
use serde_pickle::HashableValue;

use crate::data::pickle::{
    PyValue, PyValueExt, dict, int, read_pickle, write_atomic, write_pickle,
};
use crate::fit::FitResult;
use crate::neuron::{GfrLayer, NeuronParams};

/// Inclusion criteria: validation EVR above this…
pub const MIN_VAL_EVR: f64 = 0.5;
/// …and final train loss below this, the loss averaged over the padded length as the
/// published code computed it (`train_loss_padded`).
pub const MAX_TRAIN_LOSS: f64 = 0.45;

/// One fitted neuron in the dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetRecord {
    /// The cell's id (the Allen `specimen__id` for Allen cells).
    pub cell_id: u64,
    /// Cre line from the Allen metadata (`line_name`); empty for human cells.
    pub cre_line: String,
    /// Model bin size Δt (ms).
    pub bin_size: u32,
    /// Activation bin size Δt' (ms) the fit asked for (the pair it is filed under).
    pub actv_bin_size: u32,
    /// Validation EVR (Noise 1).
    pub val_evr: f64,
    /// Test EVR (Noise 2).
    pub test_evr: f64,
    /// Final train loss per valid bin (gfr's loss; the published JSON's `train_loss` is the
    /// padded-length average instead).
    pub train_loss: f64,
    /// Final test loss (Noise 2).
    pub test_loss: f64,
    /// Final train loss averaged over the padded length, as published (the criteria use it);
    /// `None` for fit results saved before gfr recorded it.
    pub train_loss_padded: Option<f64>,
    /// The fitted neuron.
    pub params: NeuronParams,
    /// The activation bin size used (ms), when the 100 ms fallback replaced `actv_bin_size`
    /// (key `actv_bin_size_used`, absent otherwise).
    pub actv_fallback: Option<u32>,
}

/// Which fitted neurons a dataset takes ([`Default`]: the published val EVR > 0.5 and train
/// loss < 0.45).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Criteria {
    /// Validation EVR above this.
    pub min_val_evr: f64,
    /// Final train loss (padded-length average, as published) below this.
    pub max_train_loss: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            min_val_evr: MIN_VAL_EVR,
            max_train_loss: MAX_TRAIN_LOSS,
        }
    }
}

impl Criteria {
    /// Checks the numbers (errors are [`crate::error::Invalid`], settings named by `name`).
    pub fn check(&self, name: &dyn Fn(&str) -> String) -> Result<()> {
        if !(self.min_val_evr.is_finite() && self.min_val_evr < 1.0) {
            return Err(crate::error::invalid(format!(
                "{} {}: must be a number below 1",
                name("min_val_evr"),
                self.min_val_evr
            )));
        }
        if !(self.max_train_loss > 0.0) {
            return Err(crate::error::invalid(format!(
                "{} {}: must be a positive number",
                name("max_train_loss"),
                self.max_train_loss
            )));
        }
        Ok(())
    }
}

/// `(bin size, activation bin size)` → records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// Records per (bin size, activation bin size) pair (ms).
    pub pairs: BTreeMap<(u32, u32), Vec<DatasetRecord>>,
}

impl DatasetRecord {
    /// A record from a fit result, if it meets the criteria.
    pub fn from_fit(cell_id: u64, r: &FitResult, cre_line: String) -> Self {
        Self {
            cell_id,
            cre_line,
            bin_size: r.bin_size,
            actv_bin_size: r.pair().1,
            val_evr: r.evr1,
            test_evr: r.evr2,
            train_loss: r.final_train_loss(),
            test_loss: r.test_losses.last().copied().unwrap_or(f64::NAN),
            train_loss_padded: r.train_loss_padded,
            params: r.params.clone(),
            actv_fallback: r.activation_fallback(),
        }
    }

    /// The filter: val EVR above `c.min_val_evr` and the padded-length train loss (for
    /// results without it, the per-valid-bin loss) below `c.max_train_loss`.
    pub fn meets_criteria(&self, c: &Criteria) -> bool {
        self.val_evr > c.min_val_evr
            && self.train_loss_padded.unwrap_or(self.train_loss) < c.max_train_loss
    }

    fn to_py(&self) -> PyValue {
        let mut v = dict([
            ("cell_id", int(self.cell_id as i64)),
            ("cre-line", PyValue::String(self.cre_line.clone())),
            ("bin_size", int(self.bin_size as i64)),
            ("actv_bin_size", int(self.actv_bin_size as i64)),
            ("val_evr", PyValue::F64(self.val_evr)),
            ("test_evr", PyValue::F64(self.test_evr)),
            ("train_loss", PyValue::F64(self.train_loss)),
            ("test_loss", PyValue::F64(self.test_loss)),
            (
                "train_loss_padded",
                PyValue::F64(self.train_loss_padded.unwrap_or(f64::NAN)),
            ),
            ("params", self.params.to_py()),
        ]);
        if let (PyValue::Dict(d), Some(used)) = (&mut v, self.actv_fallback) {
            d.insert(
                HashableValue::String("actv_bin_size_used".into()),
                int(used as i64),
            );
        }
        v
    }

    fn from_py(v: &PyValue) -> Result<Self> {
        let f = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_f64())
                .with_context(|| format!("field `{k}`"))
        };
        let cre = match v.get_opt("cre-line") {
            Some(PyValue::String(s)) => s.clone(),
            _ => String::new(),
        };
        Ok(Self {
            cell_id: v.get("cell_id")?.as_f64().context("field `cell_id`")? as u64,
            cre_line: cre,
            bin_size: v.get("bin_size")?.as_u32().context("field `bin_size`")?,
            actv_bin_size: v
                .get("actv_bin_size")?
                .as_u32()
                .context("field `actv_bin_size`")?,
            val_evr: f("val_evr")?,
            test_evr: f("test_evr")?,
            train_loss: f("train_loss")?,
            test_loss: f("test_loss")?,
            train_loss_padded: match v.get_opt("train_loss_padded") {
                Some(x) => {
                    Some(x.as_f64().context("field `train_loss_padded`")?).filter(|x| x.is_finite())
                }
                None => None,
            },
            params: NeuronParams::from_py(v.get("params")?).context("field `params`")?,
            actv_fallback: match v.get_opt("actv_bin_size_used") {
                Some(x) => Some(x.as_u32().context("field `actv_bin_size_used`")?),
                None => None,
            },
        })
    }

    fn to_json(&self) -> Json {
        let p = &self.params;
        let mut v = json!({
            "cell_id": self.cell_id, "cre-line": self.cre_line, "bin_size": self.bin_size,
            "actv_bin_size": self.actv_bin_size, "val_evr": num(self.val_evr), "test_evr": num(self.test_evr),
            "train_loss": num(self.train_loss), "test_loss": num(self.test_loss),
            "train_loss_padded": num(self.train_loss_padded.unwrap_or(f64::NAN)),
            "params": p.to_json(),
        });
        if let Some(used) = self.actv_fallback {
            v["actv_bin_size_used"] = json!(used);
        }
        v
    }

    /// A record of the published JSON list; errors name the key. The published records'
    /// `train_loss` is the padded-length loss, so without `train_loss_padded` it stands for it.
    pub fn from_json(v: &Json) -> Result<Self> {
        let mut r = Self::from_py(&json_to_py(v)).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        if v.get("train_loss_padded").is_none() && r.train_loss.is_finite() {
            r.train_loss_padded = Some(r.train_loss);
        }
        Ok(r)
    }
}

/// JSON text with the bare `NaN`, `Infinity` and `-Infinity` that pandas and Python's json
/// module write (outside strings) replaced by `null`.
pub fn pandas_json(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(word) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|w| rest.starts_with(w))
        {
            out.push_str("null");
            rest = &rest[word.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

/// JSON null for NaN (JSON has no NaN).
fn num(x: f64) -> Json {
    if x.is_finite() { json!(x) } else { Json::Null }
}

/// JSON → pickle value (null → NaN for numbers' sake).
pub fn json_to_py(v: &Json) -> PyValue {
    match v {
        Json::Null => PyValue::F64(f64::NAN),
        Json::Bool(b) => PyValue::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map(PyValue::I64)
            .unwrap_or_else(|| PyValue::F64(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => PyValue::String(s.clone()),
        Json::Array(a) => PyValue::List(a.iter().map(json_to_py).collect()),
        Json::Object(o) => PyValue::Dict(
            o.iter()
                .map(|(k, v)| (HashableValue::String(k.clone()), json_to_py(v)))
                .collect(),
        ),
    }
}

impl Dataset {
    /// Number of records over all pairs.
    pub fn n_records(&self) -> usize {
        self.pairs.values().map(Vec::len).sum()
    }

    /// Adds a record under its pair, replacing the cell's record there if any (kept sorted by cell
    /// id).
    pub fn insert(&mut self, r: DatasetRecord) {
        let list = self.pairs.entry((r.bin_size, r.actv_bin_size)).or_default();
        list.retain(|x| x.cell_id != r.cell_id);
        list.push(r);
        list.sort_by_key(|x| x.cell_id);
    }

    /// The dataset pickle's value: a dict from `(bin_size, actv_bin_size)` tuples to lists of
    /// record dicts.
    pub fn to_py(&self) -> PyValue {
        PyValue::Dict(
            self.pairs
                .iter()
                .map(|(&(b, a), recs)| {
                    let key = HashableValue::Tuple(vec![
                        HashableValue::I64(b as i64),
                        HashableValue::I64(a as i64),
                    ]);
                    (
                        key,
                        PyValue::List(recs.iter().map(DatasetRecord::to_py).collect()),
                    )
                })
                .collect(),
        )
    }

    /// Reads the dataset pickle; errors name the file and the offending key or record.
    pub fn load(path: &Path) -> Result<Self> {
        let v = read_pickle(path)?;
        let items = v.dict_items().with_context(|| {
            format!(
                "{}: expected a dict of (bin_size, actv_bin_size) → records",
                path.display()
            )
        })?;
        let mut ds = Self::default();
        for (k, recs) in items {
            let pair = match k {
                HashableValue::Tuple(t) if t.len() == 2 => match (&t[0], &t[1]) {
                    (HashableValue::I64(b), HashableValue::I64(a)) => (*b as u32, *a as u32),
                    _ => bail!("{}: key {k:?} is not a pair of ints", path.display()),
                },
                _ => bail!(
                    "{}: key {k:?} is not a (bin_size, actv_bin_size) tuple",
                    path.display()
                ),
            };
            let list = recs
                .as_list()
                .with_context(|| format!("{}: value of key {pair:?}", path.display()))?;
            for (i, r) in list.iter().enumerate() {
                let rec = DatasetRecord::from_py(r)
                    .with_context(|| format!("{}: key {pair:?}, record {i}", path.display()))?;
                ds.pairs.entry(pair).or_default().push(rec);
            }
        }
        Ok(ds)
    }

    /// Writes the dataset pickle (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_pickle(path, &self.to_py())
    }

    /// The published JSON list of records.
    pub fn to_json(&self) -> Json {
        Json::Array(
            self.pairs
                .values()
                .flatten()
                .map(DatasetRecord::to_json)
                .collect(),
        )
    }

    /// Writes the published JSON list form (atomically; NaN as null).
    pub fn save_json(&self, path: &Path) -> Result<()> {
        write_atomic(path, &serde_json::to_vec(&self.to_json())?)
    }

    /// Reads the published JSON list (bare `NaN` / `Infinity` as pandas writes them are read
    /// as null); errors name the file and the record.
    pub fn load_json(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        if bytes.first() == Some(&0x80) {
            bail!(
                "{} is a pickle, not a JSON file (`gfr dataset import` reads the published JSON list; \
                 a gfr dataset pickle is read by `--dataset`)",
                path.display()
            );
        }
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is not a JSON file (not UTF-8 text)", path.display()))?;
        let v: Json = serde_json::from_str(&pandas_json(&text))
            .with_context(|| format!("{} is not valid JSON", path.display()))?;
        let list = v
            .as_array()
            .with_context(|| format!("{}: expected a JSON list of records", path.display()))?;
        let mut ds = Self::default();
        for (i, r) in list.iter().enumerate() {
            let rec = DatasetRecord::from_json(r).with_context(|| {
                let id = r
                    .get("cell_id")
                    .map(|x| format!(" (cell_id {x})"))
                    .unwrap_or_default();
                format!("{}: record {i}{id}", path.display())
            })?;
            ds.insert(rec);
        }
        Ok(ds)
    }

    /// The record of `cell_id` for a (bin size, activation bin size) pair; the error names the
    /// pairs present or the missing cell.
    pub fn record(
        &self,
        cell_id: u64,
        bin_size: u32,
        actv_bin_size: u32,
    ) -> Result<&DatasetRecord> {
        let Some(list) = self.pairs.get(&(bin_size, actv_bin_size)) else {
            let have: Vec<String> = self
                .pairs
                .keys()
                .map(|(b, a)| format!("({b}, {a})"))
                .collect();
            bail!(
                "the dataset has no (bin_size {bin_size}, activation_bin_size {actv_bin_size}) pair; it has {}",
                have.join(", ")
            );
        };
        list.iter()
            .find(|r| r.cell_id == cell_id)
            .with_context(|| format!("cell {cell_id} is not in the dataset for bin size {bin_size}, activation bin size {actv_bin_size}"))
    }

    /// Table of cell counts per pair, as in the seed's README.
    pub fn summary(&self) -> String {
        let mut s = String::from(
            "| Bin size (ms) | Activation bin size (ms) | # cells |\n|:-------------:|:------------------------:|---------|\n",
        );
        for (&(b, a), recs) in &self.pairs {
            s += &format!("| {b:^13} | {a:^24} | {:<7} |\n", recs.len());
        }
        s
    }

    /// Gathers fit results from `params_dirs` (their pair folders `bin{B}_actv{A}/` and the
    /// flat layout of earlier versions), keeps one result per cell and pair (the best
    /// validation EVR), keeps those meeting the criteria and adds the cre line from the
    /// metadata table. A result is filed under the pair it was asked for (see
    /// [`FitResult::pair`]); one fitted through the 100 ms activation fallback says so.
    pub fn build(
        params_dirs: &[PathBuf],
        cre_lines: &HashMap<u64, String>,
        criteria: &Criteria,
    ) -> Result<(Self, BuildReport)> {
        let mut report = BuildReport::default();
        let mut best: BTreeMap<(u32, u32, u64), (DatasetRecord, PathBuf)> = BTreeMap::new();
        for dir in params_dirs {
            let files = crate::fit::store::result_files(dir)
                .with_context(|| format!("params dir {}", dir.display()))?;
            for found in files {
                let id = found.cell_id;
                let r = match FitResult::load(&found.path) {
                    Ok(r) => r,
                    Err(e) => {
                        report.unreadable.push(format!("{e:#}"));
                        continue;
                    }
                };
                // the best of some runs only: not the neuron the fit would select
                if r.meta.partial.is_some() {
                    report.partial.push(found.path);
                    continue;
                }
                let rec = DatasetRecord::from_fit(
                    id,
                    &r,
                    cre_lines.get(&id).cloned().unwrap_or_default(),
                );
                report.found += 1;
                let key = (rec.bin_size, rec.actv_bin_size, id);
                match best.get(&key) {
                    // the better validation EVR stays (NaN never wins); ties: the first found
                    Some((kept, _)) if !(rec.val_evr > kept.val_evr || kept.val_evr.is_nan()) => {
                        report.duplicates.push(found.path);
                    }
                    Some(_) => {
                        let (_, old) = best.insert(key, (rec, found.path)).expect("present");
                        report.duplicates.push(old);
                    }
                    None => {
                        best.insert(key, (rec, found.path));
                    }
                }
            }
            report
                .summaries
                .extend(crate::fit::store::summary_files(dir));
        }
        let mut ds = Self::default();
        for (rec, _) in best.into_values() {
            if rec.meets_criteria(criteria) {
                report.included += 1;
                if rec.actv_fallback.is_some() {
                    report.fallback += 1;
                }
                ds.insert(rec);
            } else {
                report.excluded += 1;
            }
        }
        Ok((ds, report))
    }
}

/// What `Dataset::build` found.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    /// Readable results found (duplicates included).
    pub found: usize,
    /// Results (one per cell and pair) that meet the criteria and are in the dataset.
    pub included: usize,
    /// Results (one per cell and pair) that fail the criteria.
    pub excluded: usize,
    /// Result files that could not be read, one error message each.
    pub unreadable: Vec<String>,
    /// Results dropped for a better one of the same cell and pair (their paths).
    pub duplicates: Vec<PathBuf>,
    /// Included results whose activation was fitted through the 100 ms fallback.
    pub fallback: usize,
    /// Partial results (a fit stopped between runs), left out: `gfr fit --resume` ends them.
    pub partial: Vec<PathBuf>,
    /// The fit summaries (`fit_summary*.json`) found beside the results.
    pub summaries: Vec<PathBuf>,
    /// Shards of sharded fits without a summary (`FOLDER: shard K of N`), filled by
    /// [`build_and_save`].
    pub missing_shards: Vec<String>,
}

/// `gfr dataset build`: reads the results in `params_dirs` (a folder named twice is read
/// once), builds the dataset ([`Dataset::build`]) and writes it to `out` (and the published
/// JSON list to `json`). The output folders are checked before any result is read. Nothing is
/// written when no readable result is found, nor when no result meets the criteria and `out`
/// exists, unless `overwrite`; nor when a sharded fit misses shards
/// ([`crate::fit::store::missing_shards`]), unless `allow_missing`. Errors name settings as
/// `name` gives them.
#[allow(clippy::too_many_arguments)]
pub fn build_and_save(
    params_dirs: &[PathBuf],
    out: &Path,
    json: Option<&Path>,
    cre_lines: &HashMap<u64, String>,
    criteria: &Criteria,
    overwrite: bool,
    allow_missing: bool,
    name: &dyn Fn(&str) -> String,
) -> Result<(Dataset, BuildReport)> {
    criteria.check(name)?;
    let mut seen = std::collections::HashSet::new();
    let dirs: Vec<PathBuf> = params_dirs
        .iter()
        .filter(|d| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf())))
        .cloned()
        .collect();
    let check_out = |file: &Path, setting: &str| -> Result<()> {
        crate::fit::store::check_output_file(file, &name(setting))
    };
    check_out(out, "out")?;
    if let Some(j) = json {
        check_out(j, "json")?;
    }
    let (ds, mut report) = Dataset::build(&dirs, cre_lines, criteria)?;
    report.missing_shards = crate::fit::store::missing_shards(&report.summaries);
    if !report.missing_shards.is_empty() && !allow_missing {
        bail!(
            "the sharded fit is incomplete, missing {} (no summary: the task did not run, or \
             stopped before its end; `gfr fit --shard K/N --resume` ends it); {} was not \
             written ({} builds from what is there)",
            report.missing_shards.join(", "),
            out.display(),
            name("allow_missing")
        );
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    if report.found == 0 {
        let why = format!(
            "no readable fit results in {}{}; {} was not written",
            shown.join(", "),
            if report.partial.is_empty() {
                String::new()
            } else {
                format!(
                    " (only partial ones: {} partial results left out; run `gfr fit --resume` \
                     with the same config to end them)",
                    report.partial.len()
                )
            },
            out.display()
        );
        return Err(anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            why,
        )));
    }
    if ds.n_records() == 0 && out.exists() && !overwrite {
        bail!(
            "none of the {} results in {} meets the criteria; {} exists and was left \
             unchanged ({} replaces it with an empty dataset)",
            report.found,
            shown.join(", "),
            out.display(),
            name("overwrite")
        );
    }
    ds.save(out)?;
    if let Some(j) = json {
        ds.save_json(j)?;
    }
    Ok((ds, report))
}

/// The Allen metadata table `data/metadata.csv` as compiled into the binary (the repo file
/// stays the editable copy).
pub const BUILTIN_METADATA: &str = include_str!("../data/metadata.csv");

/// Cre line per specimen from the Allen metadata table (`specimen__id`, `line_name`).
pub fn read_cre_lines(path: &Path) -> Result<HashMap<u64, String>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read metadata table {}", path.display()))?;
    parse_cre_lines(file, &path.display().to_string())
}

/// The dataset pickle the commands read and write by default.
pub const DEFAULT_DATASET: &str = "model/gfr_dataset.pickle";

/// Where [`cre_lines`] looks without a path: the working folder's copy of the table.
pub const DEFAULT_METADATA: &str = "data/metadata.csv";

/// Cre lines of the metadata table at `path`; without one, of [`DEFAULT_METADATA`] when it is
/// in the working folder, else of the built-in copy. Also says where they came from.
pub fn cre_lines(path: Option<&Path>) -> Result<(HashMap<u64, String>, String)> {
    let local = Path::new(DEFAULT_METADATA);
    match path.or(local.exists().then_some(local)) {
        Some(p) => Ok((read_cre_lines(p)?, p.display().to_string())),
        None => Ok((
            builtin_cre_lines()?,
            format!("the built-in {DEFAULT_METADATA}"),
        )),
    }
}

/// Cre lines from the built-in metadata table ([`BUILTIN_METADATA`]).
pub fn builtin_cre_lines() -> Result<HashMap<u64, String>> {
    parse_cre_lines(BUILTIN_METADATA.as_bytes(), "built-in data/metadata.csv")
}

/// Cre lines from a metadata table read from `input`; `origin` is named in errors.
pub fn parse_cre_lines(input: impl std::io::Read, origin: &str) -> Result<HashMap<u64, String>> {
    let mut rdr = csv::Reader::from_reader(input);
    let headers = rdr
        .headers()
        .with_context(|| format!("{origin}: no header row"))?
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{origin}: no `{name}` column"))
    };
    let (id_col, line_col) = (col("specimen__id")?, col("line_name")?);
    let mut out = HashMap::new();
    for (i, row) in rdr.records().enumerate() {
        let row = row.with_context(|| format!("{origin}: row {}", i + 2))?;
        if let Some(id) = row.get(id_col).and_then(|s| s.trim().parse::<u64>().ok()) {
            out.insert(id, row.get(line_col).unwrap_or("").to_string());
        }
    }
    Ok(out)
}

/// The GFR neuron of a cell, as a one-neuron layer on `device` (the seed's `load_gfr_model`).
pub fn load_gfr_model(
    dataset: &Dataset,
    cell_id: u64,
    bin_size: u32,
    activation_bin_size: u32,
    device: &Device,
) -> Result<GfrLayer> {
    let r = dataset.record(cell_id, bin_size, activation_bin_size)?;
    Ok(GfrLayer::new(std::slice::from_ref(&r.params), device))
}
