//! Cells simulated from a known GFR neuron (Poisson spikes) are fitted back.

use gfr::data::DataDir;
use gfr::fit::{FitConfig, FitOptions, RunConfig, fit_and_save};
use gfr::simulate::{GroundTruth, simulate_cell};

#[test]
fn fitting_recovers_a_known_gfr_neuron() {
    let dir = std::env::temp_dir().join(format!("gfr-test-recovery-{}", std::process::id()));
    let data = DataDir::new(dir.join("data"));
    let mut config = FitConfig::new(vec![RunConfig::new(1e-2, 150), RunConfig::new(1e-3, 60)]);
    config.activation_epochs = 300;
    config.activation_repeats = 2;
    let opts = FitOptions::new(data.clone(), dir.join("params"), config, gfr::device::cpu());
    for k in 0..2 {
        let cell = simulate_cell(100 + k as u64, k, 11, GroundTruth::Gfr);
        cell.recording.save(&data).unwrap();
        let truth = cell.truth.unwrap();
        // how well the generating neuron itself explains Noise 2: the ceiling for the fit
        let test = gfr::fit::FitData::from_cell(&cell.recording, 20)
            .unwrap()
            .test;
        let ceiling = test.evr(&truth);
        let r = fit_and_save(100 + k as u64, &opts, &());
        eprintln!(
            "cell {k}: truth EVR {ceiling:.3}, fitted val {:?} test {:?} ({:.1} s) {}",
            r.val_evr, r.test_evr, r.seconds, r.message
        );
        assert_eq!(r.status, "saved", "{}", r.message);
        let evr = r.test_evr.unwrap();
        assert!(evr > 0.8, "test EVR {evr} (generating neuron: {ceiling})");
    }
    std::fs::remove_dir_all(dir).unwrap();
}
