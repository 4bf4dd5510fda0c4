//! Preprocessing speed of NWB 2 files (read, spike detection from the voltage, binning):
//! a 3-repeat, 200 kHz simulated cell of about 86 MB, written in the pynwb / IPFX layout.
//!
//!     cargo bench --bench preprocess_nwb2
//!
//! Prints seconds per 100 MB and the time of each part.

#[path = "../tests/common/nwb2_fixture.rs"]
mod nwb2_fixture;
use nwb2_fixture::*;

use gfr::data::nwb2::{Nwb2Options, read_recording};

fn main() {
    let dir = std::env::temp_dir().join(format!("gfr-bench-nwb2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let nwb = dir.join("nwb");
    let rate = 200_000.0;
    let mut fixture = Vec::new();
    for k in 0..3 {
        let mut s = sweeps(rate, 3.0, 100 + k);
        s.retain(|x| !x.name.is_empty());
        for (j, x) in s.iter_mut().enumerate() {
            x.number = 10 + (k as u32) * 10 + j as u32;
        }
        fixture.extend(s);
    }
    write_nwb2(&nwb.join("41.nwb"), &fixture, rate, false);
    let mb = std::fs::metadata(nwb.join("41.nwb")).unwrap().len() as f64 / 1e6;
    let data = gfr::data::DataDir::new(dir.join("data"));
    let t0 = std::time::Instant::now();
    let (outcome, _) =
        gfr::data::preprocess::preprocess_cell_with(&nwb, &data, 41, &Nwb2Options::default());
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "preprocessed a {mb:.0} MB NWB 2 file ({} sweeps at 200 kHz) in {secs:.2} s: {:.2} s per 100 MB; {outcome:?}",
        fixture.len(),
        secs / mb * 100.0
    );
    // the parts: reading + detection, binning
    let t0 = std::time::Instant::now();
    let rec = read_recording(&nwb.join("41.nwb"), &Nwb2Options::default()).unwrap();
    let read = t0.elapsed().as_secs_f64();
    let t0 = std::time::Instant::now();
    for (_, s) in &rec.sweeps {
        gfr::data::bin_sweep(s, &gfr::data::PROCESSED_BIN_SIZES);
    }
    println!(
        "read + spike detection: {read:.2} s ({} spikes); binning: {:.2} s",
        rec.sweeps
            .iter()
            .map(|(_, s)| s.spike_times.len())
            .sum::<usize>(),
        t0.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(dir).unwrap();
}
