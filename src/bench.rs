//! `gfr bench`: fitting speed on simulated cells, with peak memory.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::data::DataDir;
use crate::fit::{FitConfig, FitOptions, fit_and_save_batch};
use crate::simulate::{GroundTruth, simulate_cells};

/// Results of a fitting benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct FitBench {
    /// Number of simulated cells fitted.
    pub cells: usize,
    /// Cells fitted together in one batch.
    pub batch_cells: usize,
    /// Name of the fit config (`config_name`).
    pub config: String,
    /// Name of the device the fit ran on.
    pub device: String,
    /// Wall-clock time of the whole fit (s), simulation excluded.
    pub seconds_total: f64,
    /// Fit time per cell (s).
    pub seconds_per_cell: f64,
    /// Total seconds divided by the epochs of all cells' runs (activation fit included).
    pub seconds_per_epoch: f64,
    /// Throughput: cells fitted per hour.
    pub cells_per_hour: f64,
    /// Median test EVR (Noise 2) over the cells that have one; NaN if none.
    pub median_test_evr: f64,
    /// Peak resident memory of the process (MB), from /proc/self/status; 0 where unknown.
    pub peak_memory_mb: f64,
    /// Device memory the backend held at its most (MB), read after each batch of cells
    /// ([`crate::device::device_memory_mb`]); 0 on the CPU.
    pub device_memory_mb: f64,
    /// Of `seconds_per_cell`, the time spent waiting for the device in reads (s;
    /// [`crate::device::device_wait_seconds`]): on a GPU a large share means the device is what
    /// takes the time, a small one the host (launches, host work). 0 on the CPU.
    pub device_wait_per_cell: f64,
    /// Kernels launched per cell (0 on the CPU, which launches none).
    pub kernels_per_cell: f64,
    /// The kernels launched most: (name, launches per cell), most first.
    pub top_kernels: Vec<(String, f64)>,
}

/// Peak resident set size (MB) of this process, where the OS reports it.
pub fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Where a fit benchmark stands after a batch of cells.
#[derive(Clone, Debug)]
pub struct BatchDone {
    /// Cells fitted so far.
    pub cells_done: usize,
    /// Cells of the benchmark.
    pub cells: usize,
    /// Fit time so far (s).
    pub seconds: f64,
    /// Peak host memory so far (MB).
    pub peak_memory_mb: f64,
    /// Device memory reserved so far (MB; 0 on the CPU).
    pub device_memory_mb: f64,
    /// Median test EVR of the cells fitted so far.
    pub median_test_evr: f64,
    /// Time spent waiting for the device in reads so far (s; 0 on the CPU).
    pub device_wait: f64,
}

