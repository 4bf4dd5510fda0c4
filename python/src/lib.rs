//! `gfr._gfr`: the Python extension module, a thin layer over the gfr library's own calls.
//!
//! Each function converts its arguments, releases the GIL around the library call, and
//! converts the result (numbers as numpy float64 arrays; pickles and JSON as the same
//! Python objects `pickle` and `json` would give). Long work reports through a [`Watch`]: one
//! updating progress line on `sys.stderr`, and Ctrl-C checked between epochs / batches / cells.
//! Errors become exceptions by their kind ([`gfr::error::kind`]); a Rust panic becomes
//! `RuntimeError`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use numpy::{AllowTypeChange, IntoPyArray, PyArray1, PyArrayLike1};
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use gfr::error::ErrorKind;

/// The Python exception for a library error: `ValueError` (a bad argument), `FileNotFoundError`,
/// `OSError`, `KeyboardInterrupt` (stopped by Ctrl-C), else `RuntimeError`; the message is
/// the CLI's.
fn to_py_err(e: anyhow::Error) -> PyErr {
    let msg = format!("{e:#}");
    match gfr::error::kind(&e) {
        ErrorKind::InvalidValue => PyValueError::new_err(msg),
        ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        ErrorKind::Io => PyOSError::new_err(msg),
        ErrorKind::Interrupted => PyKeyboardInterrupt::new_err(msg),
        ErrorKind::SomeFailed | ErrorKind::Other => PyRuntimeError::new_err(msg),
    }
}

/// Runs `work` with the GIL released; an error becomes its exception ([`to_py_err`]), a
/// panic a `RuntimeError`, and an interrupt seen by `watch` the exception its signal handler
/// raised (`KeyboardInterrupt` for Ctrl-C).
fn run<T: Send>(
    py: Python<'_>,
    watch: Option<&Watch>,
    work: impl FnOnce() -> anyhow::Result<T> + Send,
) -> PyResult<T> {
    let out = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
    if let Some(w) = watch {
        w.finish();
    }
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if gfr::error::kind(&e) == ErrorKind::Interrupted
                && let Some(raised) = watch.and_then(|w| w.stop.lock().unwrap().take())
            {
                let err = PyKeyboardInterrupt::new_err(format!("{e:#}"));
                if raised.is_instance_of::<PyKeyboardInterrupt>(py) {
                    return Err(err);
                }
                return Err(raised);
            }
            Err(to_py_err(e))
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "gfr failed internally (a bug; please report it): {what}"
            )))
        }
    }
}

/// Library setting names as the Python arguments spell them (the L1 weight is `C`).
fn arg_name(field: &str) -> String {
    match field {
        "l1" => "C".to_string(),
        f => f.to_string(),
    }
}

/// Progress and interruption of one long call: one line on `sys.stderr` rewritten in place
/// (a terminal or a notebook), at most ten times a second; Python's signal handlers run at
/// most every 0.1 s between epochs, batches or cells.
struct Watch {
    show: bool,
    started: Instant,
    /// The exception a signal handler raised (KeyboardInterrupt for Ctrl-C).
    stop: Mutex<Option<PyErr>>,
    last_check: Mutex<Instant>,
    /// When the line was last drawn, its width, and its text.
    line: Mutex<(Option<Instant>, usize, String)>,
}

const CHECK_EVERY: Duration = Duration::from_millis(100);

impl Watch {
    fn new(show: bool) -> Self {
        Self {
            show,
            started: Instant::now(),
            stop: Mutex::new(None),
            last_check: Mutex::new(Instant::now() - CHECK_EVERY),
            line: Mutex::new((None, 0, String::new())),
        }
    }

    /// Whether the user asked to stop (runs Python's signal handlers, throttled).
    fn cancelled(&self) -> bool {
        if self.stop.lock().unwrap().is_some() {
            return true;
        }
        {
            let mut last = self.last_check.lock().unwrap();
            if last.elapsed() < CHECK_EVERY {
                return false;
            }
            *last = Instant::now();
        }
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                *self.stop.lock().unwrap() = Some(e);
                true
            }
        })
    }

    /// Redraws the progress line (throttled unless `force`).
    fn draw(&self, text: String, force: bool) {
        if !self.show {
            return;
        }
        let mut line = self.line.lock().unwrap();
        let due = line
            .0
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        line.2 = text;
        if !(due || force) {
            return;
        }
        let secs = self.started.elapsed().as_secs();
        let shown = format!(
            "{} · {:02}:{:02}:{:02}",
            line.2,
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        let pad = line.1.saturating_sub(shown.chars().count());
        write_stderr(&format!("\r{shown}{}", " ".repeat(pad)));
        *line = (Some(Instant::now()), shown.chars().count(), line.2.clone());
    }

    /// A line of its own above the progress line.
    fn say(&self, text: &str) {
        if !self.show {
            return;
        }
        let mut line = self.line.lock().unwrap();
        let clear = if line.1 > 0 {
            format!("\r{}\r", " ".repeat(line.1))
        } else {
            String::new()
        };
        write_stderr(&format!("{clear}{text}\n"));
        // the progress line comes back at the next draw
        line.0 = None;
        line.1 = 0;
    }

    /// Ends the progress line.
    fn finish(&self) {
        if !self.show {
            return;
        }
        let mut line = self.line.lock().unwrap();
        if line.1 > 0 {
            write_stderr("\n");
            line.1 = 0;
        }
    }
}

