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

/// Simulates `cells` AdEx cells into a scratch folder and fits them, `batch_cells` at a time.
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
    let t0 = Instant::now();
    let ids: Vec<u64> = (1..=cells as u64).collect();
    let mut evrs = Vec::new();
    for chunk in ids.chunks(opts.batch_cells) {
        evrs.extend(
            fit_and_save_batch(chunk, &opts, &())
                .into_iter()
                .filter_map(|r| r.test_evr),
        );
    }
    let epochs = cells * config.hparams.iter().map(|h| h.epochs).sum::<usize>();
    let total = t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    evrs.sort_by(f64::total_cmp);
    Ok(FitBench {
        cells,
        batch_cells: opts.batch_cells,
        config: config.config_name,
        device: device_name.to_string(),
        seconds_total: total,
        seconds_per_cell: total / cells as f64,
        seconds_per_epoch: total / epochs.max(1) as f64,
        cells_per_hour: 3600.0 * cells as f64 / total,
        median_test_evr: evrs.get(evrs.len() / 2).copied().unwrap_or(f64::NAN),
        peak_memory_mb: peak_memory_mb(),
    })
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
    /// Seconds per epoch over the 6,000 built-in training digits (mean over epochs).
    pub seconds_per_epoch: f64,
    /// Step-1 test accuracy after the last epoch (fraction in [0, 1]); NaN if no epoch ran.
    pub test_accuracy_step1: f64,
    /// Peak resident memory of the process (MB); 0 where unknown.
    pub peak_memory_mb: f64,
}

/// Trains the default GFR network on the built-in sample for `epochs` epochs.
pub fn bench_network(
    n_nodes: usize,
    batch_size: usize,
    epochs: usize,
    device_name: &str,
    device: burn::tensor::Device,
) -> NetworkBench {
    use crate::data::mnist;
    use crate::network::{GfrNetwork, TrainSettings, default_neuron, train};
    let (train_set, test_set) = mnist::builtin_sample();
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
    let (_, history) = train(net, &train_set, &test_set, &settings, &device);
    NetworkBench {
        n_nodes,
        batch_size,
        epochs,
        device: device_name.to_string(),
        seconds_per_epoch: history.iter().map(|h| h.seconds).sum::<f64>() / epochs as f64,
        test_accuracy_step1: history.last().map_or(f64::NAN, |h| h.test_accuracy_step1),
        peak_memory_mb: peak_memory_mb(),
    }
}
