//! Kernel launches per training mini-batch on wgpu, as `gfr bench --network` counts them. A
//! test binary of its own: the launch observer is process-wide, and other tests' kernels
//! running at the same time would be counted too.

use gfr::device::{Backend, wgpu_available};

/// `gfr bench --network` counts the kernels a training mini-batch launches on wgpu (none on
/// the CPU): a guard that launches per batch do not grow past what was measured (107 at
/// H = 16 and 128 on Mesa, 2026-12-04; 152 before the clipping, packing and unpacking kernels;
/// issue #27 asks for at most 40).
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
    // (some slack: autotune may pick other matmul kernels on other hardware)
    assert!(
        b.kernels_per_batch <= 160.0,
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
        per_batch("SquaredSum"),
        10.0,
        "one squared-sum kernel per gradient: {b:?}"
    );
}