fn write_stderr(text: &str) {
    Python::attach(|py| {
        if let Ok(err) = py.import("sys").and_then(|s| s.getattr("stderr")) {
            let _ = err.call_method1("write", (text,));
            let _ = err.call_method0("flush");
        }
    });
}

/// `gfr.fit`'s observer.
struct FitWatch<'a> {
    watch: &'a Watch,
    cells: usize,
    state: Mutex<FitState>,
}

#[derive(Default)]
struct FitState {
    done: usize,
    run: String,
    epochs: usize,
    epoch: usize,
    loss: f64,
    stage: String,
}

impl FitWatch<'_> {
    fn redraw(&self, force: bool) {
        let s = self.state.lock().unwrap();
        let mut text = format!("fit {}/{} cells", s.done, self.cells);
        if !s.stage.is_empty() {
            text += &format!(" · {}", s.stage);
        } else if !s.run.is_empty() {
            text += &format!(
                " · {} · epoch {}/{} · loss {:.4}",
                s.run, s.epoch, s.epochs, s.loss
            );
        }
        drop(s);
        self.watch.draw(text, force);
    }
}

impl gfr::fit::FitProgress for FitWatch<'_> {
    fn stage(&self, msg: &str) {
        self.state.lock().unwrap().stage = msg.to_string();
        self.redraw(false);
    }
    fn note(&self, msg: &str) {
        self.watch.say(msg);
    }
    fn run_started(&self, run: usize, runs: usize, epochs: usize) {
        let mut s = self.state.lock().unwrap();
        s.stage.clear();
        s.run = format!("run {}/{runs}", run + 1);
        s.epochs = epochs;
        s.epoch = 0;
    }
    fn epoch(&self, epoch: usize, train_loss: f64) {
        {
            let mut s = self.state.lock().unwrap();
            s.epoch = epoch + 1;
            s.loss = train_loss;
        }
        self.redraw(false);
    }
    fn cell_done(&self, _report: &gfr::fit::CellReport) {
        self.state.lock().unwrap().done += 1;
        self.redraw(false);
    }
    fn finished(&self) {
        self.redraw(true);
    }
    fn setting(&self, field: &str) -> String {
        arg_name(field)
    }
    fn cancelled(&self) -> bool {
        self.watch.cancelled()
    }
}

/// `gfr.run_network`'s observer.
struct NetworkWatch<'a> {
    watch: &'a Watch,
    /// (epoch, epochs, batches, batches done)
    state: Mutex<(usize, usize, usize, usize)>,
}

impl gfr::network::NetworkObserver for NetworkWatch<'_> {
    fn note(&self, line: &str) {
        self.watch.say(line);
    }
    fn epoch_started(&self, epoch: usize, epochs: usize, batches: usize) {
        *self.state.lock().unwrap() = (epoch + 1, epochs, batches, 0);
    }
    fn batch_done(&self) {
        let (e, es, b, done) = {
            let mut s = self.state.lock().unwrap();
            s.3 += 1;
            *s
        };
        self.watch
            .draw(format!("network epoch {e}/{es} · batch {done}/{b}"), false);
    }
    fn epoch_done(&self, stats: &gfr::network::EpochStats) {
        self.watch.say(&stats.to_string());
    }
    fn setting(&self, field: &str) -> String {
        field.to_string()
    }
    fn cancelled(&self) -> bool {
        self.watch.cancelled()
    }
}

/// `gfr.preprocess`'s observer.
struct PreprocessWatch<'a>(&'a Watch);

