//! The `gfr` command line.

mod cli;

fn main() {
    keep_freed_memory();
    if let Err(e) = cli::run() {
        eprintln!("error: {e:#}");
        // 3: some cells failed, the others are done; 1: anything else (usage, setup)
        std::process::exit(match gfr::error::kind(&e) {
            gfr::error::ErrorKind::SomeFailed => gfr::error::EXIT_SOME_FAILED,
            _ => 1,
        });
    }
}

/// The host scan allocates and frees buffers of a few MB per mini-batch. By default glibc
/// serves those with fresh mmap pages and returns them on free, so every call pays for page
/// faults (about a tenth of a CPU network epoch). Heap allocations kept for reuse avoid that;
/// the numbers computed do not change.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}
