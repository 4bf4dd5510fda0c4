//! Fitting the filters α, β (and optionally the activation) by backpropagation through time
//! with the fused scan and Burn's Adam (spec §3, second stage).

use crate::fit::CellRng;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;

use super::config::RunConfig;
use super::evr::explained_variance_ratio;
use crate::data::CellRecording;
use crate::neuron::{GfrLayer, NeuronParams};
use crate::scan::{self, SweepBatch};

/// Stimuli used for training; validation is on Noise 1 and testing on Noise 2.
pub const TRAIN_STIMULI: [&str; 3] = ["Long Square", "Ramp", "Noise 1"];
pub const VALIDATION_STIMULUS: &str = "Noise 1";
pub const TEST_STIMULUS: &str = "Noise 2";

/// Repeats of one stimulus: (current, rate) per repeat, at the model bin size.
#[derive(Clone, Debug)]
pub struct Repeats {
    /// Mean current per bin (pA) of each repeat.
    pub current: Vec<Vec<f64>>,
    /// Firing rate per bin (ms⁻¹) of each repeat.
    pub rate: Vec<Vec<f64>>,
}

impl Repeats {
    fn from_cell(cell: &CellRecording, name: &str, bin: u32) -> Self {
        let (mut current, mut rate) = (Vec::new(), Vec::new());
        for s in cell.sweeps_named(name) {
            if let Some((c, f)) = s.traces(bin)
                && !c.is_empty()
            {
                current.push(c.to_vec());
                rate.push(f.to_vec());
            }
        }
        Self { current, rate }
    }

    /// The repeats as one padded batch of sweeps for a single neuron.
    pub fn batch(&self) -> SweepBatch {
        let pairs: Vec<(&[f64], &[f64])> = self
            .current
            .iter()
            .zip(&self.rate)
            .map(|(c, f)| (c.as_slice(), f.as_slice()))
            .collect();
        SweepBatch::single_neuron(&pairs, 0)
    }

    /// EVR of a neuron driven by the first repeat's current.
    pub fn evr(&self, p: &NeuronParams) -> f64 {
        let Some(current) = self.current.first() else {
            return f64::NAN;
        };
        let prediction = scan::predict(p, current);
        let repeats: Vec<&[f64]> = self.rate.iter().map(Vec::as_slice).collect();
        explained_variance_ratio(&repeats, &prediction)
    }
}

/// One cell's data at the model bin size, grouped by stimulus.
#[derive(Clone, Debug)]
pub struct FitData {
    /// Model bin size Δt (ms).
    pub bin_size: u32,
    /// Training groups: (stimulus name, its sweeps padded into one batch).
    pub train: Vec<(String, SweepBatch)>,
    /// The Noise 1 repeats (validation EVR).
    pub validation: Repeats,
    /// The Noise 2 repeats (test EVR and test loss).
    pub test: Repeats,
    test_batch: SweepBatch,
}

impl FitData {
    /// Groups a cell's sweeps; the error names what is missing.
    pub fn from_cell(cell: &CellRecording, bin: u32) -> anyhow::Result<Self> {
        for name in [VALIDATION_STIMULUS, TEST_STIMULUS] {
            if !cell.has_stimulus(name) {
                anyhow::bail!("no {name} sweeps (needed for validation and test)");
            }
        }
        let mut train = Vec::new();
        for name in TRAIN_STIMULI {
            let r = Repeats::from_cell(cell, name, bin);
            if !r.current.is_empty() {
                train.push((name.to_string(), r.batch()));
            }
        }
        let validation = Repeats::from_cell(cell, VALIDATION_STIMULUS, bin);
        let test = Repeats::from_cell(cell, TEST_STIMULUS, bin);
        if validation.current.is_empty() || test.current.is_empty() {
            anyhow::bail!("Noise 1 or Noise 2 sweeps are empty at bin size {bin} ms");
        }
        let test_batch = test.batch();
        Ok(Self {
            bin_size: bin,
            train,
            validation,
            test,
            test_batch,
        })
    }
}

impl FitData {
    /// The train loss as the published code computed it, for the dataset criteria: per
    /// training group, the Poisson loss over every bin of the padded batch (padded bins: zero
    /// current, zero rate, the model still running) averaged over sweeps and divided by the
    /// padded length; then averaged over groups. gfr's own losses count valid bins only.
    pub fn padded_train_loss(&self, p: &NeuronParams, eps: f64) -> f64 {
        let dt = p.bin_size as f64;
        let groups: Vec<f64> = self
            .train
            .iter()
            .map(|(_, b)| {
                let t = b.time;
                let total: f64 = (0..b.n_sweeps())
                    .map(|s| {
                        let c = &b.current[s * t..(s + 1) * t];
                        let y = &b.target[s * t..(s + 1) * t];
                        b.weight[s] * scan::poisson_nll(&scan::predict(p, c), y, dt, eps)
                    })
                    .sum();
                total / t.max(1) as f64
            })
            .collect();
        groups.iter().sum::<f64>() / groups.len().max(1) as f64
    }
}