impl gfr::data::preprocess::PreprocessProgress for PreprocessWatch<'_> {
    fn cell_started(&self, index: usize, total: usize, cell_id: u64) {
        self.0.draw(
            format!("preprocess {index}/{total} cells · cell {cell_id}"),
            true,
        );
    }
    fn note(&self, cell_id: u64, msg: &str) {
        self.0.say(&format!("cell {cell_id}: {msg}"));
    }
    fn cell_done(&self, cell_id: u64, outcome: &gfr::data::preprocess::Outcome) {
        if let gfr::data::preprocess::Outcome::Failed(why) = outcome {
            self.0.say(&format!("cell {cell_id}: FAILED, {why}"));
        }
    }
    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }
}

/// A Python object from JSON text (`json.loads`).
fn from_json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// A Python object from a pickle value of the library (through `pickle.loads`, so it is
/// exactly what Python reads from gfr's files).
fn from_pickle<'py>(
    py: Python<'py>,
    v: &gfr::data::pickle::PyValue,
) -> PyResult<Bound<'py, PyAny>> {
    let bytes = gfr::data::pickle::to_bytes(v).map_err(to_py_err)?;
    py.import("pickle")?
        .call_method1("loads", (PyBytes::new(py, &bytes),))
}

/// A library pickle value from a Python object (through `pickle.dumps` and gfr's reader).
fn to_pickle(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<gfr::data::pickle::PyValue> {
    let py = obj.py();
    let bytes: Vec<u8> = py
        .import("pickle")?
        .call_method1("dumps", (obj, 2))?
        .extract()?;
    gfr::data::unpickle::unpickle(&bytes)
        .map_err(|e| PyValueError::new_err(format!("{what}: {e:#}")))
}

/// Cell ids from a list of ints, or a CSV file of them (a path).
fn cell_list(obj: &Bound<'_, PyAny>, arg: &str) -> PyResult<Vec<u64>> {
    if let Ok(ids) = obj.extract::<Vec<u64>>() {
        return Ok(ids);
    }
    if let Ok(path) = obj.extract::<PathBuf>() {
        return gfr::data::read_cell_ids(&path).map_err(to_py_err);
    }
    Err(PyValueError::new_err(format!(
        "{arg}: expected a list of cell ids (non-negative ints) or the path of a CSV of them"
    )))
}

/// A library enum from its name as the CLI spells it (the names serde reads: one parser).
fn choice<T: serde::de::DeserializeOwned>(value: &str, arg: &str, choices: &str) -> PyResult<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| PyValueError::new_err(format!("{arg} `{value}`: expected one of {choices}")))
}

/// Spike threshold times (s from the first sample) detected in a membrane-potential trace,
/// with IPFX's detector: the same detector and numbers as `gfr spikes`.
///
/// voltage_mv: the trace in mV (1-D, any float or int array-like).
/// rate_hz: its sampling rate in Hz.
/// dv_cutoff: dV/dt level (mV/ms) whose upward crossing marks a putative spike (IPFX: 20).
/// min_peak: smallest accepted peak (mV; IPFX: -30).
/// filter_khz: cutoff of the 4-pole Bessel low-pass (kHz; IPFX: 10); None for no filter.
///
/// Returns a float64 array of times in seconds. Raises ValueError naming a bad argument.
#[pyfunction]
#[pyo3(signature = (voltage_mv, rate_hz, *, dv_cutoff=20.0, min_peak=-30.0, filter_khz=Some(10.0)))]
fn detect_spikes<'py>(
    py: Python<'py>,
    voltage_mv: PyArrayLike1<'py, f64, AllowTypeChange>,
    rate_hz: f64,
    dv_cutoff: f64,
    min_peak: f64,
    filter_khz: Option<f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let params = gfr::data::spikes::SpikeParams {
        dv_cutoff,
        min_peak,
        filter_khz,
        ..Default::default()
    };
    let v = voltage_mv.as_array().to_vec();
    let times = run(py, None, || {
        gfr::data::spikes::threshold_times(&v, rate_hz, &params, &arg_name)
    })?;
    Ok(times.into_pyarray(py))
}

