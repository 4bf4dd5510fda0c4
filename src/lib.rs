//! gfr — Generalized Firing Rate neurons on Burn.
//!
//! A GFR neuron turns an injected current (pA) into a firing rate (spikes/ms) through
//! exponential input and rate-history filters and a rectified-tanh activation. gfr fits one
//! per recorded cell (Allen Cell Types NWB files) and trains recurrent networks of them, on the
//! CPU (ndarray) or a GPU (wgpu), chosen at run time by a [`Device`]. The `gfr` command line,
//! the Python package (`python/`) and these examples all call the same functions.
//!
//! Fit one GFR neuron to a simulated cell (the cell is made by a known GFR neuron; a small
//! config keeps it to seconds):
//!
//! ```
//! use gfr::{DataDir, FitConfig, FitOptions, GroundTruth, RunConfig, fit_cells, simulate_cell};
//!
//! let dir = std::env::temp_dir().join(format!("gfr-doc-fit-{}", std::process::id()));
//! let data = DataDir::new(dir.join("data"));
//! // processed_data/ and max_firing_rates/ pickles, as `gfr simulate` writes them
//! simulate_cell(900_000_001, 0, 0, GroundTruth::Gfr).recording.save(&data)?;
//!
//! let mut config = FitConfig::new(vec![RunConfig::new(1e-2, 20)]); // one run, 20 epochs
//! config.activation_epochs = 100;
//! config.activation_repeats = 1;
//! let opts = FitOptions::new(data, dir.join("params"), config, gfr::cpu());
//! // writes params/bin20_actv20/900000001.pickle and fit_summary.json; `&()`: no progress
//! let reports = fit_cells(&[900_000_001], &opts, &())?;
//! let evr = reports[0].test_evr.expect("fitted"); // explained variance on Noise 2
//! assert!(evr > 0.3, "test EVR {evr}");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Train a network of 32 default GFR neurons on line-by-line MNIST (the built-in sample) for
//! one epoch:
//!
//! ```
//! use gfr::network::{LrSchedule, mnist::builtin_sample};
//! use gfr::{GfrNetwork, TrainSettings, default_neuron};
//!
//! let (train_set, test_set) = builtin_sample();
//! let (train_set, test_set) = (train_set.truncate(1000), test_set.truncate(200));
//! let device = gfr::cpu().autodiff(); // training needs autodiff
//! device.seed(0); // fixes the initial weights
//! let net = GfrNetwork::new(&vec![default_neuron(); 32], false, &device);
//! let settings = TrainSettings {
//!     lr: 5e-3,
//!     schedule: LrSchedule::Anneal,
//!     epochs: 1,
//!     batch_size: 32,
//!     seed: 0,
//! };
//! let (_trained, history) = gfr::network::train(net, &train_set, &test_set, &settings, &device);
//! assert!(history[0].test_accuracy_step1 > 0.1); // better than chance
//! ```
//!
//! `examples/` has both as programs; [`run_network`] runs the whole experiment of
//! `gfr network` from a [`NetworkSpec`].
//!
//! The modules:
//!
//! * [`neuron`] — the GFR neuron: parameters, activation, and the layer as Burn modules.
//! * [`scan`] — the fused GFR scan (one Burn operation: host and CubeCL kernels, handwritten
//!   backward) that the cell fitter and the network both run their neurons through.
//! * [`data`] — sweeps, binning, the processed-data layout, pickle I/O and MNIST.
//! * [`simulate`] — the built-in synthetic cells.
//! * [`fit`] — fitting one GFR neuron per cell, EVR, and result files.
//! * [`dataset`] — the dataset of fitted neurons (pickle / JSON).
//! * [`network`] — networks of GFR neurons on line-by-line MNIST, and RNN / LSTM baselines.
//! * [`plot`], [`bench`](mod@bench) — figures and benchmarks.
//! * [`device`] — choosing the CPU (ndarray) or GPU (wgpu) backend at run time.
//! * [`error`] — the kinds of failure (bad value, not found, interrupted, some cells failed).
//! * [`slurm`] — a fit as a Slurm job array (`gfr fit --slurm N`).
//! * [`fuzz`] — mutation fuzzing of the file readers (for the tests).

#![warn(missing_docs)]

pub use burn;

pub mod bench;
pub mod data;
pub mod dataset;
pub mod device;
pub mod error;
pub mod fit;
pub mod fuzz;
pub mod network;
pub mod neuron;
pub mod optim;
pub(crate) mod parallel;
pub mod plot;
pub mod scan;
pub mod simulate;
pub mod slurm;

// The types most programs need; `examples/` shows them in use (`fit_one_cell`: simulate a
// cell and fit it; `network_one_epoch`: train a small network).
pub use burn::tensor::Device;
pub use data::DataDir;
pub use dataset::{Dataset, load_gfr_model};
pub use device::{Backend, cpu};
pub use fit::{CellReport, CellStatus, FitConfig, FitOptions, FitResult, RunConfig, fit_cells};
pub use network::{
    GfrNetwork, NetworkRun, NetworkSpec, TrainSettings, default_neuron, run_network,
};
pub use neuron::{GfrLayer, NeuronParams};
pub use simulate::{GroundTruth, simulate_cell};

// The README's Rust code is compiled by the doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
