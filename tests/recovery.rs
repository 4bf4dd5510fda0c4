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

/// The first-epoch train loss of every run, through the progress callbacks.
#[derive(Default)]
struct FirstLosses {
    run: std::cell::Cell<usize>,
    seen: std::cell::RefCell<Vec<(usize, usize, f64)>>,
}
impl gfr::fit::FitProgress for FirstLosses {
    fn run_started(&self, run: usize, _runs: usize, _epochs: usize) {
        self.run.set(run);
    }
    fn epoch(&self, epoch: usize, train_loss: f64) {
        self.seen
            .borrow_mut()
            .push((self.run.get(), epoch, train_loss));
    }
}

/// A scratch folder `gfr-test-{name}-PID` holding one GFR-truth cell (`id`, population `seed`,
/// cell `index`) in its `data/`.
fn one_gfr_cell(name: &str, id: u64, index: usize, seed: u64) -> (std::path::PathBuf, DataDir) {
    let dir = std::env::temp_dir().join(format!("gfr-test-{name}-{}", std::process::id()));
    let data = DataDir::new(dir.join("data"));
    simulate_cell(id, index, seed, GroundTruth::Gfr)
        .recording
        .save(&data)
        .unwrap();
    (dir, data)
}

#[test]
fn a_from_best_run_starts_from_the_best_run_so_far() {
    let (dir, data) = one_gfr_cell("frombest", 140, 0, 5);
    let mut config = FitConfig::new(vec![
        RunConfig::new(1e-2, 40),
        RunConfig::from_best(1e-3, 3),
        RunConfig::new(1e-3, 3),
    ]);
    config.activation_epochs = 200;
    config.activation_repeats = 1;
    let opts = FitOptions::new(data, dir.join("params"), config, gfr::device::cpu());
    let progress = FirstLosses::default();
    let r = fit_and_save(140, &opts, &progress);
    assert_eq!(r.status, "saved", "{}", r.message);
    let seen = progress.seen.into_inner();
    let loss = |run: usize, first: bool| {
        let mut l = seen.iter().filter(|s| s.0 == run).map(|s| s.2);
        if first { l.next() } else { l.last() }.unwrap()
    };
    // the refinement goes on from where run 1 ended; the fresh run starts over
    let (end1, refine, fresh) = (loss(0, false), loss(1, true), loss(2, true));
    eprintln!("run 1 ends at {end1}, refinement starts at {refine}, fresh run at {fresh}");
    assert!((refine - end1).abs() < 0.05 * end1, "{refine} vs {end1}");
    assert!(
        fresh > refine + 0.1 * (fresh - end1).abs() && fresh > end1,
        "{fresh}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A run with `min_gain` replaces the best run so far only when its validation EVR is higher
/// by more than that: with an unreachable margin the result is the first run's (the same
/// validation and test EVR); without one it is the better of the two.
#[test]
fn a_refinement_replaces_the_best_run_only_by_its_margin() {
    let (dir, data) = one_gfr_cell("mingain", 150, 1, 9);
    let fit = |runs: Vec<RunConfig>, name: &str| {
        let mut config = FitConfig::new(runs);
        config.activation_epochs = 200;
        config.activation_repeats = 1;
        let opts = FitOptions::new(data.clone(), dir.join(name), config, gfr::device::cpu());
        let r = fit_and_save(150, &opts, &());
        assert_eq!(r.status, "saved", "{}", r.message);
        (r.val_evr.unwrap(), r.test_evr.unwrap())
    };
    let refine = |min_gain: f64| RunConfig {
        min_gain,
        ..RunConfig::from_best(3e-3, 30)
    };
    let alone = fit(vec![RunConfig::new(1e-2, 30)], "alone");
    let free = fit(vec![RunConfig::new(1e-2, 30), refine(0.0)], "free");
    let held = fit(vec![RunConfig::new(1e-2, 30), refine(0.99)], "held");
    eprintln!(
        "val / test EVR: first run {alone:?}, with the refinement {free:?}, margin 0.99 {held:?}"
    );
    assert!(
        free.0 > alone.0,
        "the refinement gains ({free:?} vs {alone:?})"
    );
    assert_ne!(free.1, alone.1);
    assert_eq!(held, alone);
    std::fs::remove_dir_all(dir).unwrap();
}
