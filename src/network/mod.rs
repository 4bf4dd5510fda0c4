//! Networks of GFR neurons on line-by-line MNIST (spec §5), with RNN and LSTM baselines.

mod cube;
pub mod diagnose;
pub mod experiment;
mod fused;
pub mod model;
pub mod train;

/// The MNIST reader and built-in sample, which live in [`crate::data::mnist`]; re-exported so
/// that `gfr::network::mnist` paths keep working.
pub use crate::data::mnist;

pub use diagnose::{Diagnostics, diagnose};
pub use experiment::{
    GfrRun, ModelKind, NetworkObserver, NetworkRun, NetworkSpec, NeuronSource, RunDiagnostics,
    SavedNetwork, bio_units_for, neurons_from_network_json, run_network,
};
pub use mnist::{Mnist, MnistSource};
pub use model::{
    BioInput, BioUnits, GfrNetwork, HISTORY_SCALE, LineClassifier, LstmNetwork, OperatingPoint,
    RnnNetwork, default_neuron, matched_hidden_sizes,
};
pub use train::{
    ANNEAL_FRACTION, Checkpoint, EpochStats, LrSchedule, TrainProgress, TrainSettings, adam,
    clip_global_norm, evaluate, parameter_counts, silent_readout, train, train_resumable,
};