/// The current-clamp sweeps of an NWB file (NWB 1 or NWB 2), one dict per sweep:
/// `sweep_number`, `stimulus_name`, `rate_hz`, `current_pa` (pA per sample), `voltage_mv`
/// (mV per sample; None where the file stores none) and `spike_times_s` (stored in NWB 1 files,
/// detected from the voltage for NWB 2, s from the sweep's start). Sweeps `gfr preprocess`
/// skips are left out with a warning saying why. A stimulus-names file beside the NWB file
/// applies as for `gfr preprocess`.
#[pyfunction]
fn read_nwb<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyList>> {
    let rec = run(py, None, || {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let opts = gfr::data::nwb2::Nwb2Options::for_nwb_dir(dir)?;
        gfr::data::nwb2::read_recording(&path, &opts)
    })?;
    let warnings = py.import("warnings")?;
    for n in &rec.notes {
        warnings.call_method1("warn", (format!("{}: {n}", path.display()),))?;
    }
    let out = PyList::empty(py);
    for (number, sweep) in rec.sweeps {
        let d = PyDict::new(py);
        d.set_item("sweep_number", number)?;
        d.set_item("stimulus_name", &sweep.stimulus_name)?;
        d.set_item("rate_hz", sweep.sampling_rate)?;
        let current: Vec<f64> = sweep.stimulus.iter().map(|a| a * 1e12).collect();
        d.set_item("current_pa", current.into_pyarray(py))?;
        if sweep.response.is_empty() {
            d.set_item("voltage_mv", py.None())?;
        } else {
            let v: Vec<f64> = sweep.response.iter().map(|v| v * 1e3).collect();
            d.set_item("voltage_mv", v.into_pyarray(py))?;
        }
        d.set_item("spike_times_s", sweep.spike_times.clone().into_pyarray(py))?;
        out.append(d)?;
    }
    Ok(out)
}

/// Simulates spiking cells under an Allen-like protocol and writes them as processed data
/// (as `gfr simulate`): `data_dir/processed_data/`, `max_firing_rates/` and `cell_ids.csv`.
///
/// truth: "adex" (adaptive exponential integrate-and-fire cells) or "gfr" (a known GFR neuron).
/// first_id: id of the first cell; the others follow.
/// overwrite: replace a `cell_ids.csv` that lists other cells.
/// nwb_dir: write NWB 2 files instead (`nwb_dir/{id}.nwb`, pynwb / IPFX layout, 50 kHz, the
///   membrane potential with spike waveforms) and `nwb_dir/cell_ids.csv`, for `preprocess`;
///   AdEx cells only (`data_dir` is then not used).
///
/// Returns the cell ids.
#[pyfunction]
#[pyo3(signature = (cells=8, seed=0, data_dir=PathBuf::from("data"), *, truth="adex", first_id=900_000_001, overwrite=false, nwb_dir=None, progress=true))]
#[allow(clippy::too_many_arguments)]
fn simulate(
    py: Python<'_>,
    cells: usize,
    seed: u64,
    data_dir: PathBuf,
    truth: &str,
    first_id: u64,
    overwrite: bool,
    nwb_dir: Option<PathBuf>,
    progress: bool,
) -> PyResult<Vec<u64>> {
    let truth = match truth {
        "adex" => gfr::simulate::GroundTruth::Adex,
        "gfr" => gfr::simulate::GroundTruth::Gfr,
        other => {
            return Err(PyValueError::new_err(format!(
                "truth `{other}`: expected one of adex, gfr"
            )));
        }
    };
    let watch = Watch::new(progress);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let tick = || {
        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        watch.draw(format!("simulate {k}/{cells} cells"), k == cells);
    };
    if let Some(nwb_dir) = nwb_dir {
        if truth != gfr::simulate::GroundTruth::Adex {
            return Err(PyValueError::new_err(
                "truth `gfr`: NWB files are written for AdEx cells only (nwb_dir)",
            ));
        }
        return run(py, Some(&watch), || {
            gfr::simulate::simulate_nwb_into(
                &nwb_dir,
                cells,
                first_id,
                seed,
                overwrite,
                &arg_name,
                |_| tick(),
            )
        });
    }
    run(py, Some(&watch), || {
        gfr::simulate::simulate_into(
            &gfr::DataDir::new(&data_dir),
            cells,
            first_id,
            seed,
            truth,
            overwrite,
            &arg_name,
            |_| tick(),
        )
    })
}

