//! The wgpu path: one small cell fitted on wgpu agrees with the CPU fit.
//! Skipped, saying so, when no wgpu adapter exists.

use gfr::data::DataDir;
use gfr::device::{Backend, wgpu_available};
use gfr::fit::{FitConfig, FitOptions, RunConfig, fit_and_save};
use gfr::simulate::{GroundTruth, simulate_cell};

#[test]
fn wgpu_fit_agrees_with_cpu() {
    if !wgpu_available() {
        eprintln!("SKIPPED wgpu_fit_agrees_with_cpu: no wgpu adapter on this machine");
        return;
    }
    let dir = std::env::temp_dir().join(format!("gfr-test-wgpu-{}", std::process::id()));
    let data = DataDir::new(dir.join("data"));
    simulate_cell(1, 0, 2, GroundTruth::Gfr)
        .recording
        .save(&data)
        .unwrap();
    let mut config = FitConfig::new(vec![RunConfig::new(1e-2, 20)]);
    config.activation_epochs = 40;
    config.activation_repeats = 1;
    let mut evr = Vec::new();
    for backend in [Backend::Cpu, Backend::Wgpu] {
        let opts = FitOptions::new(
            data.clone(),
            dir.join(backend.name()),
            config.clone(),
            backend.device().unwrap(),
        );
        let r = fit_and_save(1, &opts, &());
        assert_eq!(r.status, "saved", "{}: {}", backend.name(), r.message);
        eprintln!(
            "{}: test EVR {:?} in {:.1} s",
            backend.name(),
            r.test_evr,
            r.seconds
        );
        evr.push(r.test_evr.unwrap());
    }
    assert!(
        (evr[0] - evr[1]).abs() < 0.02,
        "cpu {} vs wgpu {}",
        evr[0],
        evr[1]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn only_the_cpu_device_counts_as_cpu() {
    assert!(gfr::device::is_cpu(&gfr::device::cpu()));
    assert!(gfr::device::is_cpu(&gfr::device::cpu().autodiff()));
    if !wgpu_available() {
        eprintln!("SKIPPED the wgpu half of only_the_cpu_device_counts_as_cpu: no wgpu adapter");
        return;
    }
    assert!(!gfr::device::is_cpu(
        &Backend::Wgpu.device().unwrap().autodiff()
    ));
}