/// Poisson loss per valid bin of a batch, averaged with each sweep's weight.
fn per_bin(sweep_loss: &[f64], batch: &SweepBatch) -> f64 {
    let total: f64 = sweep_loss
        .iter()
        .zip(&batch.weight)
        .map(|(l, w)| l * w)
        .sum();
    let bins: f64 = batch
        .len
        .iter()
        .zip(&batch.weight)
        .map(|(&n, w)| n as f64 * w)
        .sum();
    total / bins.max(1.0)
}

/// Mean per-bin loss of a neuron on a batch, without gradients.
pub fn batch_loss(p: &NeuronParams, batch: &SweepBatch, eps: f64) -> f64 {
    let dt = p.bin_size as f64;
    let losses: Vec<f64> = (0..batch.n_sweeps())
        .map(|s| {
            let len = batch.len[s];
            let c = &batch.current[s * batch.time..s * batch.time + len];
            let y = &batch.target[s * batch.time..s * batch.time + len];
            scan::poisson_nll(&scan::predict(p, c), y, dt, eps)
        })
        .collect();
    per_bin(&losses, batch)
}

/// Outcome of one `{lr, epochs}` run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The neuron at the end of the run (or at its early stop).
    pub params: NeuronParams,
    /// Train loss per valid bin, each epoch (mean over the training groups).
    pub train_losses: Vec<f64>,
    /// Test (Noise 2) loss per valid bin, each epoch.
    pub test_losses: Vec<f64>,
    /// Validation EVR (Noise 1).
    pub evr1: f64,
}

/// Settings shared by the runs of one cell.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// ε in the Poisson loss's ln(f·Δt + ε).
    pub eps: f64,
    /// L1 weight C on ‖α‖₁ + ‖β‖₁.
    pub l1: f64,
    /// Whether the activation's b and c are trained too.
    pub train_activation: bool,
}

/// Sweeps of several cells for one scan: time-major, one scan column per sweep.
#[derive(Clone)]
struct StepBatch {
    /// P: `[1, T, S]` (pA).
    current: Tensor<3>,
    /// Recorded rate `[T, S]` (ms⁻¹) and valid-bin mask `[T, S]`.
    target: Tensor<2>,
    mask: Tensor<2>,
    /// Loss weight of each sweep, `[1, S]`.
    weight: Tensor<2>,
    /// The cell (layer row) of each sweep, `[S]`.
    rows: Tensor<1, Int>,
    /// Valid bins of each sweep, `[1, S]`.
    lengths: Tensor<2, Int>,
    /// The columns of each cell's sweeps, in the order the cells were given.
    spans: Vec<std::ops::Range<usize>>,
}

impl StepBatch {
    /// `cells`: (layer row, sweeps) pairs.
    fn new(cells: &[(usize, &SweepBatch)], device: &Device) -> Self {
        let sweeps: usize = cells.iter().map(|(_, b)| b.n_sweeps()).sum();
        let time = cells.iter().map(|(_, b)| b.time).max().unwrap_or(0);
        let (mut current, mut target, mut mask) = (
            vec![0.0f32; time * sweeps],
            vec![0.0f32; time * sweeps],
            vec![0.0f32; time * sweeps],
        );
        let (mut weight, mut rows, mut spans) = (Vec::new(), Vec::new(), Vec::new());
        let mut lengths = Vec::new();
        let mut col = 0;
        for &(cell, b) in cells {
            let start = col;
            for s in 0..b.n_sweeps() {
                for t in 0..b.len[s] {
                    current[t * sweeps + col] = b.current[s * b.time + t] as f32;
                    target[t * sweeps + col] = b.target[s * b.time + t] as f32;
                    mask[t * sweeps + col] = 1.0;
                }
                weight.push(b.weight[s] as f32);
                rows.push(cell as i64);
                lengths.push(b.len[s] as i64);
                col += 1;
            }
            spans.push(start..col);
        }
        let t2 = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [time, sweeps]), device);
        Self {
            current: Tensor::from_data(TensorData::new(current, [1, time, sweeps]), device),
            target: t2(target),
            mask: t2(mask),
            weight: Tensor::from_data(TensorData::new(weight, [1, sweeps]), device),
            rows: Tensor::from_data(TensorData::new(rows, [sweeps]), device),
            lengths: Tensor::from_data(TensorData::new(lengths, [1, sweeps]), device),
            spans,
        }
    }
}

