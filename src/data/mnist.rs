//! MNIST in IDX format (`train-images-idx3-ubyte[.gz]`, …), and the built-in sample.

use crate::data::download::DownloadProgress;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Images as rows of 28 pixels in [0, 1]; one image is a sequence of its 28 rows.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// `[n, 28, 28]`, row-major, pixels / 255.
    pub images: Vec<f32>,
    /// `[n]` digit labels, 0–9.
    pub labels: Vec<u8>,
}

/// Image side in pixels: 28 rows (time steps) of 28 pixels.
pub const SIDE: usize = 28;

impl Mnist {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`, `[28, 28]` row-major.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE]
    }

    /// The first `n` examples.
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * SIDE * SIDE);
        self.labels.truncate(n);
        self
    }
}

/// Where the data came from.
#[derive(Clone, Debug, PartialEq)]
pub enum MnistSource {
    /// IDX files in this folder (found there or downloaded into it).
    Dir(PathBuf),
    /// The 6,000 / 1,000-digit sample built into the binary, and why it was used.
    BuiltInSample {
        /// Why the sample was used (offline, or the download error).
        why: String,
    },
}

const SAMPLE_TRAIN_IMAGES: &[u8] =
    include_bytes!("../../data/mnist-sample/train-images-idx3-ubyte.gz");
const SAMPLE_TRAIN_LABELS: &[u8] =
    include_bytes!("../../data/mnist-sample/train-labels-idx1-ubyte.gz");
const SAMPLE_TEST_IMAGES: &[u8] =
    include_bytes!("../../data/mnist-sample/t10k-images-idx3-ubyte.gz");
const SAMPLE_TEST_LABELS: &[u8] =
    include_bytes!("../../data/mnist-sample/t10k-labels-idx1-ubyte.gz");

fn gunzip_if_needed(bytes: Vec<u8>, name: &str) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{name}: corrupt gzip data"))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses an IDX image file (magic 0x803): `[n, 28, 28]` bytes → pixels in [0, 1].
pub fn parse_images(bytes: &[u8], name: &str) -> Result<Vec<f32>> {
    if bytes.len() < 16 || be_u32(bytes, 0) != 0x0000_0803 {
        bail!("{name}: not an IDX image file (magic number 0x00000803 expected)");
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if rows != SIDE || cols != SIDE {
        bail!("{name}: images are {rows}×{cols}, expected 28×28");
    }
    let want = 16 + n * rows * cols;
    if bytes.len() < want {
        bail!(
            "{name}: truncated: header says {n} images ({want} bytes) but the file has {} bytes",
            bytes.len()
        );
    }
    Ok(bytes[16..want].iter().map(|&p| p as f32 / 255.0).collect())
}

/// Parses an IDX label file (magic 0x801).
pub fn parse_labels(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    if bytes.len() < 8 || be_u32(bytes, 0) != 0x0000_0801 {
        bail!("{name}: not an IDX label file (magic number 0x00000801 expected)");
    }
    let n = be_u32(bytes, 4) as usize;
    if bytes.len() < 8 + n {
        bail!(
            "{name}: truncated: header says {n} labels but the file has {} bytes",
            bytes.len()
        );
    }
    let labels = bytes[8..8 + n].to_vec();
    if let Some(i) = labels.iter().position(|&l| l > 9) {
        bail!("{name}: label {i} is {}, not a digit", labels[i]);
    }
    Ok(labels)
}

fn pair(images: (&[u8], &str), labels: (&[u8], &str)) -> Result<Mnist> {
    let images_raw = gunzip_if_needed(images.0.to_vec(), images.1)?;
    let labels_raw = gunzip_if_needed(labels.0.to_vec(), labels.1)?;
    let m = Mnist {
        images: parse_images(&images_raw, images.1)?,
        labels: parse_labels(&labels_raw, labels.1)?,
    };
    if m.images.len() != m.labels.len() * SIDE * SIDE {
        bail!(
            "{} has {} images but {} has {} labels",
            images.1,
            m.images.len() / (SIDE * SIDE),
            labels.1,
            m.labels.len()
        );
    }
    Ok(m)
}

/// Finds `{stem}` or `{stem}.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads (train, test) from `dir`, or `None` when the folder holds no MNIST files at all.
pub fn load_dir(dir: &Path) -> Result<Option<(Mnist, Mnist)>> {
    let stems = FILES;
    let found: Vec<Option<PathBuf>> = stems.iter().map(|s| find(dir, s)).collect();
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut files = Vec::new();
    for (stem, f) in stems.iter().zip(&found) {
        let path = f
            .as_ref()
            .with_context(|| format!("{}: {stem}[.gz] is missing", dir.display()))?;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        files.push((bytes, path.display().to_string()));
    }
    let train = pair((&files[0].0, &files[0].1), (&files[1].0, &files[1].1))?;
    let test = pair((&files[2].0, &files[2].1), (&files[3].0, &files[3].1))?;
    Ok(Some((train, test)))
}

/// The 6,000 training and 1,000 test digits of real MNIST built into gfr.
pub fn builtin_sample() -> (Mnist, Mnist) {
    let train = pair(
        (SAMPLE_TRAIN_IMAGES, "built-in train images"),
        (SAMPLE_TRAIN_LABELS, "built-in train labels"),
    )
    .expect("built-in sample");
    let test = pair(
        (SAMPLE_TEST_IMAGES, "built-in test images"),
        (SAMPLE_TEST_LABELS, "built-in test labels"),
    )
    .expect("built-in sample");
    (train, test)
}

/// Mirrors of the MNIST IDX files (PyTorch's and TensorFlow's), tried in order.
pub const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist",
    "https://storage.googleapis.com/cvdf-datasets/mnist",
];

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Downloads the MNIST files missing from `dir` (gzipped), trying each mirror in turn. Each
/// file arrives under `dir/.download/` (a `.part` file per mirror, resumed on the next run from
/// that mirror), is checked as an IDX file, and the files move into `dir` only when every
/// missing one is there, so a failed download never leaves `dir` half filled. The
/// environment variable `GFR_MNIST_MIRROR` (a URL holding the four `.gz` files) replaces the
/// built-in mirrors.
pub fn download(dir: &Path, progress: &dyn DownloadProgress) -> Result<()> {
    let agent = crate::data::download::agent();
    let custom = std::env::var("GFR_MNIST_MIRROR")
        .ok()
        .filter(|m| !m.trim().is_empty());
    let mirrors: Vec<&str> = match &custom {
        Some(m) => vec![m.trim().trim_end_matches('/')],
        None => MIRRORS.to_vec(),
    };
    let missing: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|stem| find(dir, stem).is_none())
        .collect();
    let staging = dir.join(".download");
    let mut last = None;
    for mirror in mirrors {
        let name: String = mirror
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let fetched = missing.iter().try_for_each(|stem| {
            let done = staging.join(format!("{stem}.gz"));
            if done.is_file() {
                return Ok(());
            }
            let path = staging.join(&name).join(format!("{stem}.gz"));
            let url = format!("{mirror}/{stem}.gz");
            let got = crate::data::download::fetch(&agent, &url, &path, stem, progress);
            progress.download_finished();
            got?;
            // a file that is not what it should be is removed, to be fetched again
            check_file(&path, stem).inspect_err(|_| {
                let _ = std::fs::remove_file(&path);
            })?;
            std::fs::rename(&path, &done)
                .with_context(|| format!("cannot move {} into place", done.display()))
        });
        match fetched {
            Ok(()) => {
                for stem in &missing {
                    let file = format!("{stem}.gz");
                    std::fs::rename(staging.join(&file), dir.join(&file))
                        .with_context(|| format!("cannot move {file} into {}", dir.display()))?;
                }
                let _ = std::fs::remove_dir_all(&staging);
                return Ok(());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no MNIST mirror answered")))
}

/// Parses a downloaded IDX file (images or labels, by its name).
fn check_file(path: &Path, stem: &str) -> Result<()> {
    let name = path.display().to_string();
    let bytes = gunzip_if_needed(
        std::fs::read(path).with_context(|| format!("cannot read {name}"))?,
        &name,
    )?;
    if stem.contains("images") {
        parse_images(&bytes, &name).map(|_| ())
    } else {
        parse_labels(&bytes, &name).map(|_| ())
    }
}

/// MNIST from `dir`. When it holds none: downloaded into `dir` (unless `offline`; progress
/// through `progress`), and when that fails (no network), the built-in sample, with the reason.
pub fn load(
    dir: &Path,
    offline: bool,
    progress: &dyn DownloadProgress,
) -> Result<(Mnist, Mnist, MnistSource)> {
    let present = FILES.iter().filter(|s| find(dir, s).is_some()).count();
    if present == FILES.len() || (present > 0 && offline) {
        // a partial folder offline: load_dir names the missing file
        if let Some((train, test)) = load_dir(dir)? {
            return Ok((train, test, MnistSource::Dir(dir.to_path_buf())));
        }
    }
    let why = if offline {
        "offline: no download tried".to_string()
    } else {
        progress.download_note(&format!(
            "MNIST is not (all) in {}: downloading it",
            dir.display()
        ));
        match download(dir, progress) {
            Ok(()) => {
                let (train, test) = load_dir(dir)?.with_context(|| {
                    format!("{}: the download left no MNIST files", dir.display())
                })?;
                return Ok((train, test, MnistSource::Dir(dir.to_path_buf())));
            }
            Err(e) if present > 0 => {
                let missing = FILES.iter().find(|s| find(dir, s).is_none()).unwrap();
                bail!(
                    "{}: {missing}[.gz] is missing, and downloading it failed: {e:#}",
                    dir.display()
                );
            }
            Err(e) => format!("download failed: {e:#}"),
        }
    };
    let (train, test) = builtin_sample();
    Ok((train, test, MnistSource::BuiltInSample { why }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_sample_is_real_mnist() {
        let (train, test) = builtin_sample();
        assert_eq!((train.len(), test.len()), (6000, 1000));
        assert!(train.images.iter().all(|&p| (0.0..=1.0).contains(&p)));
        let mut counts = [0; 10];
        train.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&c| c > 450), "{counts:?}");
        // an MNIST digit has ink in the middle and none in the corners
        let img = train.image(0);
        assert_eq!(img[0], 0.0);
        assert!(img.iter().filter(|&&p| p > 0.5).count() > 50);
    }

    #[test]
    fn truncated_and_wrong_files_name_themselves() {
        let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
        bytes.extend(vec![0u8; 784]);
        let e = parse_images(&bytes, "x-images").unwrap_err().to_string();
        assert!(e.contains("x-images") && e.contains("truncated"), "{e}");
        let e = parse_labels(&bytes, "y-labels").unwrap_err().to_string();
        assert!(e.contains("y-labels") && e.contains("0x00000801"), "{e}");
        let e = gunzip_if_needed(vec![0x1f, 0x8b, 1, 2, 3], "z.gz")
            .unwrap_err()
            .to_string();
        assert!(e.contains("z.gz"), "{e}");
    }
}
