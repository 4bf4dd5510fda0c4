//! Fitting one GFR neuron per cell (spec §3): activation first, then the filters, selected by
//! validation EVR; results saved per cell with the published keys.

mod activation;
mod config;
mod cube;
mod evr;
mod filters;
mod fused;
pub mod store;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use rand::SeedableRng;
use serde::Serialize;

pub use activation::{
    ACTIVATION_LR, ActivationData, FALLBACK_ACTIVATION_BIN, FIRING_THRESHOLD, fit_activation,
    fit_activations, initial_activation,
};
pub use config::{FitConfig, RunConfig};
pub use evr::{explained_variance, explained_variance_ratio};
pub use filters::{FitData, Repeats, RunResult, RunSettings, batch_loss, train_run, train_runs};
pub use store::{pair_dir, pair_dir_name, summary_name};

/// A cell's random stream (activation restarts, the order of training groups): ChaCha12, the
/// algorithm of rand's `StdRng`, whose position can be saved with a partial result and restored
/// by `gfr fit --resume`.
pub type CellRng = rand_chacha::ChaCha12Rng;

use crate::data::pickle::{
    PyValue, PyValueExt, dict, float_list, int, read_pickle, write_atomic, write_pickle,
};
use crate::data::{CellRecording, DataDir};
use crate::neuron::{BIN_SIZES, NeuronParams};

/// Cells fitted together by default on the CPU: batching changes no result (bit for bit) and
/// saves about 40% of the time (`gfr bench`).
pub const DEFAULT_BATCH_CELLS: usize = 16;

/// Cells fitted together by default on a GPU (wgpu; results equal up to float rounding): a
/// step's time hardly grows with its cells until the GPU is full, so thousands go together.
pub const DEFAULT_BATCH_CELLS_GPU: usize = 2500;

/// `--batch-cells` when not given: [`DEFAULT_BATCH_CELLS`] on the CPU,
/// [`DEFAULT_BATCH_CELLS_GPU`] on wgpu.
pub fn default_batch_cells(backend: crate::Backend) -> usize {
    match backend {
        crate::Backend::Cpu => DEFAULT_BATCH_CELLS,
        crate::Backend::Wgpu => DEFAULT_BATCH_CELLS_GPU,
    }
}

/// Largest polynomial degree d accepted by `--degree`.
pub const MAX_DEGREE: usize = 10;

/// Activation bin sizes accepted by `--activation-bin-size`.
pub const ACTIVATION_BIN_SIZES: [u32; 4] = [10, 20, 50, 100];

/// A cell's fit as saved in `SAVE_PATH/bin{B}_actv{A}/{id}.pickle`.
#[derive(Clone, Debug)]
pub struct FitResult {
    /// The fitted neuron (the run with the best validation EVR).
    pub params: NeuronParams,
    /// Validation EVR (Noise 1).
    pub evr1: f64,
    /// Test EVR (Noise 2).
    pub evr2: f64,
    /// Train loss per valid bin, each epoch (gfr's loss; padded bins do not count).
    pub train_losses: Vec<f64>,
    /// Test (Noise 2) loss per valid bin, each epoch.
    pub test_losses: Vec<f64>,
    /// Model bin size Δt (ms).
    pub bin_size: u32,
    /// Final train loss averaged over the padded length, as the published code computed it
    /// (pickle key `train_loss_padded`; the dataset criteria use it). `None` in results saved
    /// before gfr recorded it.
    pub train_loss_padded: Option<f64>,
    /// How the result was made (config, hash, activation bin asked for, partial state).
    pub meta: FitMeta,
}

/// How a result was made (absent in results of earlier versions and of the published code).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FitMeta {
    /// `config_name` of the fitting config.
    pub config_name: Option<String>,
    /// [`FitOptions::config_hash`]: config, degree, C, seed and bin sizes.
    pub config_hash: Option<String>,
    /// `--activation-bin-size` asked for (ms); `params.g.bin_size` is the one used, which
    /// differs when the 100 ms activation fallback was taken.
    pub actv_bin_size_requested: Option<u32>,
    /// Set in a result saved between the runs of a fit: the best of the runs done so far. A
    /// complete result of the same config replaces it even at an equal EVR, and
    /// `gfr fit --resume` goes on from it.
    pub partial: Option<Partial>,
}

/// How far a fit had got when its partial result was saved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partial {
    /// Runs (entries of `hparams`) done.
    pub runs_done: usize,
    /// Position of the cell's random stream ([`CellRng`]) after them, in 32-bit words.
    pub rng_word_pos: u128,
}

impl FitResult {
    /// A result whose histories hold only a final loss (train = test = padded = `loss`), as
    /// records imported from elsewhere or built by hand carry.
    pub fn with_final_loss(params: NeuronParams, evr1: f64, evr2: f64, loss: f64) -> Self {
        Self {
            bin_size: params.bin_size,
            params,
            evr1,
            evr2,
            train_losses: vec![loss],
            test_losses: vec![loss],
            train_loss_padded: Some(loss),
            meta: FitMeta::default(),
        }
    }

    /// The result as the pickled dict (the published keys, plus gfr's metadata keys).
    pub fn to_py(&self) -> PyValue {
        let mut v = dict([
            ("params", self.params.to_py()),
            ("evr1", PyValue::F64(self.evr1)),
            ("evr2", PyValue::F64(self.evr2)),
            ("train_losses", float_list(&self.train_losses)),
            ("test_losses", float_list(&self.test_losses)),
            ("bin_size", int(self.bin_size as i64)),
            (
                "train_loss_padded",
                PyValue::F64(self.train_loss_padded.unwrap_or(f64::NAN)),
            ),
        ]);
        if let PyValue::Dict(d) = &mut v {
            let m = &self.meta;
            let mut put = |k: &str, x: PyValue| {
                d.insert(serde_pickle::HashableValue::String(k.into()), x);
            };
            if let Some(n) = &m.config_name {
                put("config_name", PyValue::String(n.clone()));
            }
            if let Some(h) = &m.config_hash {
                put("config_hash", PyValue::String(h.clone()));
            }
            if let Some(a) = m.actv_bin_size_requested {
                put("actv_bin_size_requested", int(a as i64));
            }
            if let Some(p) = m.partial {
                put("partial_runs_done", int(p.runs_done as i64));
                // a decimal string: the position can exceed 64 bits
                put(
                    "partial_rng_word_pos",
                    PyValue::String(p.rng_word_pos.to_string()),
                );
            }
        }
        v
    }