/// Sweeps of (layer row, sweeps) entries uploaded once per run — on a GPU every cell's sweeps
/// of every training group — from which a step takes the columns of its entries (a gather on
/// the device) instead of uploading their traces again: with many cells on a GPU those uploads
/// were most of a step's work.
struct GroupUpload {
    /// All entries, in the order given.
    all: StepBatch,
    /// Each entry's padded length (bins).
    times: Vec<usize>,
    /// Each entry's layer row.
    rows: Vec<usize>,
}

impl GroupUpload {
    fn new(cells: &[(usize, &SweepBatch)], device: &Device) -> Self {
        Self {
            all: StepBatch::new(cells, device),
            times: cells.iter().map(|(_, b)| b.time).collect(),
            rows: cells.iter().map(|&(r, _)| r).collect(),
        }
    }

    /// The columns of `cells` (indices into the entries given to [`GroupUpload::new`], in any
    /// order) `[S]`, each one's span of them, and their bins (the longest sweep).
    fn columns(&self, cells: &[usize]) -> (Tensor<1, Int>, Vec<std::ops::Range<usize>>, usize) {
        let all = &self.all;
        let mut columns = Vec::new();
        let mut spans = Vec::with_capacity(cells.len());
        for &c in cells {
            let start = columns.len();
            columns.extend(all.spans[c].clone().map(|k| k as i64));
            spans.push(start..columns.len());
        }
        let sweeps = columns.len();
        let time = cells.iter().map(|&c| self.times[c]).max().unwrap_or(0);
        let device = all.current.device();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(columns, [sweeps]), &device);
        (idx, spans, time)
    }

    /// The batch of `cells` (as for [`GroupUpload::columns`]): the same tensors
    /// [`StepBatch::new`] builds for them.
    fn select(&self, cells: &[usize]) -> StepBatch {
        let all = &self.all;
        if cells.iter().copied().eq(0..self.times.len()) {
            return all.clone();
        }
        let (idx, spans, time) = self.columns(cells);
        let sweeps = idx.dims()[0];
        let in_time = |t: Tensor<2>| t.select(1, idx.clone()).slice([0..time, 0..sweeps]);
        StepBatch {
            current: all
                .current
                .clone()
                .select(2, idx.clone())
                .slice([0..1, 0..time, 0..sweeps]),
            target: in_time(all.target.clone()),
            mask: in_time(all.mask.clone()),
            weight: all.weight.clone().select(1, idx.clone()),
            rows: all.rows.clone().select(0, idx.clone()),
            lengths: all.lengths.clone().select(1, idx),
            spans,
        }
    }

    /// [`sweep_losses`] of `cells` (as for [`GroupUpload::columns`]) and each cell's span of
    /// the sweeps: by the fused kernels on a GPU (`fit::fused`, reading the upload's columns in
    /// place), else of [`GroupUpload::select`].
    fn losses(
        &self,
        cells: &[usize],
        layer: &GfrLayer,
        dt: f64,
        eps: f64,
    ) -> (Tensor<2>, Tensor<1>, Vec<std::ops::Range<usize>>) {
        let (columns, spans, time) = self.columns(cells);
        let all = &self.all;
        // each layer row's span of the step's sweeps (one entry per row at most)
        let layer_rows = layer.n_neurons();
        let mut row_spans = vec![0i64; 2 * layer_rows];
        for (&c, span) in cells.iter().zip(&spans) {
            let r = self.rows[c];
            assert!(
                row_spans[2 * r + 1] == 0,
                "a step takes one entry per layer row"
            );
            row_spans[2 * r] = span.start as i64;
            row_spans[2 * r + 1] = span.end as i64;
        }
        let row_spans = Tensor::<2, Int>::from_data(
            TensorData::new(row_spans, [layer_rows, 2]),
            &all.current.device(),
        );
        let sweeps = super::fused::StepSweeps {
            current: &all.current,
            target: &all.target,
            mask: &all.mask,
            weight: &all.weight,
            rows: &all.rows,
            lengths: &all.lengths,
            columns: &columns,
            row_spans: &row_spans,
            time,
        };
        match super::fused::sweep_losses(layer, &sweeps, dt, eps) {
            Some((losses, total)) => (losses, total, spans),
            None => {
                let step = self.select(cells);
                let (losses, total) = sweep_losses(&layer.scan_neurons(), &step, dt, eps);
                (losses, total, step.spans)
            }
        }
    }
}

