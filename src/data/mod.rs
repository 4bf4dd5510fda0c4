//! Data formats: binning of sweeps, the processed-data layout, pickle I/O, and MNIST (IDX files
//! and the built-in sample).

pub mod binning;
pub mod download;
pub mod mnist;
pub mod nwb;
pub mod nwb2;
pub mod nwb2_write;
pub mod pickle;
pub mod preprocess;
pub mod processed;
pub mod spikes;
pub mod unpickle;

pub use binning::{PROCESSED_BIN_SIZES, ProcessedSweep, RawSweep, bin_sweep, max_firing_rate};
pub use processed::{CellRecording, DataDir, read_cell_ids, write_cell_ids};