/// Preprocesses Allen Cell Types recordings (NWB 1 or 2) into binned current / firing-rate
/// traces (as `gfr preprocess`), writing `data_dir/processed_data/` and `max_firing_rates/`.
///
/// cell_ids: a list of ids, the path of a CSV of ids, or None for `nwb_dir/cell_ids.csv` when
///     there (as `simulate(nwb_dir=...)` writes it), else every cell of the metadata table.
///     The list is written to `data_dir/cell_ids.csv` (which `fit` reads by default) unless
///     one of other cells is there.
/// nwb_dir: folder of NWB files, `specimen_{id}/ephys.nwb` (Allen SDK cache) or `{id}.nwb`.
/// metadata: the Allen metadata table (default: data/metadata.csv when in the working
///     folder, else the copy built into gfr).
///
/// Returns one dict per cell: `cell_id`, `status` ("done", "skipped" or "failed"), `sweeps`,
/// `max_firing_rate` (ms⁻¹), `message`. One bad cell never stops the others.
#[pyfunction]
#[pyo3(signature = (cell_ids, nwb_dir, data_dir=PathBuf::from("data"), *, metadata=None, progress=true))]
fn preprocess<'py>(
    py: Python<'py>,
    cell_ids: Option<&Bound<'py, PyAny>>,
    nwb_dir: PathBuf,
    data_dir: PathBuf,
    metadata: Option<PathBuf>,
    progress: bool,
) -> PyResult<Bound<'py, PyList>> {
    let ids = cell_ids
        .filter(|c| !c.is_none())
        .map(|c| cell_list(c, "cell_ids"))
        .transpose()?;
    let watch = Watch::new(progress);
    let data = gfr::DataDir::new(&data_dir);
    let summary = run(py, Some(&watch), || {
        let ids = match ids {
            Some(ids) => ids,
            None => gfr::data::preprocess::default_cells(&nwb_dir, metadata.as_deref())?.0,
        };
        if let Some(note) = gfr::data::preprocess::record_cell_list(&data, &ids)? {
            watch.say(&note);
        }
        gfr::data::preprocess::preprocess_cells(&nwb_dir, &data, &ids, &PreprocessWatch(&watch))
    })?;
    let out = PyList::empty(py);
    let row = |id: u64, status: &str, sweeps: Option<usize>, rate: Option<f64>, msg: &str| {
        let d = PyDict::new(py);
        d.set_item("cell_id", id)?;
        d.set_item("status", status)?;
        d.set_item("sweeps", sweeps)?;
        d.set_item("max_firing_rate", rate)?;
        d.set_item("message", msg)?;
        out.append(d)
    };
    for (id, sweeps, rate) in &summary.done {
        row(*id, "done", Some(*sweeps), Some(*rate), "")?;
    }
    for (id, why) in &summary.skipped {
        row(*id, "skipped", None, None, why)?;
    }
    for (id, why) in &summary.failed {
        row(*id, "failed", None, None, why)?;
    }
    Ok(out)
}

/// The fitting config of `gfr.fit`'s `config` argument.
fn fit_config(config: &Bound<'_, PyAny>) -> PyResult<gfr::FitConfig> {
    let py = config.py();
    if let Ok(d) = config.cast::<PyDict>() {
        let text: String = py.import("json")?.call_method1("dumps", (d,))?.extract()?;
        return gfr::FitConfig::from_json(&text, "config").map_err(to_py_err);
    }
    if let Ok(name) = config.extract::<String>()
        && ["default", "thorough", "test"].contains(&name.as_str())
    {
        return gfr::FitConfig::named(&name).map_err(to_py_err);
    }
    if let Ok(path) = config.extract::<PathBuf>() {
        return gfr::FitConfig::load(&path).map_err(to_py_err);
    }
    Err(PyValueError::new_err(
        "config: expected \"default\", \"thorough\", \"test\", the path of a config file, or a dict of its keys",
    ))
}