/// Poisson loss of every sweep (summed over its valid bins) and their weighted total, through
/// the scan, by Burn's operations (on a GPU, see [`GroupUpload::losses`]).
fn sweep_losses(
    neurons: &scan::ScanNeurons,
    batch: &StepBatch,
    dt: f64,
    eps: f64,
) -> (Tensor<2>, Tensor<1>) {
    let [_, time, sweeps] = batch.current.dims();
    let neurons = neurons.select(batch.rows.clone());
    let rate = scan::scan(
        &neurons,
        batch.current.clone(),
        None,
        Some(batch.lengths.clone()),
    )
    .reshape([time, sweeps]);
    let nll = crate::neuron::masked_poisson_nll(
        rate * dt,
        batch.target.clone() * dt,
        batch.mask.clone(),
        eps,
    );
    let sweep_loss = nll.sum_dim(0);
    let total = (sweep_loss.clone() * batch.weight.clone()).sum();
    (sweep_loss, total)
}

/// A scan's sweep losses `[1, S]`, not yet read from the device, with each cell's columns and
/// the cells (layer row, training group).
struct UnreadLosses<'a> {
    losses: Tensor<2>,
    spans: Vec<std::ops::Range<usize>>,
    cells: Vec<(usize, &'a SweepBatch)>,
}

/// Where one cell's run stands.
enum CellRun {
    Running {
        train_losses: Vec<f64>,
        test_losses: Vec<f64>,
    },
    Done(RunResult),
    Diverged,
}

/// One run: a fresh Adam on a neuron starting at `init`; each epoch visits the training
/// groups in a shuffled order with one step per group. Stops early when the last three train
/// losses are equal. `None` when the loss became non-finite (the run is discarded).
pub fn train_run(
    init: &NeuronParams,
    data: &FitData,
    run: &RunConfig,
    settings: &RunSettings,
    device: &Device,
    rng: &mut CellRng,
    mut on_epoch: impl FnMut(usize, f64),
) -> Option<RunResult> {
    train_runs(
        std::slice::from_ref(init),
        &[data],
        run,
        settings,
        device,
        std::slice::from_mut(rng),
        |e, l| {
            on_epoch(e, l);
            true
        },
    )
    .remove(0)
}

