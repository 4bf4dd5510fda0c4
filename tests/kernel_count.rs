//! Kernel launches per training mini-batch on wgpu, as `gfr bench --network` counts them. A
//! test binary of its own: the launch observer is process-wide, and other tests' kernels
//! running at the same time would be counted too.

use gfr::device::{Backend, wgpu_available};

/// `gfr bench --network` counts the kernels a training mini-batch launches on wgpu (none on
/// the CPU): a guard that launches per batch stay within issue #27's 40 (21 at H = 16 and 128
/// on Mesa, 2026-12-04: the fused network step, Adam with the clipping factor folded in, and
/// two clipping kernels; 152 with Burn's operations for all of it).
#[test]
fn kernels_per_batch_are_counted_and_do_not_grow() {
    let cpu =
        gfr::bench::bench_network(16, 64, 1, Some(256), "cpu", Backend::Cpu.device().unwrap());
    assert_eq!(cpu.kernels_per_batch, 0.0);
    assert!(cpu.host_ms_per_batch > 0.0);
    if !wgpu_available() {
        eprintln!("SKIPPED the wgpu half of kernels_per_batch_are_counted: no wgpu adapter");
        return;
    }
    let b = gfr::bench::bench_network(
        16,
        64,
        1,
        Some(256),
        "wgpu",
        Backend::Wgpu.device().unwrap(),
    );
    println!(
        "wgpu: {} kernels per batch, {:.1} ms per batch; most launched: {:?}",
        b.kernels_per_batch, b.host_ms_per_batch, b.top_kernels
    );
    assert!(b.kernels_per_batch > 20.0, "{b:?}");
    assert!(
        b.kernels_per_batch <= 40.0,
        "launches per batch grew: {b:?}"
    );
    // launches per batch of the kernels whose names contain `part`
    let per_batch = |part: &str| -> f64 {
        b.top_kernels
            .iter()
            .filter(|(name, _)| name.contains(part))
            .map(|(_, n)| n)
            .sum()
    };
    assert_eq!(
        per_batch("Adam"),
        10.0,
        "one fused Adam kernel per parameter: {b:?}"
    );
    assert_eq!(
        per_batch("ClipSums"),
        2.0,
        "one clipping kernel per eight gradients: {b:?}"
    );
    // the fused step: drive, readout and their backward passes once per batch
    for kernel in [
        "DriveKernel",
        "DriveBackwardKernel",
        "ReadoutKernel",
        "ReadoutBackwardKernel",
        "ScanForwardKernel",
    ] {
        assert_eq!(per_batch(kernel), 1.0, "{kernel} once per batch: {b:?}");
    }
    assert_eq!(
        per_batch("KernelBinop"),
        0.0,
        "no element-wise binary kernels: {b:?}"
    );
    // (β's history scale is applied inside the kernels)
    assert_eq!(
        per_batch("KernelScalarBinop"),
        0.0,
        "no scalar kernels: {b:?}"
    );
}
