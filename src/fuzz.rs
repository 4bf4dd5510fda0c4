//! Mutation fuzzing of gfr's file readers (used by `tests/fuzz.rs`): random byte-level edits
//! of valid files, each read in turn; a panic or a read that takes longer than
//! [`HANG_SECONDS`] fails, and the offending input is saved for reproduction.
//!
//! `GFR_FUZZ_ITERS=N` sets the mutations per reader (default [`DEFAULT_ITERATIONS`]);
//! `GFR_FUZZ_SEED=S` picks another random stream.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Mutations per reader in a normal test run.
pub const DEFAULT_ITERATIONS: usize = 1500;
/// A single read taking longer than this counts as a hang.
pub const HANG_SECONDS: u64 = 30;

/// Tokens spliced into inputs: boundary numbers, JSON / pickle fragments, huge lengths.
const TOKENS: [&[u8]; 18] = [
    b"NaN",
    b"-Infinity",
    b"1e308",
    b"-1",
    b"0",
    b"18446744073709551616",
    b"[]",
    b"{}",
    b"null",
    b"\"\"",
    b"[[[[[[[[",
    b"\xff\xff\xff\xff",
    b"\x7f\xff\xff\xff",
    b"\x00\x00\x00\x80",
    b"]q\x00h\x00a",
    b"(]]]]l",
    b"\x80\x05",
    b"\x00",
];

/// One random edit (1–4 changes) of `seed`.
pub fn mutate(rng: &mut StdRng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        let at = if len == 0 {
            0
        } else {
            rng.random_range(0..len)
        };
        match rng.random_range(0..9) {
            0 if len > 0 => b[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => b[at] = rng.random(),
            2 if len > 0 => b[at] = [0u8, 0xff, 0x7f, 0x80, b'0', b'9'][rng.random_range(0..6)],
            3 => b.truncate(at),
            4 => {
                let n = rng.random_range(1..16);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(at..at, junk);
            }
            5 if len > 0 => {
                let end = (at + rng.random_range(1..64)).min(len);
                b.drain(at..end);
            }
            6 if len > 0 => {
                // repeat a chunk: repeated structures, memo references, nesting
                let end = (at + rng.random_range(1..256)).min(len);
                let chunk = b[at..end].to_vec();
                let to = rng.random_range(0..=b.len());
                for _ in 0..rng.random_range(1..8) {
                    b.splice(to..to, chunk.iter().copied());
                }
            }
            7 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                if rng.random_bool(0.5) && at + t.len() <= len {
                    b[at..at + t.len()].copy_from_slice(t);
                } else {
                    b.splice(at..at, t.iter().copied());
                }
            }
            _ if len >= 8 => {
                // a large length / offset in 4 or 8 bytes
                let n = if rng.random_bool(0.5) { 4 } else { 8 };
                let at = at.min(len - n);
                let v: u64 =
                    [u64::MAX, u32::MAX as u64, 1 << 31, 1 << 40, 0][rng.random_range(0..5)];
                b[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
            }
            _ => {}
        }
    }
    b
}

/// Iterations from `GFR_FUZZ_ITERS`, else `default`.
pub fn iterations(default: usize) -> usize {
    std::env::var("GFR_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads `iterations` mutations of the `seeds` with `read` (which must not panic or hang;
/// errors are expected). Returns how many mutations were read, or what went wrong with the
/// path of the saved input.
pub fn fuzz(
    name: &str,
    seeds: Vec<Vec<u8>>,
    iterations: usize,
    read: impl Fn(&[u8]) + Send + 'static,
) -> Result<usize, String> {
    assert!(!seeds.is_empty(), "fuzz {name}: no seed inputs");
    let seed: u64 = std::env::var("GFR_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let current: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (tx, rx) = mpsc::channel::<Result<(), String>>();
    let cur = current.clone();
    let name_owned = name.to_string();
    std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .spawn(move || {
            let mut rng = StdRng::seed_from_u64(seed ^ hash(&name_owned));
            for i in 0..iterations {
                let s = &seeds[i % seeds.len()];
                let input = mutate(&mut rng, s);
                *cur.lock().unwrap_or_else(|e| e.into_inner()) = input.clone();
                let r = catch_unwind(AssertUnwindSafe(|| read(&input)));
                let msg = r.map_err(|p| {
                    let what = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("panic on mutation {i}: {what}")
                });
                let failed = msg.is_err();
                if tx.send(msg).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let save = |why: String| {
        let p = save_input(name, &current.lock().unwrap_or_else(|e| e.into_inner()));
        format!("fuzz {name}: {why}; input saved to {}", p.display())
    };
    for done in 0..iterations {
        match rx.recv_timeout(Duration::from_secs(HANG_SECONDS)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(save(e)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(save(format!(
                    "mutation {done} still being read after {HANG_SECONDS} s (hang)"
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(save(format!("reader thread died at mutation {done}")));
            }
        }
    }
    Ok(iterations)
}

fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn save_input(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("gfr-fuzz-{name}-{}.bin", std::process::id()));
    let _ = std::fs::write(&p, bytes);
    p
}

/// Peak resident memory of this process (MB), where /proc tells it.
pub fn peak_memory_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