/// [`train_run`] for several cells at once: one layer with a row per cell and one Adam, which
/// acts on every element separately, so each cell keeps its own parameters, optimizer state,
/// group order (its own `rng`), early stop and divergence check — the results are those of
/// fitting the cells one at a time. A cell that stops early keeps the snapshot taken then.
/// Every cell must have the same number of training groups. `on_epoch` gets the epoch and
/// the mean train loss of the cells still running, and says whether to go on: `false` stops
/// the run there (an interrupted run: its results are not the run's and must not be kept).
pub fn train_runs(
    inits: &[NeuronParams],
    data: &[&FitData],
    run: &RunConfig,
    settings: &RunSettings,
    device: &Device,
    rngs: &mut [CellRng],
    mut on_epoch: impl FnMut(usize, f64) -> bool,
) -> Vec<Option<RunResult>> {
    let cells = inits.len();
    assert!(cells > 0 && data.len() == cells && rngs.len() == cells);
    let groups = data[0].train.len();
    assert!(
        data.iter().all(|d| d.train.len() == groups),
        "cells of one batch must have the same number of training groups"
    );
    let ad = device.clone().autodiff();
    let bin = inits[0].bin_size;
    let dt = bin as f64;
    let mut layer = GfrLayer::new(inits, &ad)
        .with_trainable_filters(true)
        .with_trainable_activation(settings.train_activation);
    let mut optim = crate::optim::adam();
    let mut orders: Vec<Vec<usize>> = vec![(0..groups).collect(); cells];
    let mut state: Vec<CellRun> = (0..cells)
        .map(|_| CellRun::Running {
            train_losses: Vec::new(),
            test_losses: Vec::new(),
        })
        .collect();
    // each cell's test (Noise 2) sweeps, uploaded once per run (entry c, layer row c)
    let test_entries: Vec<(usize, &SweepBatch)> =
        (0..cells).map(|c| (c, &data[c].test_batch)).collect();
    let test_upload = GroupUpload::new(&test_entries, device);
    // on a GPU every cell's sweeps of every group go up once per run (entry g · cells + c), and
    // a step gathers its cells' groups from them for one scan; on the CPU building a step's
    // batch on the host is faster than gathering it (the same tensors either way, tested)
    let upload: Option<GroupUpload> = (!crate::device::is_cpu(device)).then(|| {
        let entries: Vec<(usize, &SweepBatch)> = (0..groups)
            .flat_map(|g| (0..cells).map(move |c| (c, &data[c].train[g].1)))
            .collect();
        GroupUpload::new(&entries, &ad)
    });
    for epoch in 0..run.epochs {
        if !state.iter().any(|s| matches!(s, CellRun::Running { .. })) {
            break;
        }
        for c in 0..cells {
            if matches!(state[c], CellRun::Running { .. }) {
                orders[c].shuffle(&mut rngs[c]);
            }
        }
        let mut epoch_loss = vec![0.0; cells];
        let mut unread: Vec<UnreadLosses> = Vec::new();
        #[allow(clippy::needless_range_loop)] // k: the step, the position in every order
        for k in 0..groups {
            let mut total = (settings.l1 != 0.0).then(|| {
                (layer.alpha.val().abs().sum() + layer.beta.val().abs().sum()) * settings.l1
            });
            let mut add = |t: Tensor<1>| {
                total = Some(match total.take() {
                    Some(sum) => sum + t,
                    None => t,
                });
            };
            // (cells that stopped or diverged are left out: their results are final)
            let running = (0..cells).filter(|&c| matches!(state[c], CellRun::Running { .. }));
            if let Some(upload) = &upload {
                // one scan: each running cell at its group of this step
                let members: Vec<(usize, usize)> = running.map(|c| (c, orders[c][k])).collect();
                let entries: Vec<usize> = members.iter().map(|&(c, g)| g * cells + c).collect();
                let (sweep_loss, step_total, spans) =
                    upload.losses(&entries, &layer, dt, settings.eps);
                add(step_total);
                unread.push(UnreadLosses {
                    losses: sweep_loss.inner(),
                    spans,
                    cells: members
                        .iter()
                        .map(|&(c, g)| (c, &data[c].train[g].1))
                        .collect(),
                });
            } else {
                // cells at the same training group share a scan: their sweeps have similar
                // lengths, so little is padded
                let mut by_group: std::collections::BTreeMap<usize, Vec<(usize, &SweepBatch)>> =
                    Default::default();
                for c in running {
                    let g = orders[c][k];
                    by_group
                        .entry(g)
                        .or_default()
                        .push((c, &data[c].train[g].1));
                }
                let neurons = layer.scan_neurons();
                for group in by_group.values() {
                    let step = StepBatch::new(group, &ad);
                    let (sweep_loss, group_total) = sweep_losses(&neurons, &step, dt, settings.eps);
                    add(group_total);
                    unread.push(UnreadLosses {
                        losses: sweep_loss.inner(),
                        spans: step.spans,
                        cells: group.clone(),
                    });
                }
            }
            // (none when every cell diverged earlier in the epoch, on the CPU: no step)
            if let Some(total) = total {
                let grads = GradientsParams::from_grads(total.backward(), &layer);
                layer = optim.step(run.lr, layer, grads);
            }
            // on a GPU the sweep losses are read once an epoch (a read waits for the device),
            // on the CPU after each step
            if upload.is_none() {
                read_losses(&mut unread, None, &mut state, &mut epoch_loss);
            }
        }
        // each running cell's test loss: one forward scan of their test sweeps, read with the
        // epoch's last train losses
        let running: Vec<usize> = (0..cells)
            .filter(|&c| matches!(state[c], CellRun::Running { .. }))
            .collect();
        let test = (!running.is_empty()).then(|| {
            let (losses, _, spans) = test_upload.losses(&running, &layer.valid(), dt, settings.eps);
            (losses, spans)
        });
        let test_sweeps = read_losses(
            &mut unread,
            test.as_ref().map(|t| &t.0),
            &mut state,
            &mut epoch_loss,
        );
        let mut epoch_params: Option<Vec<NeuronParams>> = None;
        let mut running_losses = Vec::new();
        let spans = test.map(|t| t.1).unwrap_or_default();
        for (&c, cols) in running.iter().zip(spans) {
            let test_loss = per_bin(&test_sweeps[cols], &data[c].test_batch);
            let CellRun::Running {
                train_losses,
                test_losses,
            } = &mut state[c]
            else {
                continue;
            };
            train_losses.push(epoch_loss[c] / groups as f64);
            if !test_loss.is_finite() {
                state[c] = CellRun::Diverged;
                continue;
            }
            test_losses.push(test_loss);
            running_losses.push(train_losses[epoch]);
            let n = train_losses.len();
            let stalled = n >= 3
                && train_losses[n - 1] == train_losses[n - 2]
                && train_losses[n - 2] == train_losses[n - 3];
            if stalled {
                let params = epoch_params.get_or_insert_with(|| layer_params(&layer, inits));
                state[c] = finish(
                    &params[c],
                    data[c],
                    std::mem::take(train_losses),
                    std::mem::take(test_losses),
                );
            }
        }
        if !running_losses.is_empty()
            && !on_epoch(
                epoch,
                running_losses.iter().sum::<f64>() / running_losses.len() as f64,
            )
        {
            break;
        }
    }
    let params = layer_params(&layer, inits);
    // (the validation EVRs of the cells still running, on the cores)
    super::on_cores(state.into_iter().enumerate().collect(), |(c, s)| match s {
        CellRun::Running {
            train_losses,
            test_losses,
        } => match finish(&params[c], data[c], train_losses, test_losses) {
            CellRun::Done(r) => Some(r),
            _ => None,
        },
        CellRun::Done(r) => Some(r),
        CellRun::Diverged => None,
    })
}