/// Simulates `cells` AdEx cells into a scratch folder and fits them, `batch_cells` at a time;
/// `on_batch` hears after each batch.
/// The peak memory reported is the fit's: `clear_refs` 5 resets the high-water mark to the
/// present size after the simulation (Linux; the present size still holds what the
/// simulation's threads left in the allocator's per-thread arenas, a few tens of MB each).
pub fn bench_fit(
    cells: usize,
    batch_cells: usize,
    config: FitConfig,
    device_name: &str,
    device: burn::tensor::Device,
    seed: u64,
    on_batch: &dyn Fn(&BatchDone),
) -> Result<FitBench> {
    let dir = std::env::temp_dir().join(format!("gfr-bench-{}", std::process::id()));
    let data = DataDir::new(dir.join("data"));
    // simulated on the cores (1,000 cells take minutes on one), not timed
    simulate_cells(1, cells, seed, GroundTruth::Adex, |c| {
        c.recording.save(&data)
    })
    .into_iter()
    .collect::<Result<()>>()?;
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let opts = FitOptions {
        seed,
        batch_cells: batch_cells.max(1),
        ..FitOptions::new(data, dir.join("params"), config.clone(), device)
    };
    let launches = std::sync::Arc::new(LaunchCount::default());
    let watching = cubecl::logging::LaunchObservation::new(launches.clone());
    let t0 = Instant::now();
    let wait0 = crate::device::device_wait_seconds();
    // (the CPU's reads are copies of finished results, not waits)
    let cpu = crate::device::is_cpu(&opts.device);
    let device_wait = || {
        if cpu {
            0.0
        } else {
            crate::device::device_wait_seconds() - wait0
        }
    };
    let ids: Vec<u64> = (1..=cells as u64).collect();
    let mut evrs = Vec::new();
    let mut device_mb = 0f64;
    let mut cells_done = 0;
    for chunk in ids.chunks(opts.batch_cells) {
        cells_done += chunk.len();
        evrs.extend(
            fit_and_save_batch(chunk, &opts, &())
                .into_iter()
                .filter_map(|r| r.test_evr),
        );
        device_mb = device_mb.max(crate::device::device_memory_mb(&opts.device));
        on_batch(&BatchDone {
            cells_done,
            cells,
            seconds: t0.elapsed().as_secs_f64(),
            peak_memory_mb: peak_memory_mb(),
            device_memory_mb: device_mb,
            median_test_evr: median(evrs.clone()),
            device_wait: device_wait(),
        });
    }
    let epochs = cells * config.hparams.iter().map(|h| h.epochs).sum::<usize>();
    let total = t0.elapsed().as_secs_f64();
    drop(watching);
    let names = std::mem::take(&mut *launches.names.lock().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(FitBench {
        cells,
        batch_cells: opts.batch_cells.min(cells),
        config: config.config_name,
        device: device_name.to_string(),
        seconds_total: total,
        seconds_per_cell: total / cells as f64,
        seconds_per_epoch: total / epochs.max(1) as f64,
        cells_per_hour: 3600.0 * cells as f64 / total,
        median_test_evr: median(evrs),
        peak_memory_mb: peak_memory_mb(),
        device_memory_mb: device_mb,
        device_wait_per_cell: device_wait() / cells as f64,
        kernels_per_cell: names.values().sum::<usize>() as f64 / cells as f64,
        top_kernels: most_launched(&names, cells as f64),
    })
}

/// Counts kernel launches by name (every CubeCL backend reports them).
#[derive(Default)]
struct LaunchCount {
    names: std::sync::Mutex<std::collections::HashMap<&'static str, usize>>,
}

impl cubecl::logging::LaunchObserver for LaunchCount {
    fn launched(&self, kernel: &'static str) {
        *self.names.lock().unwrap().entry(kernel).or_default() += 1;
    }
}

/// The 16 most launched kernels by short name (`KernelBinop`, `ReduceKernel`, …, the generic
/// variants together), as launches per `per` (cell or batch), most first.
fn most_launched(
    names: &std::collections::HashMap<&'static str, usize>,
    per: f64,
) -> Vec<(String, f64)> {
    let mut by_name = std::collections::HashMap::<String, usize>::new();
    for (name, &n) in names {
        let short =
            cubecl::config::type_name_format(name, cubecl::config::TypeNameFormatLevel::Short);
        *by_name.entry(short).or_default() += n;
    }
    let mut top: Vec<(String, f64)> = by_name
        .into_iter()
        .map(|(name, n)| (name, n as f64 / per))
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(16);
    top
}

/// Results of a network-training benchmark.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkBench {
    /// Number of hidden GFR neurons.
    pub n_nodes: usize,
    /// Images per training batch.
    pub batch_size: usize,
    /// Training epochs run.
    pub epochs: usize,
    /// Name of the device the network trained on.
    pub device: String,
    /// Seconds per epoch over the built-in training digits (mean over epochs).
    pub seconds_per_epoch: f64,
    /// Step-1 test accuracy after the last epoch (fraction in [0, 1]); NaN if no epoch ran.
    pub test_accuracy_step1: f64,
    /// Peak resident memory of the process (MB); 0 where unknown.
    pub peak_memory_mb: f64,
    /// Device memory the backend held after the last epoch (MB; its pools keep what they
    /// reserved); 0 on the CPU.
    pub device_memory_mb: f64,
    /// Kernels launched per training mini-batch (median over the batches; 0 on the CPU,
    /// which launches none).
    pub kernels_per_batch: f64,
    /// Wall time from one mini-batch's end to the next's (ms, median): on a GPU the host's
    /// time to issue a batch, as the device runs behind it.
    pub host_ms_per_batch: f64,
    /// The kernels launched most per mini-batch: (name, launches per batch), most first.
    pub top_kernels: Vec<(String, f64)>,
}

/// Counts the kernel launches (every CubeCL backend reports them) and the wall time between
/// mini-batches of a training run: a [`cubecl::logging::LaunchObserver`] and a
/// [`crate::network::TrainProgress`] at once.
#[derive(Default)]
struct BatchMeter {
    state: std::sync::Mutex<MeterState>,
}