    /// Reads a result from its pickled dict; errors name the field.
    pub fn from_py(v: &PyValue) -> Result<Self> {
        Ok(Self {
            params: NeuronParams::from_py(v.get("params")?).context("in field `params`")?,
            evr1: v.get("evr1")?.as_f64().context("field `evr1`")?,
            evr2: v.get("evr2")?.as_f64().context("field `evr2`")?,
            train_losses: v
                .get("train_losses")?
                .floats_flat()
                .context("field `train_losses`")?,
            test_losses: v
                .get("test_losses")?
                .floats_flat()
                .context("field `test_losses`")?,
            bin_size: v.get("bin_size")?.as_u32().context("field `bin_size`")?,
            train_loss_padded: match v.get_opt("train_loss_padded") {
                Some(x) => {
                    Some(x.as_f64().context("field `train_loss_padded`")?).filter(|x| x.is_finite())
                }
                None => None,
            },
            meta: FitMeta {
                config_name: v
                    .get_opt("config_name")
                    .and_then(|x| x.as_str().ok())
                    .map(String::from),
                config_hash: v
                    .get_opt("config_hash")
                    .and_then(|x| x.as_str().ok())
                    .map(String::from),
                actv_bin_size_requested: match v.get_opt("actv_bin_size_requested") {
                    Some(x) => Some(x.as_u32().context("field `actv_bin_size_requested`")?),
                    None => None,
                },
                partial: match v.get_opt("partial_runs_done") {
                    Some(x) => Some(Partial {
                        runs_done: x.as_u32().context("field `partial_runs_done`")? as usize,
                        rng_word_pos: v
                            .get("partial_rng_word_pos")?
                            .as_str()
                            .ok()
                            .and_then(|t| t.parse().ok())
                            .context("field `partial_rng_word_pos` (a decimal string)")?,
                    }),
                    None => None,
                },
            },
        })
    }

    /// The (bin size, activation bin size) pair the result is filed under: the activation bin
    /// size asked for (older results: the one recorded in `g`).
    pub fn pair(&self) -> (u32, u32) {
        let used = self.params.activation.bin_size;
        (
            self.bin_size,
            self.meta.actv_bin_size_requested.unwrap_or(used),
        )
    }

    /// The activation bin size actually used when it differs from the one asked for (the
    /// 100 ms fallback).
    pub fn activation_fallback(&self) -> Option<u32> {
        let used = self.params.activation.bin_size;
        (self.pair().1 != used).then_some(used)
    }

    /// Reads a result pickle; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_py(&read_pickle(path)?)
            .with_context(|| format!("{} is not a GFR fit result", path.display()))
    }

    /// Writes the result pickle (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        write_pickle(path, &self.to_py())
    }

    /// The last epoch's train loss per valid bin; NaN if there is none.
    pub fn final_train_loss(&self) -> f64 {
        self.train_losses.last().copied().unwrap_or(f64::NAN)
    }
}

/// Everything `gfr fit` needs besides the cell ids.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Model bin size Δt (ms): 10, 20, 50 or 100.
    pub bin_size: u32,
    /// Bin size of the activation fit Δt' (ms): 20 or 100 (also 10, 50).
    pub activation_bin_size: u32,
    /// Degree d of the activation polynomial (1 to [`MAX_DEGREE`]).
    pub degree: usize,
    /// L1 weight C.
    pub l1: f64,
    /// Root folder of the results (`SAVE_PATH`); each pair has its `bin{B}_actv{A}/` folder.
    pub save_path: PathBuf,
    /// The fitting config (epochs, restarts, `hparams`, …).
    pub config: FitConfig,
    /// Where the processed data are read from.
    pub data_dir: DataDir,
    /// Device the fit runs on.
    pub device: Device,
    /// Base seed; each cell's random stream is seeded from it and the cell id.
    pub seed: u64,
    /// Cells fitted together in one batched model (`--batch-cells`); 1 = one at a time.
    pub batch_cells: usize,
    /// Skip cells whose saved result (this pair) was made with this config (`--resume`).
    pub resume: bool,
    /// Shard K of N (`--shard K/N`): names the summary file.
    pub shard: Option<(usize, usize)>,
}

impl FitOptions {
    /// Options at the seed's defaults: bin 20 ms, activation bin 20 ms, degree 1, C = 0, seed 0.
    pub fn new(data_dir: DataDir, save_path: PathBuf, config: FitConfig, device: Device) -> Self {
        Self {
            bin_size: 20,
            activation_bin_size: 20,
            degree: 1,
            l1: 0.0,
            save_path,
            config,
            data_dir,
            device,
            seed: 0,
            batch_cells: 1,
            resume: false,
            shard: None,
        }
    }

    /// Checks every setting; an error names the setting as `name` gives it (the field name
    /// with `&|f| f.to_string()`, a flag in the CLI).
    pub fn check(&self, name: &dyn Fn(&str) -> String) -> Result<()> {
        self.check_settings(name)
            .map_err(|e| crate::error::invalid(format!("{e:#}")))
    }

    fn check_settings(&self, name: &dyn Fn(&str) -> String) -> Result<()> {
        Self::check_bins(self.bin_size, self.activation_bin_size, self.l1, name)?;
        if !(1..=MAX_DEGREE).contains(&self.degree) {
            bail!(
                "{} {}: must be between 1 and {MAX_DEGREE} (the published fits use 1)",
                name("degree"),
                self.degree
            );
        }
        if self.batch_cells == 0 {
            bail!(
                "{} 0: must be at least 1 (1 fits one cell at a time)",
                name("batch_cells")
            );
        }
        self.config.check()
    }

