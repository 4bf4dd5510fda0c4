//! Networks of GFR neurons on line-by-line MNIST (spec §5), with RNN and LSTM baselines.

pub mod mnist;
pub mod model;
pub mod train;

pub use mnist::{Mnist, MnistSource};
pub use model::{
    GfrNetwork, HISTORY_SCALE, LineClassifier, LstmNetwork, RnnNetwork, default_neuron,
    matched_hidden_sizes,
};
pub use train::{
    EpochStats, TrainSettings, clip_global_norm, evaluate, parameter_counts, silent_readout, train,
};