#[derive(Default)]
struct MeterState {
    /// Kernels launched so far.
    launches: usize,
    /// When the last batch ended (or the epoch started), and the launches by then.
    last: Option<(std::time::Instant, usize)>,
    /// Per batch: launches and seconds.
    batches: Vec<(usize, f64)>,
    /// Launches per kernel name, over the batches.
    names: std::collections::HashMap<&'static str, usize>,
    /// Launches per kernel name since the last batch ended: added to `names` when the next
    /// one ends, dropped when the epoch's evaluation follows instead.
    pending: std::collections::HashMap<&'static str, usize>,
    /// Whether an epoch's batches are under way (launches outside them not named).
    in_batch: bool,
}

impl cubecl::logging::LaunchObserver for BatchMeter {
    fn launched(&self, kernel: &'static str) {
        let mut st = self.state.lock().unwrap();
        st.launches += 1;
        if st.in_batch {
            *st.pending.entry(kernel).or_default() += 1;
        }
    }
}

impl crate::network::TrainProgress for BatchMeter {
    fn epoch_started(&self, _epoch: usize, _epochs: usize, _batches: usize) {
        let mut st = self.state.lock().unwrap();
        st.last = Some((std::time::Instant::now(), st.launches));
        st.pending.clear();
        st.in_batch = true;
    }

    fn batch_done(&self) {
        let now = std::time::Instant::now();
        let mut st = self.state.lock().unwrap();
        let n = st.launches;
        if let Some((t, k)) = st.last {
            st.batches.push((n - k, (now - t).as_secs_f64()));
        }
        st.last = Some((now, n));
        let MeterState { names, pending, .. } = &mut *st;
        for (name, k) in pending.drain() {
            *names.entry(name).or_default() += k;
        }
    }

    fn epoch_done(&self, _stats: &crate::network::EpochStats) {
        let mut st = self.state.lock().unwrap();
        st.pending.clear();
        st.in_batch = false;
    }
}

/// The upper median (NaN for none).
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Trains the default GFR network on the built-in sample (its first `digits` training digits,
/// all 6,000 with `None`) for `epochs` epochs.
pub fn bench_network(
    n_nodes: usize,
    batch_size: usize,
    epochs: usize,
    digits: Option<usize>,
    device_name: &str,
    device: burn::tensor::Device,
) -> NetworkBench {
    use crate::data::mnist;
    use crate::network::{GfrNetwork, TrainSettings, adam, default_neuron, train_resumable};
    let (mut train_set, mut test_set) = mnist::builtin_sample();
    if let Some(n) = digits {
        train_set = train_set.truncate(n);
        let tests = n.min(test_set.len());
        test_set = test_set.truncate(tests);
    }
    let device = device.autodiff();
    // the same initial network every run
    device.seed(0);
    let net = GfrNetwork::new(&vec![default_neuron(); n_nodes], false, &device);
    let settings = TrainSettings {
        lr: 1e-3,
        schedule: crate::network::LrSchedule::default(),
        epochs,
        batch_size,
        seed: 0,
    };
    let meter = std::sync::Arc::new(BatchMeter::default());
    let watching = cubecl::logging::LaunchObservation::new(meter.clone());
    let (_, history) = train_resumable(
        net,
        adam(),
        Vec::new(),
        &train_set,
        &test_set,
        &settings,
        &device,
        None,
        &*meter,
    );
    drop(watching);
    let st = meter.state.lock().unwrap();
    let batches = st.batches.len().max(1) as f64;
    let top = most_launched(&st.names, batches);
    NetworkBench {
        n_nodes,
        batch_size,
        epochs,
        device: device_name.to_string(),
        seconds_per_epoch: history.iter().map(|h| h.seconds).sum::<f64>() / epochs as f64,
        test_accuracy_step1: history.last().map_or(f64::NAN, |h| h.test_accuracy_step1),
        peak_memory_mb: peak_memory_mb(),
        device_memory_mb: crate::device::device_memory_mb(&device),
        kernels_per_batch: median(st.batches.iter().map(|b| b.0 as f64).collect()),
        host_ms_per_batch: median(st.batches.iter().map(|b| b.1 * 1e3).collect()),
        top_kernels: top,
    }
}