/// Fits one GFR neuron per cell (as `gfr fit`): the activation first, then the filters,
/// selected by validation EVR. Writes exactly the files `gfr fit` writes:
/// `save_path/bin{B}_actv{A}/{id}.pickle` and the run's `fit_summary.json`.
///
/// cell_ids: a list of ids, the path of a CSV of ids, or None for `data_dir/cell_ids.csv`.
/// config: "default", "thorough", "test" (the configs shipped with gfr), the path of a config
///     file, or a dict with the config file's keys.
/// bin_size: model bin size in ms (10, 20, 50, 100); activation_bin_size: 20 or 100 (10, 50).
/// device: "cpu" or "wgpu". batch_cells: cells fitted together (results unchanged; None: 16 on
///     the CPU, 2500 on wgpu).
/// resume: skip cells this config already fitted; go on from partial results.
/// degree: degree of the activation polynomial; C: L1 weight on the filters; seed: random seed.
/// shard: (K, N) to fit every N-th cell starting at the K-th.
///
/// Returns one dict per cell: `cell_id`, `status` ("saved", "kept-previous", "skipped",
/// "failed"), `val_evr`, `test_evr`, `train_loss`, `seconds`, `message`. Ctrl-C stops within
/// about a second (KeyboardInterrupt), keeping what `resume=True` goes on from.
#[pyfunction]
#[pyo3(signature = (cell_ids=None, *, data_dir=PathBuf::from("data"), config=None, bin_size=20, activation_bin_size=20, save_path=PathBuf::from("model/params"), device="cpu", batch_cells=None, resume=false, progress=true, degree=1, C=0.0, seed=0, shard=None))]
#[allow(clippy::too_many_arguments, non_snake_case)]
fn fit<'py>(
    py: Python<'py>,
    cell_ids: Option<&Bound<'py, PyAny>>,
    data_dir: PathBuf,
    config: Option<&Bound<'py, PyAny>>,
    bin_size: u32,
    activation_bin_size: u32,
    save_path: PathBuf,
    device: &str,
    batch_cells: Option<usize>,
    resume: bool,
    progress: bool,
    degree: usize,
    C: f64,
    seed: u64,
    shard: Option<(usize, usize)>,
) -> PyResult<Bound<'py, PyAny>> {
    gfr::fit::FitOptions::check_bins(bin_size, activation_bin_size, C, &arg_name)
        .map_err(to_py_err)?;
    let config = match config.filter(|c| !c.is_none()) {
        Some(c) => fit_config(c)?,
        None => gfr::FitConfig::named("default").map_err(to_py_err)?,
    };
    if let Some((k, n)) = shard
        && !(n > 0 && k < n)
    {
        return Err(PyValueError::new_err(format!(
            "shard ({k}, {n}): need 0 ≤ K < N"
        )));
    }
    let backend: gfr::Backend = choice(device, "device", "cpu, wgpu")?;
    let data = gfr::DataDir::new(&data_dir);
    let ids = match cell_ids.filter(|c| !c.is_none()) {
        Some(c) => cell_list(c, "cell_ids")?,
        None => gfr::data::read_cell_ids(&data.cell_ids()).map_err(to_py_err)?,
    };
    let ids = gfr::fit::shard_cells(ids, shard);
    let watch = Watch::new(progress);
    let reports = run(py, Some(&watch), || {
        let opts = gfr::FitOptions {
            bin_size,
            activation_bin_size,
            degree,
            l1: C,
            save_path,
            config,
            data_dir: data,
            device: backend.device()?,
            seed,
            batch_cells: batch_cells.unwrap_or_else(|| gfr::fit::default_batch_cells(backend)),
            resume,
            shard,
        };
        opts.check(&arg_name)?;
        opts.check_data_dir(&arg_name)?;
        let obs = FitWatch {
            watch: &watch,
            cells: ids.len(),
            state: Default::default(),
        };
        let reports = gfr::fit_cells(&ids, &opts, &obs)?;
        Ok(serde_json::to_string(&reports)?)
    })?;
    from_json(py, &reports)
}

/// A fitted GFR neuron.
///
/// Neuron(params): from a result's `params` dict, as in the result pickles
/// (`pickle.load(open(".../{id}.pickle", "rb"))["params"]`) and the dataset's records.
#[pyclass(module = "gfr", frozen)]
struct Neuron {
    params: gfr::NeuronParams,
}

#[pymethods]
impl Neuron {
    #[new]
    fn new(params: &Bound<'_, PyAny>) -> PyResult<Self> {
        let v = to_pickle(params, "params")?;
        let params = gfr::NeuronParams::from_py(&v)
            .map_err(|e| PyValueError::new_err(format!("params: {e:#}")))?;
        Ok(Self { params })
    }

    /// The neuron's firing rate (spikes/ms) in each bin of a current trace (pA per bin, at
    /// the neuron's bin size): the numbers of `gfr predict`. Returns a float64 array.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        current_pa: PyArrayLike1<'py, f64, AllowTypeChange>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let current = current_pa.as_array().to_vec();
        let rates = run(py, None, || {
            self.params
                .predict_checked(&current)
                .map_err(|e| anyhow::anyhow!("current_pa: {e:#}"))
                .map_err(|e| gfr::error::invalid(format!("{e:#}")))
        })?;
        Ok(rates.into_pyarray(py))
    }

    /// The parameters as a dict (the layout of the result pickles).
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_pickle(py, &self.params.to_py())
    }

    /// Model bin size Δt (ms).
    #[getter]
    fn bin_size(&self) -> u32 {
        self.params.bin_size
    }

    fn __repr__(&self) -> String {
        let a = &self.params.activation;
        format!(
            "Neuron(bin_size={} ms, {} filters, threshold b={:.2} pA, max rate γ={:.4} ms⁻¹)",
            self.params.bin_size,
            self.params.n_filters(),
            a.threshold,
            a.max_firing_rate
        )
    }
}

/// The records of a dataset pickle as plain Python objects: {(bin_size, activation_bin_size):
/// [record dict, …]} (`gfr.load_dataset` turns the lists into DataFrames).
#[pyfunction]
fn _dataset_records<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyAny>> {
    let ds = run(py, None, || gfr::Dataset::load(&path))?;
    from_pickle(py, &ds.to_py())
}

