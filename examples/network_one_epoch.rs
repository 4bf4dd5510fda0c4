//! Train a small network of GFR neurons for one epoch on the built-in MNIST sample and print
//! its test accuracy, through the public API only.
//!
//!     cargo run --release --example network_one_epoch
//!
//! 64 default GFR neurons, 4,000 training and 500 test digits, one epoch: about 2 s (test
//! accuracy 0.50 after it; chance is 0.1).
//!
//! `gfr::run_network` runs the whole experiment of `gfr network` instead (MNIST, neuron
//! source, baselines, checkpoints, the saved network and its JSON) from a `gfr::NetworkSpec`.

use gfr::network::LrSchedule;
use gfr::network::mnist::builtin_sample;
use gfr::{GfrNetwork, TrainSettings, default_neuron};

/// Trains the network for one epoch; returns (train accuracy, test accuracy at the first
/// readout step).
pub fn run() -> (f64, f64) {
    let (train_set, test_set) = builtin_sample();
    let (train_set, test_set) = (train_set.truncate(4000), test_set.truncate(500));
    // training needs an autodiff device; seeding it fixes the initial weights
    let device = gfr::cpu().autodiff();
    device.seed(0);
    let net = GfrNetwork::new(&vec![default_neuron(); 64], false, &device);
    let settings = TrainSettings {
        lr: 5e-3,
        schedule: LrSchedule::Anneal,
        epochs: 1,
        batch_size: 32,
        seed: 0,
    };
    let (_trained, history) = gfr::network::train(net, &train_set, &test_set, &settings, &device);
    let last = history.last().expect("one epoch");
    (last.train_accuracy, last.test_accuracy_step1)
}

#[allow(dead_code)] // the tests call `run`
fn main() {
    let (train, test) = run();
    println!("after 1 epoch: train accuracy {train:.3}, test accuracy {test:.3}");
}