/// The layer's neurons; each activation keeps the bin it was fitted at (the layer knows only
/// the model bin).
fn layer_params(layer: &GfrLayer, inits: &[NeuronParams]) -> Vec<NeuronParams> {
    let mut params = layer.to_params(inits[0].bin_size);
    for (p, init) in params.iter_mut().zip(inits) {
        p.activation.bin_size = init.activation.bin_size;
    }
    params
}

/// Reads the sweep losses of the `unread` scans (taking them) and of `more` in one read from
/// the device; adds each cell's per-bin train loss of the scans to `epoch_loss` (a cell with a
/// non-finite one has diverged) and returns `more`'s.
fn read_losses(
    unread: &mut Vec<UnreadLosses>,
    more: Option<&Tensor<2>>,
    state: &mut [CellRun],
    epoch_loss: &mut [f64],
) -> Vec<f64> {
    let unread = std::mem::take(unread);
    let losses: Vec<Tensor<2>> = unread
        .iter()
        .map(|u| u.losses.clone())
        .chain(more.cloned())
        .collect();
    if losses.is_empty() {
        return Vec::new();
    }
    let mut losses = crate::neuron::to_vec(Tensor::cat(losses, 1));
    let more = losses.split_off(unread.iter().map(|u| u.losses.dims()[1]).sum());
    let mut base = 0;
    for scan in unread {
        let scan_losses = &losses[base..base + scan.losses.dims()[1]];
        base += scan_losses.len();
        for (cols, (c, batch)) in scan.spans.into_iter().zip(scan.cells) {
            let loss = per_bin(&scan_losses[cols], batch);
            if !loss.is_finite() && matches!(state[c], CellRun::Running { .. }) {
                // the cell's run is discarded; its rows do not touch the other cells' (on a
                // GPU it runs on to the epoch's end, alone)
                state[c] = CellRun::Diverged;
            }
            epoch_loss[c] += loss;
        }
    }
    more
}