/// Builds the dataset of fitted neurons (as `gfr dataset build`): gathers the per-cell results
/// in `params_dir` (a folder or a list of folders; shards merge), keeps per cell and bin-size
/// pair the best validation EVR, applies the criteria, adds cre lines, and writes the dataset
/// pickle `out` (and the published JSON list to `json`).
///
/// min_val_evr, max_train_loss: the criteria (published: 0.5 and 0.45).
/// metadata: the Allen metadata table (default as in `gfr.preprocess`).
/// overwrite: replace an existing dataset even by an empty one.
/// allow_missing: build even when a sharded fit misses shards (else an error naming them).
///
/// Returns a dict: `included`, `excluded`, `unreadable`, `partial`, `duplicates`,
/// `missing_shards` and `pairs`
/// ({(bin_size, activation_bin_size): cells}).
#[pyfunction]
#[pyo3(signature = (params_dir=None, out=PathBuf::from("model/gfr_dataset.pickle"), *, json=None, metadata=None, overwrite=false, min_val_evr=gfr::dataset::MIN_VAL_EVR, max_train_loss=gfr::dataset::MAX_TRAIN_LOSS, allow_missing=false))]
#[allow(clippy::too_many_arguments)]
fn build_dataset<'py>(
    py: Python<'py>,
    params_dir: Option<&Bound<'py, PyAny>>,
    out: PathBuf,
    json: Option<PathBuf>,
    metadata: Option<PathBuf>,
    overwrite: bool,
    min_val_evr: f64,
    max_train_loss: f64,
    allow_missing: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let dirs: Vec<PathBuf> = match params_dir.filter(|p| !p.is_none()) {
        None => vec![PathBuf::from("model/params")],
        Some(p) => match p.extract::<PathBuf>() {
            Ok(one) => vec![one],
            Err(_) => p.extract::<Vec<PathBuf>>().map_err(|_| {
                PyValueError::new_err("params_dir: expected a folder or a list of folders")
            })?,
        },
    };
    let criteria = gfr::dataset::Criteria {
        min_val_evr,
        max_train_loss,
    };
    let (ds, report) = run(py, None, || {
        let (cre, _) = gfr::dataset::cre_lines(metadata.as_deref())?;
        gfr::dataset::build_and_save(
            &dirs,
            &out,
            json.as_deref(),
            &cre,
            &criteria,
            overwrite,
            allow_missing,
            &arg_name,
        )
    })?;
    let d = PyDict::new(py);
    d.set_item("included", report.included)?;
    d.set_item("excluded", report.excluded)?;
    d.set_item("unreadable", report.unreadable.clone())?;
    d.set_item("partial", report.partial.clone())?;
    d.set_item("duplicates", report.duplicates.clone())?;
    d.set_item("missing_shards", report.missing_shards.clone())?;
    let pairs = PyDict::new(py);
    for (pair, recs) in &ds.pairs {
        pairs.set_item(*pair, recs.len())?;
    }
    d.set_item("pairs", pairs)?;
    Ok(d)
}

/// The GFR neuron of a cell in a dataset pickle (the seed's `load_gfr_model`).
#[pyfunction]
#[pyo3(signature = (dataset, cell_id, bin_size=20, activation_bin_size=20))]
fn load_gfr_model(
    py: Python<'_>,
    dataset: PathBuf,
    cell_id: u64,
    bin_size: u32,
    activation_bin_size: u32,
) -> PyResult<Neuron> {
    let params = run(py, None, || {
        let ds = gfr::Dataset::load(&dataset)?;
        let r = ds
            .record(cell_id, bin_size, activation_bin_size)
            .map_err(|e| gfr::error::invalid(format!("{e:#}")))?;
        Ok(r.params.clone())
    })?;
    Ok(Neuron { params })
}

