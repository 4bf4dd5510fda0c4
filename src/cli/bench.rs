//! `gfr bench`: fitting and network-training benchmarks.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{ConfigPath, DeviceArg, load_fit_config};

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(super) struct BenchArgs {
    /// Number of simulated cells.
    #[arg(long, default_value_t = 20)]
    cells: usize,
    #[command(flatten)]
    config: ConfigPath,
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    seed: super::SeedArg,
    #[command(flatten)]
    batch: super::BatchCells,
    /// Also write the numbers as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Benchmark network training instead: seconds per epoch of the default GFR network on the
    /// built-in 6,000-digit sample.
    #[arg(long)]
    network: bool,
    /// Network benchmark: hidden neurons H.
    #[arg(long = "n-nodes", default_value_t = 128)]
    n_nodes: usize,
    /// Network benchmark: digits per mini-batch.
    #[arg(long = "batch-size", default_value_t = 64)]
    batch_size: usize,
    /// Network benchmark: epochs timed.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
}

pub(super) fn run(a: BenchArgs) -> Result<()> {
    let batch_cells = a.batch.or_default(a.device.backend());
    if a.cells == 0 || batch_cells == 0 {
        bail!("--cells and --batch-cells must be at least 1");
    }
    let device = a.device.backend().device().context("--device")?;
    if let Some(p) = &a.json {
        gfr::fit::store::check_output_file(p, "--json")?;
    }
    if a.network {
        for (flag, value) in [
            ("--n-nodes", a.n_nodes),
            ("--batch-size", a.batch_size),
            ("--epochs", a.epochs),
        ] {
            if value == 0 {
                bail!("{flag} 0: must be at least 1");
            }
        }
        eprintln!(
            "benchmark: {} epochs of the default GFR network, H = {}, batch {}, on {}",
            a.epochs,
            a.n_nodes,
            a.batch_size,
            a.device.backend().name()
        );
        let b = gfr::bench::bench_network(
            a.n_nodes,
            a.batch_size,
            a.epochs,
            None,
            a.device.backend().name(),
            device,
        );
        println!("seconds per epoch   {:.3}", b.seconds_per_epoch);
        println!("test acc (step 1)   {:.3}", b.test_accuracy_step1);
        println!("peak memory (MB)    {:.0}", b.peak_memory_mb);
        if b.device_memory_mb > 0.0 {
            println!("device memory (MB)  {:.0}", b.device_memory_mb);
        }
        println!("host ms per batch   {:.2}", b.host_ms_per_batch);
        print_kernels("batch", b.kernels_per_batch, &b.top_kernels);
        if let Some(p) = a.json {
            gfr::data::pickle::write_atomic(&p, &serde_json::to_vec_pretty(&b)?)?;
        }
        return Ok(());
    }
    let config = load_fit_config(a.config.config_path.clone())?;
    eprintln!(
        "benchmark: fitting {} simulated cells with config `{}` on {}",
        a.cells,
        config.config_name,
        a.device.backend().name()
    );
    let b = gfr::bench::bench_fit(
        a.cells,
        batch_cells,
        config,
        a.device.backend().name(),
        device,
        a.seed.seed,
        &|b| {
            // with more than one batch: where the run stands (a long run shows its speed early)
            if a.cells > batch_cells {
                eprintln!(
                    "batch done: {} of {} cells in {:.1} s ({:.3} s per cell), median test EVR {:.3}, peak memory {:.0} MB{}",
                    b.cells_done,
                    b.cells,
                    b.seconds,
                    b.seconds / b.cells_done as f64,
                    b.median_test_evr,
                    b.peak_memory_mb,
                    if b.device_memory_mb > 0.0 {
                        format!(
                            ", device memory {:.0} MB, device wait {:.0} %",
                            b.device_memory_mb,
                            100.0 * b.device_wait / b.seconds
                        )
                    } else {
                        String::new()
                    }
                );
            }
        },
    )?;
    println!(
        "cells               {} ({} at a time)",
        b.cells, b.batch_cells
    );
    println!("seconds per cell    {:.4}", b.seconds_per_cell);
    println!("seconds per epoch   {:.5}", b.seconds_per_epoch);
    println!("cells per hour      {:.0}", b.cells_per_hour);
    println!("median test EVR     {:.3}", b.median_test_evr);
    println!("peak memory (MB)    {:.0}", b.peak_memory_mb);
    if b.device_memory_mb > 0.0 {
        println!("device memory (MB)  {:.0}", b.device_memory_mb);
        println!(
            "device wait         {:.2} ms per cell ({:.0} % of the time: the rest is the host's)",
            1e3 * b.device_wait_per_cell,
            100.0 * b.device_wait_per_cell / b.seconds_per_cell
        );
    }
    print_kernels("cell", b.kernels_per_cell, &b.top_kernels);
    if let Some(p) = a.json {
        gfr::data::pickle::write_atomic(&p, &serde_json::to_vec_pretty(&b)?)?;
    }
    Ok(())
}

/// Kernels launched per `unit` (batch, cell) and the most launched ones.
fn print_kernels(unit: &str, per: f64, top: &[(String, f64)]) {
    if per > 0.0 {
        println!("kernels per {unit:<8}{per:.0}");
        println!("  most launched, per {unit}:");
        for (name, n) in top {
            println!("  {n:>8.1}  {name}");
        }
    } else {
        println!("kernels per {unit:<8}0 (the CPU backend launches none)");
    }
}