    /// Checks `bin_size`, `activation_bin_size` and `l1` (named as in [`FitOptions::check`]);
    /// errors are [`crate::error::Invalid`].
    pub fn check_bins(
        bin_size: u32,
        activation_bin_size: u32,
        l1: f64,
        name: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        if !BIN_SIZES.contains(&bin_size) {
            return Err(crate::error::invalid(format!(
                "{} {bin_size}: allowed values are 10, 20, 50, 100",
                name("bin_size")
            )));
        }
        if !ACTIVATION_BIN_SIZES.contains(&activation_bin_size) {
            return Err(crate::error::invalid(format!(
                "{} {activation_bin_size}: allowed values are 20, 100 (also 10, 50)",
                name("activation_bin_size")
            )));
        }
        if !(l1 >= 0.0 && l1.is_finite()) {
            return Err(crate::error::invalid(format!(
                "{} {l1}: must be a non-negative number",
                name("l1")
            )));
        }
        Ok(())
    }

    /// Checks that the data folder holds processed data: one clear error (not found) for a
    /// mistyped data folder instead of one per cell.
    pub fn check_data_dir(&self, name: &dyn Fn(&str) -> String) -> Result<()> {
        let processed = self.data_dir.0.join("processed_data");
        if !processed.is_dir() {
            return Err(anyhow::Error::new(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} {}: {} is not a folder (`gfr preprocess` or `gfr simulate` writes it)",
                    name("data_dir"),
                    self.data_dir.0.display(),
                    processed.display()
                ),
            )));
        }
        Ok(())
    }

    /// `SAVE_PATH/bin{B}_actv{A}`: this run's results and summary.
    pub fn pair_dir(&self) -> PathBuf {
        pair_dir(&self.save_path, self.bin_size, self.activation_bin_size)
    }

    /// `SAVE_PATH/bin{B}_actv{A}/{id}.pickle`.
    pub fn result_path(&self, cell_id: u64) -> PathBuf {
        self.pair_dir().join(format!("{cell_id}.pickle"))
    }

    /// Identifies what determines a fit (config without `retrain_model`, degree, C, seed, bin
    /// sizes): a stable 16-hex-digit hash recorded in each result, for `--resume`.
    pub fn config_hash(&self) -> String {
        let cfg = FitConfig {
            retrain_model: true,
            ..self.config.clone()
        };
        let text = format!(
            "{}|degree={}|C={:e}|seed={}|bin={}|actv={}",
            serde_json::to_string(&cfg).unwrap_or_default(),
            self.degree,
            self.l1,
            self.seed,
            self.bin_size,
            self.activation_bin_size
        );
        store::fnv_hex(text.as_bytes())
    }

    fn meta(&self) -> FitMeta {
        FitMeta {
            config_name: Some(self.config.config_name.clone()),
            config_hash: Some(self.config_hash()),
            actv_bin_size_requested: Some(self.activation_bin_size),
            partial: None,
        }
    }
}

/// What a fit did with one cell (written as "saved", "kept-previous", "skipped", "failed").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CellStatus {
    /// A new result was written.
    Saved,
    /// A new result was made, but the saved one was at least as good and stays.
    KeptPrevious,
    /// Nothing fitted: a saved result stands (`--resume`, `retrain_model: false`) or the cell
    /// cannot give a neuron.
    Skipped,
    /// The fit or the write failed.
    Failed,
}