/// Trains a recurrent network of GFR neurons (or an RNN / LSTM baseline) on line-by-line
/// MNIST (as `gfr network`); keyword names are the CLI's flag names with `_`, defaults the
/// CLI's. `bio_pair` is a (bin_size, activation_bin_size) tuple or "20/20".
///
/// Returns the run's JSON as a dict (history per epoch, final accuracies, settings) with
/// `json_path` and `weights_path` added; None when `resume=True` finds the run complete.
/// Ctrl-C stops within about a second (KeyboardInterrupt); `resume=True` goes on from the
/// last whole epoch.
#[pyfunction]
#[pyo3(signature = (*, lr=1e-3, lr_schedule="anneal", epochs=30, batch_size=64, n_nodes=128, freeze_neurons=false, freeze_activations=false, neurons="default", dataset=PathBuf::from("model/gfr_dataset.pickle"), bio_pair=None, bio_input="relative", bio_units=None, shuffle_neurons=false, model="gfr", mnist_dir=PathBuf::from("data/mnist"), history_scale=gfr::network::HISTORY_SCALE, diagnose=false, offline=false, train_limit=None, test_limit=None, device="cpu", seed=0, save_dir=PathBuf::from("model/network_params"), resume=false, overwrite=false, progress=true))]
#[allow(clippy::too_many_arguments)]
fn run_network<'py>(
    py: Python<'py>,
    lr: f64,
    lr_schedule: &str,
    epochs: usize,
    batch_size: usize,
    n_nodes: usize,
    freeze_neurons: bool,
    freeze_activations: bool,
    neurons: &str,
    dataset: PathBuf,
    bio_pair: Option<&Bound<'py, PyAny>>,
    bio_input: &str,
    bio_units: Option<&str>,
    shuffle_neurons: bool,
    model: &str,
    mnist_dir: PathBuf,
    history_scale: f64,
    diagnose: bool,
    offline: bool,
    train_limit: Option<usize>,
    test_limit: Option<usize>,
    device: &str,
    seed: u64,
    save_dir: PathBuf,
    resume: bool,
    overwrite: bool,
    progress: bool,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    use gfr::network::{NetworkSpec, NeuronSource};
    let pair = match bio_pair.filter(|p| !p.is_none()) {
        None => (20, 20),
        Some(p) => match p.extract::<(u32, u32)>() {
            Ok(t) => t,
            Err(_) => {
                let s: String = p.extract().map_err(|_| {
                    PyValueError::new_err(
                        "bio_pair: expected (bin_size, activation_bin_size) or \"20/20\"",
                    )
                })?;
                let parsed = s
                    .split_once('/')
                    .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                parsed.ok_or_else(|| {
                    PyValueError::new_err(format!(
                        "bio_pair `{s}`: expected BIN/ACTIVATION_BIN, e.g. 20/20"
                    ))
                })?
            }
        },
    };
    let bio_input = choice(bio_input, "bio_input", "relative, published")?;
    let bio_units = bio_units
        .map(|s| choice(s, "bio_units", "relative, physical"))
        .transpose()?;
    let bio_units =
        gfr::network::bio_units_for(bio_units, bio_input, &arg_name).map_err(to_py_err)?;
    let neurons = match neurons {
        "default" => NeuronSource::Default,
        "bio" => NeuronSource::Biological { dataset, pair },
        file => NeuronSource::File {
            path: PathBuf::from(file),
            shuffle: shuffle_neurons,
        },
    };
    let spec = NetworkSpec {
        lr,
        lr_schedule: choice(lr_schedule, "lr_schedule", "anneal, constant")?,
        epochs,
        batch_size,
        n_nodes,
        freeze_neurons,
        freeze_activations,
        neurons,
        bio_input,
        bio_units,
        model: choice(model, "model", "gfr, rnn, lstm")?,
        history_scale,
        mnist_dir,
        offline,
        train_limit,
        test_limit,
        device: choice(device, "device", "cpu, wgpu")?,
        seed,
        save_dir,
        resume,
        overwrite,
        diagnose,
    };
    spec.check(&arg_name).map_err(to_py_err)?;
    let watch = Watch::new(progress);
    let saved = run(py, Some(&watch), || {
        let obs = NetworkWatch {
            watch: &watch,
            state: Mutex::new((0, 0, 0, 0)),
        };
        let Some(saved) = gfr::run_network(&spec, &obs)? else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&saved.json)?;
        Ok(Some((saved, text)))
    })?;
    let Some((saved, text)) = saved else {
        return Ok(None);
    };
    let run = from_json(py, &text)?;
    run.set_item("json_path", saved.json.display().to_string())?;
    run.set_item("weights_path", saved.weights.display().to_string())?;
    Ok(Some(run))
}

/// gfr: Generalized Firing Rate neurons (the Rust core; `import gfr` is the interface).
#[pymodule]
fn _gfr(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(detect_spikes, m)?)?;
    m.add_function(wrap_pyfunction!(read_nwb, m)?)?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(preprocess, m)?)?;
    m.add_function(wrap_pyfunction!(fit, m)?)?;
    m.add_function(wrap_pyfunction!(_dataset_records, m)?)?;
    m.add_function(wrap_pyfunction!(build_dataset, m)?)?;
    m.add_function(wrap_pyfunction!(load_gfr_model, m)?)?;
    m.add_function(wrap_pyfunction!(run_network, m)?)?;
    m.add_class::<Neuron>()?;
    Ok(())
}