fn finish(
    p: &NeuronParams,
    data: &FitData,
    train_losses: Vec<f64>,
    test_losses: Vec<f64>,
) -> CellRun {
    CellRun::Done(RunResult {
        params: p.clone(),
        evr1: data.validation.evr(p),
        train_losses,
        test_losses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
    }

    fn host_int<const D: usize>(t: Tensor<D, Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
    }

    /// Each epoch's test loss, taken for all running cells from one forward scan of their
    /// test sweeps, is each cell's own: the last one equals [`batch_loss`] of the cell's neuron
    /// on its Noise 2 sweeps, computed alone on the host in f64 (to f32 rounding). Three
    /// simulated cells of different lengths and rates, trained and stopping early (a learning
    /// rate of 0 stalls), on the CPU and on wgpu (skipped, saying so, without an adapter).
    #[test]
    fn each_cells_test_loss_is_its_own() {
        use crate::simulate::{GroundTruth, simulate_cell};
        let data: Vec<FitData> = (0..3u64)
            .map(|k| {
                let cell = simulate_cell(k + 1, k as usize, 5, GroundTruth::Adex).recording;
                FitData::from_cell(&cell, 20).unwrap()
            })
            .collect();
        let inits: Vec<NeuronParams> = [(150.0, 0.2, 10.0), (220.0, 0.3, 40.0), (90.0, 0.1, 0.0)]
            .into_iter()
            .map(|(max_current, max_firing_rate, threshold)| {
                let act = crate::neuron::ActivationParams {
                    max_current,
                    max_firing_rate,
                    poly_coeff: vec![0.8, 0.5, 0.2],
                    threshold,
                    bin_size: 20,
                };
                NeuronParams::initial(20, act)
            })
            .collect();
        let settings = RunSettings {
            eps: 1e-8,
            l1: 0.0,
            train_activation: true,
        };
        let mut devices = vec![crate::device::cpu()];
        match crate::device::Backend::Wgpu.device() {
            Ok(d) if crate::device::wgpu_available() => devices.push(d),
            _ => eprintln!("SKIPPED each_cells_test_loss_is_its_own on wgpu: no wgpu adapter"),
        }
        for device in devices {
            for lr in [1e-2, 0.0] {
                let mut rngs: Vec<CellRng> = (0..3).map(rand::SeedableRng::seed_from_u64).collect();
                let data: Vec<&FitData> = data.iter().collect();
                let run = RunConfig::new(lr, 5);
                let results = train_runs(
                    &inits,
                    &data,
                    &run,
                    &settings,
                    &device,
                    &mut rngs,
                    |_, _| true,
                );
                for (c, r) in results.into_iter().enumerate() {
                    let r = r.expect("a finite run");
                    let what = format!("{device:?}, lr {lr}, cell {c}");
                    assert_eq!(r.test_losses.len(), r.train_losses.len(), "{what}");
                    // (a stalled run stops at 3; on wgpu the train losses of unchanged
                    // parameters may differ in the last bit, summed in another group order)
                    let epochs = r.test_losses.len();
                    assert!(
                        epochs == 5 || (lr == 0.0 && epochs >= 3),
                        "{what}: {epochs}"
                    );
                    let alone = batch_loss(&r.params, &data[c].test_batch, settings.eps);
                    let last = *r.test_losses.last().unwrap();
                    assert!(
                        (last - alone).abs() <= 1e-4 * alone.abs(),
                        "{what}: test loss {last} vs {alone} alone"
                    );
                }
            }
        }
    }

    /// The columns a step gathers from a group's upload are the batch built on the host for
    /// the same cells: every tensor and span equal.
    #[test]
    fn a_gathered_step_is_the_host_built_one() {
        let device = crate::device::cpu();
        let sweep = |len: usize, scale: f64| -> (Vec<f64>, Vec<f64>) {
            (
                (0..len).map(|t| scale * (t as f64 + 1.0)).collect(),
                (0..len).map(|t| 0.01 * scale * t as f64).collect(),
            )
        };
        let batches: Vec<SweepBatch> = [(vec![5, 3], 1.0), (vec![7], 2.0), (vec![2, 4, 6], 3.0)]
            .into_iter()
            .map(|(lens, k)| {
                let owned: Vec<_> = lens.iter().map(|&l| sweep(l, k)).collect();
                let pairs: Vec<(&[f64], &[f64])> =
                    owned.iter().map(|(c, r)| (&c[..], &r[..])).collect();
                SweepBatch::single_neuron(&pairs, 0)
            })
            .collect();
        let all: Vec<(usize, &SweepBatch)> = batches.iter().enumerate().collect();
        let upload = GroupUpload::new(&all, &device);
        for members in [vec![0, 1, 2], vec![0, 2], vec![1], vec![2], vec![0, 1]] {
            let cells: Vec<(usize, &SweepBatch)> = members.iter().map(|&c| all[c]).collect();
            let (a, b) = (upload.select(&members), StepBatch::new(&cells, &device));
            assert_eq!(a.current.dims(), b.current.dims(), "{members:?}");
            assert_eq!(host(a.current), host(b.current));
            assert_eq!(host(a.target), host(b.target));
            assert_eq!(host(a.mask), host(b.mask));
            assert_eq!(host(a.weight), host(b.weight));
            assert_eq!(host_int(a.rows), host_int(b.rows));
            assert_eq!(host_int(a.lengths), host_int(b.lengths));
            assert_eq!(a.spans, b.spans);
        }
    }

    /// The fused loss of a step on wgpu (`GroupUpload::losses`) against Burn's operations on
    /// the gathered batch on the same device: sweep losses, total, spans and the gradients of
    /// α, β, c and b, for the whole group and for steps taking some of its cells, cells of
    /// different neurons and sweep lengths (padding), neurons without sweeps, trainable and
    /// frozen activations, two bin sizes. Skipped, saying so, without a wgpu adapter.
    #[test]
    fn the_fused_step_loss_matches_burns_operations() {
        use burn::module::{Module, ModuleVisitor, Param};
        use rand::{Rng, SeedableRng};
        if !crate::device::wgpu_available() {
            eprintln!("SKIPPED the_fused_step_loss_matches_burns_operations: no wgpu adapter");
            return;
        }
        let device = crate::device::Backend::Wgpu.device().unwrap().autodiff();
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for (bin, train_activation, eps) in [(20u32, false, 1e-8), (50, true, 1e-3)] {
            let neurons: Vec<NeuronParams> = (0..5)
                .map(|_| {
                    let act = crate::neuron::ActivationParams {
                        max_current: rng.random_range(80.0..250.0),
                        max_firing_rate: rng.random_range(0.1..0.4),
                        poly_coeff: (0..3).map(|_| rng.random_range(0.3..1.3)).collect(),
                        threshold: rng.random_range(0.0..60.0),
                        bin_size: bin,
                    };
                    let mut p = NeuronParams::initial(bin, act);
                    for i in 0..p.n_filters() {
                        p.alpha[i] += rng.random_range(-1.0..1.0);
                        p.beta[i] = rng.random_range(-0.03..0.01);
                    }
                    p
                })
                .collect();
            let layer = GfrLayer::new(&neurons, &device)
                .with_trainable_filters(true)
                .with_trainable_activation(train_activation);
            // cells on neurons 3, 0 and 4 (1 and 2 get no sweeps), 1–3 sweeps each
            let batches: Vec<(usize, SweepBatch)> =
                [(3usize, vec![40, 25]), (0, vec![60]), (4, vec![10, 60, 33])]
                    .into_iter()
                    .map(|(row, lens)| {
                        let owned: Vec<(Vec<f64>, Vec<f64>)> = lens
                            .iter()
                            .map(|&l| {
                                let c = (0..l).map(|_| rng.random_range(-20.0..220.0)).collect();
                                let y = (0..l).map(|_| rng.random_range(0.0..0.2)).collect();
                                (c, y)
                            })
                            .collect();
                        let pairs: Vec<(&[f64], &[f64])> =
                            owned.iter().map(|(c, y)| (&c[..], &y[..])).collect();
                        (row, SweepBatch::single_neuron(&pairs, row))
                    })
                    .collect();
            let cells: Vec<(usize, &SweepBatch)> = batches.iter().map(|(r, b)| (*r, b)).collect();
            let upload = GroupUpload::new(&cells, &device);
            struct Grads<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);
            impl ModuleVisitor for Grads<'_> {
                fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                    self.1.push(self.0.get::<D>(param.id).map(host));
                }
            }
            // the whole group, and steps that take some of its cells (shorter, reordered)
            // (a step on a GPU takes entries of several groups, in no particular order)
            for members in [vec![0, 1, 2], vec![0, 2], vec![1], vec![0], vec![2, 0, 1]] {
                let run = |fused: bool| {
                    let layer = layer.clone().fork(&device);
                    let (losses, total, spans) = if fused {
                        upload.losses(&members, &layer, bin as f64, eps)
                    } else {
                        let step = upload.select(&members);
                        let (losses, total) =
                            sweep_losses(&layer.scan_neurons(), &step, bin as f64, eps);
                        (losses, total, step.spans)
                    };
                    let total_value = host(total.clone())[0];
                    let grads = GradientsParams::from_grads(total.backward(), &layer);
                    let mut g = Grads(&grads, Vec::new());
                    layer.visit(&mut g);
                    (host(losses), total_value, g.1, spans)
                };
                let (fused, burn) = (run(true), run(false));
                let what =
                    format!("bin {bin}, activation trained: {train_activation}, cells {members:?}");
                assert_eq!(fused.3, burn.3, "{what}: spans");
                let sweeps: usize = members.iter().map(|&c| cells[c].1.n_sweeps()).sum();
                assert_eq!((fused.0.len(), burn.0.len()), (sweeps, sweeps), "{what}");
                for (a, b) in fused.0.iter().zip(&burn.0) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{what}: sweep loss {a} vs {b}"
                    );
                }
                assert!(
                    (fused.1 - burn.1).abs() <= 1e-5 * burn.1.abs().max(1.0),
                    "{what}: total {} vs {}",
                    fused.1,
                    burn.1
                );
                let mut compared = 0;
                for (k, (a, b)) in fused.2.iter().zip(&burn.2).enumerate() {
                    match (a, b) {
                        (None, None) => {}
                        (Some(a), Some(b)) => {
                            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
                            assert!(scale > 0.0, "{what}: parameter {k} has a gradient");
                            for (x, y) in a.iter().zip(b) {
                                assert!(
                                    (x - y).abs() <= 1e-4 * scale,
                                    "{what}: parameter {k}: {x} vs {y} (largest {scale})"
                                );
                            }
                            compared += 1;
                        }
                        _ => panic!("{what}: parameter {k} has a gradient one way only"),
                    }
                }
                assert_eq!(compared, if train_activation { 4 } else { 2 }, "{what}");
            }
        }
    }
}