impl CellStatus {
    /// The written form: "saved", "kept-previous", "skipped" or "failed".
    pub fn as_str(self) -> &'static str {
        match self {
            CellStatus::Saved => "saved",
            CellStatus::KeptPrevious => "kept-previous",
            CellStatus::Skipped => "skipped",
            CellStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for CellStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `status == "saved"`: the written form.
impl PartialEq<&str> for CellStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What happened to one cell.
#[derive(Clone, Debug, Serialize)]
pub struct CellReport {
    /// The cell's id.
    pub cell_id: u64,
    /// What was done with the cell.
    pub status: CellStatus,
    /// Validation EVR (Noise 1) of the new result, or of the saved one for a skipped cell; None
    /// when nothing was fitted.
    pub val_evr: Option<f64>,
    /// Test EVR (Noise 2), likewise.
    pub test_evr: Option<f64>,
    /// Final train loss per valid bin, likewise.
    pub train_loss: Option<f64>,
    /// Fit time of the cell (s): its batch's time divided by the batch's cells.
    pub seconds: f64,
    /// The result's path when saved; otherwise why it was kept, skipped or failed.
    pub message: String,
    /// Activation bin size used (ms) when the 100 ms fallback replaced the one asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activation_fallback: Option<u32>,
}

/// Progress callbacks of a fit (no-ops by default); the command line draws its progress bars
/// through them.
pub trait FitProgress {
    /// A stage of the batch starts (e.g. "activation").
    fn stage(&self, _msg: &str) {}
    /// A remark about one cell (or the run), worth a line of its own.
    fn note(&self, _msg: &str) {}
    /// Run `run` (0-based) of `runs` (the `hparams` entries) starts, with `epochs` epochs.
    fn run_started(&self, _run: usize, _runs: usize, _epochs: usize) {}
    /// Epoch `epoch` (0-based) of the run ended; `train_loss` is the mean per-bin train loss of the
    /// cells still running.
    fn epoch(&self, _epoch: usize, _train_loss: f64) {}
    /// [`fit_cells`]: a batch of cells starts.
    fn batch_started(&self, _cells: &[u64]) {}
    /// [`fit_cells`]: a cell is done (saved, kept, skipped or failed).
    fn cell_done(&self, _report: &CellReport) {}
    /// [`fit_cells`]: every cell is done.
    fn finished(&self) {}
    /// How errors name the [`FitOptions`] field `field` (e.g. `bin_size`): the field name by
    /// default; `gfr fit` names its flag.
    fn setting(&self, field: &str) -> String {
        field.to_string()
    }
    /// Whether the caller wants the fit to stop (asked after every epoch): the run under way
    /// is dropped, results saved before are kept, and [`fit_cells`] returns
    /// [`crate::error::Interrupted`]. Never, by default.
    fn cancelled(&self) -> bool {
        false
    }
}

impl FitProgress for () {}

/// A cell ready for the filter fit: its grouped data, starting neuron and random stream.
struct PreparedCell {
    data: FitData,
    start: NeuronParams,
    rng: CellRng,
    /// Runs already done (a partial result resumed) and the best of them.
    done: usize,
    best: Option<RunResult>,
}

/// Where a cell's filter fit starts: a saved neuron (finetune) or a fresh activation fit.
enum Start {
    Saved(NeuronParams),
    FitActivation { data: ActivationData, max_rate: f64 },
}

/// A loaded cell before its activation fit.
struct LoadedCell {
    data: FitData,
    start: Start,
    rng: CellRng,
}

/// Groups a cell's data and decides where its fit starts.
fn load_cell(
    cell: &CellRecording,
    opts: &FitOptions,
    previous: Option<&FitResult>,
    progress: &dyn FitProgress,
) -> Result<LoadedCell, CellError> {
    let cfg = &opts.config;
    let data =
        FitData::from_cell(cell, opts.bin_size).map_err(|e| CellError::Skip(format!("{e:#}")))?;
    if data.train.is_empty() {
        return Err(CellError::Skip(
            "no training sweeps (Long Square, Ramp, Noise 1)".into(),
        ));
    }
    let rng = CellRng::seed_from_u64(opts.seed ^ cell.cell_id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let saved = previous.filter(|p| cfg.finetune && p.params.bin_size == opts.bin_size);
    // a saved neuron of another degree or other decay rates cannot share the batch's layer
    let saved = saved.filter(|p| {
        let fits = p.params.activation.poly_coeff.len() == opts.degree + 1
            && p.params.lambda == crate::neuron::decay_rates(opts.bin_size);
        if !fits {
            progress.note(&format!(
                "cell {}: the saved neuron (degree {}, {} filters) does not match {} {} at {} ms; not finetuned, fitted afresh",
                cell.cell_id,
                p.params.activation.poly_coeff.len().saturating_sub(1),
                p.params.lambda.len(),
                progress.setting("degree"),
                opts.degree,
                opts.bin_size
            ));
        }
        fits
    });
    let start = match saved {
        Some(prev) => Start::Saved(prev.params.clone()),
        None => Start::FitActivation {
            data: activation_data(
                cell,
                opts.activation_bin_size,
                cfg.activation_fallback,
                progress,
            )?,
            max_rate: cell.max_firing_rate,
        },
    };
    Ok(LoadedCell { data, start, rng })
}

/// Fits the activations of the loaded cells together (one row per restart of each cell).
fn prepare_cells(
    mut cells: Vec<LoadedCell>,
    opts: &FitOptions,
    progress: &dyn FitProgress,
) -> Vec<Result<PreparedCell, CellError>> {
    let cfg = &opts.config;
    let mut problems: Vec<(&ActivationData, f64, &mut CellRng)> = Vec::new();
    for cell in cells.iter_mut() {
        if let Start::FitActivation { data, max_rate } = &cell.start {
            problems.push((data, *max_rate, &mut cell.rng));
        }
    }
    if !problems.is_empty() {
        progress.stage("activation");
    }
    let mut fitted = fit_activations(
        &mut problems,
        opts.degree,
        cfg.activation_epochs,
        cfg.activation_repeats,
        cfg.activation_lr,
        cfg.eps,
        &opts.device,
        &|| progress.cancelled(),
    )
    .into_iter();
    cells
        .into_iter()
        .map(|cell| {
            let start = match cell.start {
                Start::Saved(p) => p,
                Start::FitActivation { .. } => {
                    let (g, _) = fitted
                        .next()
                        .expect("one activation per cell")
                        .map_err(|e| match crate::error::kind(&e) {
                            crate::error::ErrorKind::Interrupted => CellError::Interrupted,
                            _ => CellError::Fail(e.to_string()),
                        })?;
                    NeuronParams::initial(opts.bin_size, g)
                }
            };
            Ok(PreparedCell {
                data: cell.data,
                start,
                rng: cell.rng,
                done: 0,
                best: None,
            })
        })
        .collect()
}

/// Runs every config run on a batch of prepared cells (same number of training groups, same
/// runs already done) and keeps, per cell, the run with the best validation EVR. After each
/// run but the last, `checkpoint(c, partial)` gets cell c's best so far, marked partial.
fn fit_prepared(
    cells: &mut [PreparedCell],
    opts: &FitOptions,
    progress: &dyn FitProgress,
    checkpoint: &mut dyn FnMut(usize, FitResult),
) -> Vec<Result<FitResult, CellError>> {
    let cfg = &opts.config;
    let settings = RunSettings {
        eps: cfg.eps,
        l1: opts.l1,
        train_activation: !cfg.freeze_activation,
    };
    let runs = cfg.hparams.len();
    let done = cells.first().map_or(0, |c| c.done);
    debug_assert!(cells.iter().all(|c| c.done == done));
    let mut best: Vec<Option<RunResult>> = cells.iter_mut().map(|c| c.best.take()).collect();
    for (i, run) in cfg.hparams.iter().enumerate().skip(done) {
        progress.run_started(i, runs, run.epochs);
        let inits: Vec<NeuronParams> = cells
            .iter()
            .zip(&best)
            .map(|(c, b)| match b {
                Some(b) if run.from_best => b.params.clone(),
                _ => c.start.clone(),
            })
            .collect();
        let data: Vec<&FitData> = cells.iter().map(|c| &c.data).collect();
        let mut rngs: Vec<CellRng> = cells.iter().map(|c| c.rng.clone()).collect();
        let settings = RunSettings {
            train_activation: run.train_activation.unwrap_or(settings.train_activation),
            ..settings.clone()
        };
        let results = train_runs(
            &inits,
            &data,
            run,
            &settings,
            &opts.device,
            &mut rngs,
            |e, l| {
                progress.epoch(e, l);
                !progress.cancelled()
            },
        );
        if progress.cancelled() {
            // the run did not end: nothing of it is kept (the checkpoints before it stand)
            return cells.iter().map(|_| Err(CellError::Interrupted)).collect();
        }
        for (c, (r, rng)) in results.into_iter().zip(rngs).enumerate() {
            cells[c].rng = rng;
            if let Some(r) = r
                && best[c]
                    .as_ref()
                    .is_none_or(|b| better(r.evr1, b.evr1 + run.min_gain))
            {
                best[c] = Some(r);
            }
        }
        if i + 1 < runs {
            let partials: Vec<(usize, RunResult, Partial)> = best
                .iter()
                .enumerate()
                .filter_map(|(c, b)| {
                    let b = b.as_ref().filter(|b| b.evr1.is_finite())?;
                    let partial = Partial {
                        runs_done: i + 1,
                        rng_word_pos: cells[c].rng.get_word_pos(),
                    };
                    Some((c, b.clone(), partial))
                })
                .collect();
            let cells = &*cells;
            let partials = on_cores(partials, |(c, b, partial)| {
                (c, result_of_run(b, &cells[c].data, opts, Some(partial)))
            });
            for (c, result) in partials {
                checkpoint(c, result);
            }
        }
    }
    let cells = &*cells;
    on_cores(best.into_iter().zip(cells).collect(), |(b, cell)| {
        let best = b.ok_or_else(|| {
            CellError::Fail(format!(
                "all {runs} runs diverged (non-finite loss); nothing saved"
            ))
        })?;
        if best.evr1.is_nan() {
            return Err(CellError::Skip(
                    "validation EVR is NaN in every run (Noise 1 has no explainable variance); nothing saved".into(),
                ));
        }
        Ok(result_of_run(best, &cell.data, opts, None))
    })
}

/// `items.map(f)` on the cores, each item's scans on its own core: for the host work on each
/// cell of a batch (EVRs, the padded train loss), which adds up over a GPU's thousands.
pub(crate) fn on_cores<T: Send, U: Send>(items: Vec<T>, f: impl Fn(T) -> U + Sync) -> Vec<U> {
    crate::parallel::map_on_cores(items, |item| crate::scan::cpu::serial(|| f(item)))
}

/// A cell's result from its best run: the test EVR and the padded train loss computed.
fn result_of_run(
    best: RunResult,
    data: &FitData,
    opts: &FitOptions,
    partial: Option<Partial>,
) -> FitResult {
    FitResult {
        evr1: best.evr1,
        evr2: data.test.evr(&best.params),
        train_loss_padded: Some(data.padded_train_loss(&best.params, opts.config.eps))
            .filter(|x| x.is_finite()),
        params: best.params,
        train_losses: best.train_losses,
        test_losses: best.test_losses,
        bin_size: opts.bin_size,
        meta: FitMeta {
            partial,
            ..opts.meta()
        },
    }
}

/// Fits one cell and returns its result, or why it was skipped / failed.
pub fn fit_cell_result(
    cell: &CellRecording,
    opts: &FitOptions,
    previous: Option<&FitResult>,
    progress: &dyn FitProgress,
) -> Result<FitResult, CellError> {
    let loaded = load_cell(cell, opts, previous, progress)?;
    let prepared = prepare_cells(vec![loaded], opts, progress).remove(0)?;
    fit_prepared(&mut [prepared], opts, progress, &mut |_, _| {}).remove(0)
}

/// The activation-fit points at `bin` ms. When no Long Square fires within its first bin
/// (a first-spike latency longer than the bin), the data carry no f-I information and the
/// fit would give a neuron that never fires; then, with `fallback`, the first 100 ms bin is
/// used instead (the result records the bin size it was fitted at).
fn activation_data(
    cell: &CellRecording,
    bin: u32,
    fallback: bool,
    progress: &dyn FitProgress,
) -> Result<ActivationData, CellError> {
    let fires = |d: &ActivationData| d.rate.iter().any(|&y| y > FIRING_THRESHOLD);
    let data = ActivationData::from_cell(cell, bin).map_err(|e| CellError::Skip(e.to_string()))?;
    if data.current.iter().all(|&x| x == 0.0) {
        return Err(CellError::Skip(format!(
            "every Long Square has 0 pA in its first {bin} ms bin: no f-I curve to fit"
        )));
    }
    if fallback
        && !fires(&data)
        && bin < FALLBACK_ACTIVATION_BIN
        && let Ok(wide) = ActivationData::from_cell(cell, FALLBACK_ACTIVATION_BIN)
        && fires(&wide)
    {
        progress.note(&format!(
            "cell {}: no Long Square fires in its first {bin} ms; activation fitted at {FALLBACK_ACTIVATION_BIN} ms",
            cell.cell_id
        ));
        return Ok(wide);
    }
    Ok(data)
}

/// `a` beats `b` as a validation EVR (NaN never wins).
fn better(a: f64, b: f64) -> bool {
    !a.is_nan() && (b.is_nan() || a > b)
}

/// Why a cell produced no new result.
#[derive(Debug)]
pub enum CellError {
    /// The cell cannot give a neuron (the reason); nothing is saved.
    Skip(String),
    /// The fit failed (the reason).
    Fail(String),
    /// The caller stopped the fit ([`FitProgress::cancelled`]); nothing new is saved.
    Interrupted,
}

impl std::fmt::Display for CellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CellError::Skip(m) => write!(f, "skipped: {m}"),
            CellError::Fail(m) => write!(f, "failed: {m}"),
            CellError::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for CellError {}

/// Loads, fits and saves one cell, never replacing a saved result with a worse one.
pub fn fit_and_save(cell_id: u64, opts: &FitOptions, progress: &dyn FitProgress) -> CellReport {
    fit_and_save_batch(&[cell_id], opts, progress).remove(0)
}

/// What [`save_if_better`] did.
#[derive(Clone, Debug, PartialEq)]
pub enum SaveOutcome {
    /// The new result was written.
    Written,
    /// The saved result's evr1, at least as high as the new one's; it was kept.
    KeptSaved(f64),
}

/// Writes `new` to `path` unless the result saved there (read now, under the folder's lock)
/// has an evr1 at least as high: whichever of several overlapping runs writes last, the best
/// result survives. At an equal evr1 a result further along replaces a partial one (the same
/// best run after more runs, or final). An unreadable saved file is replaced.
pub fn save_if_better(path: &Path, new: &FitResult) -> Result<SaveOutcome> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let _lock = store::FolderLock::acquire(dir)?;
    let runs_done = |r: &FitResult| r.meta.partial.map_or(usize::MAX, |p| p.runs_done);
    if path.exists()
        && let Ok(saved) = FitResult::load(path)
        && !better(new.evr1, saved.evr1)
        && !(new.evr1 == saved.evr1 && runs_done(new) > runs_done(&saved))
    {
        return Ok(SaveOutcome::KeptSaved(saved.evr1));
    }
    new.save(path)?;
    Ok(SaveOutcome::Written)
}

/// Recordings read on the cores at a time.
const LOAD_CHUNK: usize = 64;

/// Loads, fits (together, in one batched model) and saves a batch of cells; never replaces a
/// saved result with a worse one. Each cell is saved as soon as the runs of its group end.
/// A cell's `seconds` is the batch's time divided among its cells.
pub fn fit_and_save_batch(
    cell_ids: &[u64],
    opts: &FitOptions,
    progress: &dyn FitProgress,
) -> Vec<CellReport> {
    let t0 = Instant::now();
    let report =
        |cell_id: u64, status: CellStatus, r: Option<&FitResult>, message: String| CellReport {
            cell_id,
            status,
            val_evr: r.map(|r| r.evr1),
            test_evr: r.map(|r| r.evr2),
            train_loss: r.map(FitResult::final_train_loss),
            seconds: 0.0,
            message,
            activation_fallback: r.and_then(FitResult::activation_fallback),
        };
    let unfit = |cell_id: u64, e: CellError| match e {
        CellError::Skip(m) => report(cell_id, CellStatus::Skipped, None, m),
        CellError::Fail(m) => report(cell_id, CellStatus::Failed, None, m),
        CellError::Interrupted => report(cell_id, CellStatus::Failed, None, "interrupted".into()),
    };
    let hash = opts.config_hash();
    let mut reports: Vec<Option<CellReport>> = vec![None; cell_ids.len()];
    let mut previous: Vec<Option<FitResult>> = vec![None; cell_ids.len()];
    // (index, prepared cell) of the cells that go on to the filter fit, by group count and
    // runs already done
    let mut ready: std::collections::BTreeMap<(usize, usize), Vec<(usize, PreparedCell)>> =
        Default::default();
    let mut loaded: Vec<(usize, LoadedCell)> = Vec::new();
    // the partial result (of this config) each cell goes on from, if any
    let mut resume_at: Vec<Option<Partial>> = vec![None; cell_ids.len()];
    // the cells to load (the others are skipped by what is saved)
    let mut to_load: Vec<usize> = Vec::new();
    for (i, &cell_id) in cell_ids.iter().enumerate() {
        let path = opts.result_path(cell_id);
        if path.exists() {
            match FitResult::load(&path) {
                Ok(p) => previous[i] = Some(p),
                Err(e) => progress.note(&format!(
                    "cell {cell_id}: ignoring unreadable saved result: {e:#}"
                )),
            }
        }
        // a partial result of this config (a fit stopped between runs) goes on where it stopped
        if let Some(prev) = &previous[i] {
            let same_config = prev.meta.config_hash.as_deref() == Some(&hash);
            let skip = if opts.resume && same_config && prev.meta.partial.is_some() {
                if opts.config.finetune {
                    progress.note(&format!(
                        "cell {cell_id}: {} is partial; a finetuning config cannot go on from it, fitted again",
                        path.display()
                    ));
                } else {
                    resume_at[i] = prev.meta.partial;
                }
                None
            } else if opts.resume && same_config {
                Some(format!(
                    "{} was fitted with this config (`{}`, {hash}); {} skips it",
                    path.display(),
                    opts.config.config_name,
                    progress.setting("resume")
                ))
            } else if !opts.config.retrain_model {
                Some(format!(
                    "{} exists and retrain_model is false",
                    path.display()
                ))
            } else {
                None
            };
            if let Some(why) = skip {
                reports[i] = Some(report(cell_id, CellStatus::Skipped, Some(prev), why));
                continue;
            }
        }
        to_load.push(i);
    }
    // the recordings are read on the cores (reading and parsing one takes milliseconds, which
    // add up over a GPU's batch of thousands), a chunk at a time so that few are held at once
    let data_dir = &opts.data_dir;
    for chunk in to_load.chunks(LOAD_CHUNK) {
        let recordings = crate::parallel::map_on_cores(chunk.to_vec(), |i| {
            CellRecording::load(data_dir, cell_ids[i])
        });
        for (&i, recording) in chunk.iter().zip(recordings) {
            // a cell that never fires is skipped; processed data that is missing or cannot be
            // read fails the cell
            let loaded_cell = recording
                .map_err(
                    |e| match e.downcast_ref::<crate::data::processed::NeverFires>() {
                        Some(_) => CellError::Skip(format!("{e:#}")),
                        None => CellError::Fail(format!("{e:#}")),
                    },
                )
                .and_then(|cell| load_cell(&cell, opts, previous[i].as_ref(), progress));
            match loaded_cell {
                Ok(c) => loaded.push((i, c)),
                Err(e) => reports[i] = Some(unfit(cell_ids[i], e)),
            }
        }
    }
    // the activations of the whole batch are fitted together (again for a resumed cell: the
    // same fit from the same seed gives the same starting neuron)
    let (idx, cells): (Vec<usize>, Vec<LoadedCell>) = loaded.into_iter().unzip();
    for (i, prepared) in idx.into_iter().zip(prepare_cells(cells, opts, progress)) {
        let cell_id = cell_ids[i];
        match prepared {
            Ok(mut p) => {
                if let (Some(partial), Some(prev)) = (resume_at[i], previous[i].take()) {
                    progress.note(&format!(
                        "cell {cell_id}: going on from its partial result ({} of {} runs done)",
                        partial.runs_done,
                        opts.config.hparams.len()
                    ));
                    p.rng.set_word_pos(partial.rng_word_pos);
                    p.done = partial.runs_done.min(opts.config.hparams.len());
                    p.best = Some(RunResult {
                        params: prev.params,
                        train_losses: prev.train_losses,
                        test_losses: prev.test_losses,
                        evr1: prev.evr1,
                    });
                }
                ready
                    .entry((p.data.train.len(), p.done))
                    .or_default()
                    .push((i, p))
            }
            Err(e) => reports[i] = Some(unfit(cell_id, e)),
        }
    }
    for (_, group) in ready {
        let (idx, mut cells): (Vec<usize>, Vec<PreparedCell>) = group.into_iter().unzip();
        // between runs each cell's best so far is saved, marked partial: a fit killed
        // mid-batch loses at most the run in progress
        let mut checkpoint = |c: usize, partial: FitResult| {
            let cell_id = cell_ids[idx[c]];
            if let Err(e) = save_if_better(&opts.result_path(cell_id), &partial) {
                progress.note(&format!("cell {cell_id}: partial result not saved: {e:#}"));
            }
        };
        let results = fit_prepared(&mut cells, opts, progress, &mut checkpoint);
        for (&i, result) in idx.iter().zip(results) {
            let cell_id = cell_ids[i];
            let path = opts.result_path(cell_id);
            reports[i] = Some(match result {
                Ok(new) => match save_if_better(&path, &new) {
                    Ok(SaveOutcome::Written) => report(
                        cell_id,
                        CellStatus::Saved,
                        Some(&new),
                        path.display().to_string(),
                    ),
                    Ok(SaveOutcome::KeptSaved(evr1)) => report(
                        cell_id,
                        CellStatus::KeptPrevious,
                        Some(&new),
                        format!(
                            "saved result {} has evr1 {evr1:.3} ≥ new {:.3}; kept it",
                            path.display(),
                            new.evr1
                        ),
                    ),
                    Err(e) => report(cell_id, CellStatus::Failed, Some(&new), format!("{e:#}")),
                },
                Err(e) => unfit(cell_id, e),
            });
        }
    }
    let seconds = t0.elapsed().as_secs_f64() / cell_ids.len().max(1) as f64;
    reports
        .into_iter()
        .map(|r| CellReport {
            seconds,
            ..r.expect("every cell gets a report")
        })
        .collect()
}

/// Fits every cell (`opts.batch_cells` at a time), reporting through `progress`, and writes
/// the summary (`fit_summary.json`, or `fit_summary.shard-K-of-N.json`) in the pair folder
/// `SAVE_PATH/bin{B}_actv{A}`. One bad cell never stops the others; the save path is checked
/// for writing before any work, and a summary that cannot be written is a note (the reports
/// are still returned).
pub fn fit_cells(
    cell_ids: &[u64],
    opts: &FitOptions,
    progress: &dyn FitProgress,
) -> Result<Vec<CellReport>> {
    let name = |field: &str| progress.setting(field);
    opts.check(&name)?;
    let dir = opts.pair_dir();
    store::check_writable(&dir, &name("save_path"))?;
    for stale in crate::data::pickle::clean_stale_temporaries(&dir) {
        progress.note(&format!(
            "removed {}, left by a process that no longer runs",
            stale.display()
        ));
    }
    let mut reports = Vec::new();
    for chunk in cell_ids.chunks(opts.batch_cells.max(1)) {
        progress.batch_started(chunk);
        let batch = fit_and_save_batch(chunk, opts, progress);
        if progress.cancelled() {
            // no summary: `--resume` writes it, going on from what was saved
            progress.finished();
            return Err(
                anyhow::Error::new(crate::error::Interrupted).context(format!(
                    "fit stopped after {} of {} cells",
                    reports.len(),
                    cell_ids.len()
                )),
            );
        }
        for r in batch {
            progress.cell_done(&r);
            reports.push(r);
        }
    }
    progress.finished();
    let json = serde_json::to_vec_pretty(&reports)?;
    let summary = dir.join(summary_name(opts.shard));
    if let Err(e) = write_atomic(&summary, &json) {
        progress.note(&format!("warning: the summary was not saved: {e:#}"));
    }
    Ok(reports)
}

/// Every `n`-th cell starting at the `k`-th, for `shard` = `Some((k, n))` (one task of a job
/// array); all cells for `None`.
pub fn shard_cells(ids: Vec<u64>, shard: Option<(usize, usize)>) -> Vec<u64> {
    match shard {
        Some((k, n)) => ids.into_iter().skip(k).step_by(n.max(1)).collect(),
        None => ids,
    }
}

/// Whether a run over many cells succeeded: `Ok` when every cell was fitted or skipped for a
/// stated reason; a [`crate::error::SomeFailed`] error when some failed.
pub fn run_outcome(reports: &[CellReport]) -> Result<()> {
    let failed = reports
        .iter()
        .filter(|r| r.status == CellStatus::Failed)
        .count();
    if failed > 0 {
        return Err(anyhow::Error::new(crate::error::SomeFailed {
            failed,
            total: reports.len(),
        }));
    }
    Ok(())
}

/// The summary table printed after `gfr fit`.
pub fn summary_table(reports: &[CellReport]) -> String {
    let f = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.3}"));
    let mut s = format!(
        "{:>12}  {:>14}  {:>8}  {:>8}  {:>10}  {:>8}\n",
        "cell id", "status", "val EVR", "test EVR", "train loss", "seconds"
    );
    for r in reports {
        s += &format!(
            "{:>12}  {:>14}  {:>8}  {:>8}  {:>10}  {:>8.2}\n",
            r.cell_id,
            r.status,
            f(r.val_evr),
            f(r.test_evr),
            f(r.train_loss),
            r.seconds
        );
    }
    let notes: Vec<_> = reports
        .iter()
        .filter(|r| matches!(r.status, CellStatus::Skipped | CellStatus::Failed))
        .collect();
    for r in notes {
        s += &format!("  {} {}: {}\n", r.status, r.cell_id, r.message);
    }
    for r in reports {
        if let Some(used) = r.activation_fallback {
            s += &format!(
                "  note {}: activation fitted at {used} ms (100 ms fallback: no Long Square fires \
                 in its first bin); filed under the pair asked for\n",
                r.cell_id
            );
        }
    }
    let count = |st: CellStatus| reports.iter().filter(|r| r.status == st).count();
    s += &format!(
        "{} cells: {} saved, {} kept previous, {} skipped, {} failed\n",
        reports.len(),
        count(CellStatus::Saved),
        count(CellStatus::KeptPrevious),
        count(CellStatus::Skipped),
        count(CellStatus::Failed)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ProcessedSweep;
    use std::collections::BTreeMap;

    /// Library errors name the option's field; `gfr fit` passes its flag names instead.
    #[test]
    fn option_errors_name_the_setting_as_the_caller_names_it() {
        let mut opts = FitOptions::new(
            DataDir::new("d"),
            PathBuf::from("p"),
            FitConfig::builtin(),
            crate::device::cpu(),
        );
        opts.bin_size = 30;
        let field = opts.check(&|f| f.to_string()).unwrap_err().to_string();
        assert!(field.starts_with("bin_size 30: allowed values"), "{field}");
        let flag = opts.check(&|f| format!("--{}", f.replace('_', "-")));
        assert!(flag.unwrap_err().to_string().starts_with("--bin-size 30"));
        opts.bin_size = 20;
        opts.batch_cells = 0;
        let e = opts.check(&|f| f.to_string()).unwrap_err().to_string();
        assert!(e.starts_with("batch_cells 0"), "{e}");
        opts.batch_cells = 1;
        assert!(opts.check(&|f| f.to_string()).is_ok());
    }

    #[test]
    fn cell_streams_are_rands_std_stream_and_restore_from_their_position() {
        use rand::{Rng, RngCore};
        let mut std = rand::rngs::StdRng::seed_from_u64(42);
        let mut cell = CellRng::seed_from_u64(42);
        for _ in 0..1000 {
            assert_eq!(std.next_u64(), cell.next_u64());
        }
        let _: u32 = cell.random_range(0..7); // an odd number of words
        let mut restored = CellRng::seed_from_u64(42);
        restored.set_word_pos(cell.get_word_pos());
        for _ in 0..100 {
            assert_eq!(cell.next_u32(), restored.next_u32());
        }
    }

    /// A Long Square whose first spike comes after 20 ms: silent at 20 ms, firing at 100 ms.
    fn late_spiking_cell() -> CellRecording {
        let sweeps = (0..6)
            .map(|k| {
                let i = 50.0 * k as f64;
                let late = if k >= 3 { 0.02 * (k - 2) as f64 } else { 0.0 };
                ProcessedSweep {
                    stimulus_name: "Long Square".into(),
                    sampling_rate: 20_000.0,
                    current: BTreeMap::from([(20, vec![i; 5]), (100, vec![i])]),
                    firing_rate: BTreeMap::from([
                        (20, vec![0.0, late, late, late, late]),
                        (100, vec![late * 0.8]),
                    ]),
                }
            })
            .collect();
        CellRecording {
            cell_id: 1,
            sweeps,
            max_firing_rate: 0.2,
        }
    }

    #[test]
    fn silent_first_bins_fall_back_to_the_100ms_bin() {
        let cell = late_spiking_cell();
        let d = activation_data(&cell, 20, true, &()).unwrap();
        assert_eq!(d.bin_size, 100);
        assert!(d.rate.iter().any(|&y| y > 0.01));
        // a cell that fires in its first bin keeps the requested bin size
        let d = activation_data(&cell, 100, true, &()).unwrap();
        assert_eq!(d.bin_size, 100);
        // without the fallback (the published procedure) the silent 20 ms points are used
        let d = activation_data(&cell, 20, false, &()).unwrap();
        assert_eq!(d.bin_size, 20);
        assert!(d.rate.iter().all(|&y| y <= 0.01));
    }

    /// The published loss: padded bins count (the model runs on zero current there) and the
    /// sum is divided by the padded length.
    #[test]
    fn padded_train_loss_counts_padded_bins_as_published() {
        let mut cell = late_spiking_cell();
        cell.sweeps.truncate(2);
        cell.sweeps[0].current.insert(20, vec![150.0, 150.0, 150.0]);
        cell.sweeps[0].firing_rate.insert(20, vec![0.0, 0.05, 0.0]);
        let noise = |name: &str| ProcessedSweep {
            stimulus_name: name.into(),
            sampling_rate: 20_000.0,
            current: BTreeMap::from([(20, vec![120.0, 80.0, 160.0, 100.0])]),
            firing_rate: BTreeMap::from([(20, vec![0.05, 0.0, 0.1, 0.05])]),
        };
        cell.sweeps.push(noise("Noise 1"));
        cell.sweeps.push(noise("Noise 2"));
        let data = FitData::from_cell(&cell, 20).unwrap();
        let act = crate::neuron::ActivationParams {
            max_current: 200.0,
            max_firing_rate: 0.2,
            poly_coeff: vec![0.1, 1.5],
            threshold: 40.0,
            bin_size: 20,
        };
        let p = NeuronParams::initial(20, act);
        let eps = 1e-8;
        // by hand: per group, mean over sweeps of the loss over the padded length, / length
        let group = |sweeps: &[(Vec<f64>, Vec<f64>)]| {
            let t = sweeps.iter().map(|s| s.0.len()).max().unwrap();
            let pad = |v: &Vec<f64>| {
                let mut v = v.clone();
                v.resize(t, 0.0);
                v
            };
            sweeps
                .iter()
                .map(|(c, y)| {
                    crate::scan::poisson_nll(&crate::scan::predict(&p, &pad(c)), &pad(y), 20.0, eps)
                })
                .sum::<f64>()
                / sweeps.len() as f64
                / t as f64
        };
        let traces = |k: usize| {
            let (c, y) = cell.sweeps[k].traces(20).unwrap();
            (c.to_vec(), y.to_vec())
        };
        let want = (group(&[traces(0), traces(1)]) + group(&[traces(2)])) / 2.0;
        let got = data.padded_train_loss(&p, eps);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // the Long Square group has a padded bin, so the valid-bin loss differs
        let valid =
            (batch_loss(&p, &data.train[0].1, eps) + batch_loss(&p, &data.train[1].1, eps)) / 2.0;
        assert!((got - valid).abs() > 1e-6, "{got} vs {valid}");
    }
}
