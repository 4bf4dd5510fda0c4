//! gfr — Generalized Firing Rate neurons on Burn.
//!
//! * [`neuron`] — the GFR neuron: parameters, activation, and the layer as Burn modules.
//! * [`scan`] — the fused GFR scan (one Burn operation: host and CubeCL kernels, handwritten
//!   backward) that the cell fitter and the network both run their neurons through.
//! * [`data`] — sweeps, binning, the processed-data layout, pickle I/O and MNIST.
//! * [`simulate`] — the built-in synthetic cells.
//! * [`fit`] — fitting one GFR neuron per cell, EVR, and result files.
//! * [`dataset`] — the dataset of fitted neurons (pickle / JSON).
//! * [`network`] — networks of GFR neurons on line-by-line MNIST, and RNN / LSTM baselines.
//! * [`plot`], [`bench`] — figures and benchmarks.
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
