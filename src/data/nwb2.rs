//! Reading NWB 2 patch-clamp files (pynwb / MIES / IPFX layout), which carry no spike times:
//! spikes are detected from the membrane potential ([`super::spikes`]).
//!
//! * **Version**: an NWB 2 file has a root *attribute* `nwb_version` ("2.x.y"); NWB 1 files
//!   have a root *dataset* `nwb_version` ("NWB-1.x"). [`read_recording`] reads either.
//! * **Series**: every `CurrentClampSeries` group under `/acquisition` (the voltage) is paired
//!   with the `CurrentClampStimulusSeries` under `/stimulus/presentation` (the injected current)
//!   of the same sweep number. `data` is scaled to SI units by its `conversion` (and `offset`)
//!   attributes; each series has its own sampling rate (`starting_time` attribute `rate`, or
//!   the spacing of `timestamps`). Other series (voltage clamp, I = 0) are ignored.
//! * **Sweep number**: a `sweep_number` dataset in the series group, else its `sweep_number`
//!   attribute when its value is below 128, else the first number in the series name (pynwb and
//!   IPFX name series `data_00012_AD0` / `data_00012_DA0` or `index_12`): the HDF5 reader here
//!   reads group attributes only as text, which is exact for such small integers only.
//! * **Stimulus names**: the series' `stimulus_description` (e.g. `C1LSCOARSE150216_DA_0`,
//!   with any `[n]` and `_DA_n` suffix removed) through the Allen / IPFX stimulus ontology
//!   ([`StimulusNames`]; `C1LS…` Long Square, `C1RP…` Ramp, `C1NSSEED_1…` Noise 1, …),
//!   preceded by an optional user mapping. Test sweeps (`EXTP…`) are skipped; unknown codes
//!   are skipped with a note.
//! * **Epochs**, as IPFX finds them: trailing zeros of the response count as missing, and the
//!   recording ends at its last non-NaN sample (or where the response series ends, if it is
//!   shorter than the stimulus); a test pulse (the first current change within 0.4 s, and the
//!   next one) is excluded with IPFX's test epoch (the pulse padded by the time before it on
//!   either side). The sweep's experiment range — what the NWB 1 path reads from
//!   `epochs/Experiment_N` — runs from after the test epoch to the end of the recording; the
//!   binning (spec §2) then works as for NWB 1.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rust_hdf5::{H5File, H5Group};

use super::binning::RawSweep;
use super::nwb::{h5, read_f64, read_numbered_from};
use super::spikes::{SpikeParams, detect_spikes, sample_time};

/// The NWB version of an open file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NwbVersion {
    /// NWB 1.x (or no recognisable version): the Allen Cell Types layout.
    One,
    /// NWB 2.x, with its version string.
    Two(String),
}

/// NWB 2 if the root attribute `nwb_version` exists and does not name version 1.
pub fn nwb_version(f: &H5File) -> NwbVersion {
    match f.attr_string("nwb_version") {
        Ok(v) => {
            let v = v.trim_end_matches('\0').trim().to_string();
            let bare = v.trim_start_matches("NWB-").trim_start_matches('v');
            if bare.starts_with('1') || bare.is_empty() {
                NwbVersion::One
            } else {
                NwbVersion::Two(v)
            }
        }
        Err(_) => NwbVersion::One,
    }
}

/// Built-in codes of the Allen / IPFX stimulus ontology (`ipfx/defaults/stimulus_ontology.json`):
/// (code, name, whether the code is a prefix). Codes with the ontology name "Unknown" or
/// "Search" are left out (their sweeps are skipped as unknown).
const ALLEN_CODES: &[(&str, &str, bool)] = &[
    ("EXTP", "Test", true),
    ("C1LS", "Long Square", true),
    ("C1SSCOARSE", "Short Square", true),
    ("C1SSFINEST", "Short Square", true),
    ("C1SS", "Short Square", true),
    ("C1RP", "Ramp", true),
    ("C1NSSEED_1", "Noise 1", true),
    ("C1NSSEED_2", "Noise 2", true),
    ("C1NSSEED", "Noise 1", false),
    ("C1NSD1SHORT", "Noise 1", true),
    ("C1NSD2SHORT", "Noise 2", true),
    ("C2NSD1SHORT", "Noise 1", true),
    ("C2NSD2SHORT", "Noise 2", true),
    ("C1SQCAPCHK", "Square - 0.5ms Subthreshold", true),
    ("C2SSTRIPLE", "Short Square - Triple", true),
    ("C2SSHM", "Short Square", true),
    ("C2NSRMPRH", "Ramp to Rheobase", true),
    ("C2SQRHELNG", "Square - 2s Suprathreshold", true),
    ("X1PS_SubThresh", "Long Square", false),
    ("Y1PS_SubThresh", "Long Square", false),
    ("PS_SubThresh", "Long Square", false),
    ("X4PS_SupraThresh", "Long Square", false),
    ("Y4PS_SupraThresh", "Long Square", false),
    ("PS_SupraThresh", "Long Square", false),
    ("X3LP_Rheo", "Long Square", false),
    ("Y3LP_Rheo", "Long Square", false),
    ("LP_Rheo", "Long Square", false),
    ("Rheo_Supra_backu", "Long Square", false),
    ("subthreshold", "Long Square", false),
    ("subthreshold_171", "Long Square", false),
    ("longsquaretemp", "Long Square", false),
    ("X6SP_Rheo", "Short Square", false),
    ("Y6SP_Rheo", "Short Square", false),
    ("SP_Rheo", "Short Square", false),
    ("shortsquaretemp", "Short Square", false),
    ("X7Ramp", "Ramp", false),
    ("X7RAMP", "Ramp", false),
    ("Y7RAMP", "Ramp", false),
    ("Ramp", "Ramp", false),
    ("Blip_finder", "Test", false),
    ("Rheobase_finder", "Test", false),
    ("VCLAMP_RNA_STIM", "Test", false),
    ("RundownTest", "Test", false),
    ("RundownTestLong", "Test", false),
];

/// Stimulus codes → stimulus names: a user mapping of code prefixes (longest prefix first),
/// then the Allen / IPFX ontology. A user name "Test" or "" skips the sweep.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StimulusNames {
    user: Vec<(String, String)>,
}

/// The user mapping file looked for in the NWB folder (CSV `prefix,name` lines, or
/// `stimulus_names.json`: an object of prefix → name).
pub const STIMULUS_NAMES_FILE: &str = "stimulus_names.csv";
/// Environment variable naming a user mapping file (CSV or JSON), read by
/// [`Nwb2Options::for_nwb_dir`] before the file in the NWB folder.
pub const STIMULUS_NAMES_ENV: &str = "GFR_STIMULUS_NAMES";

/// The stimulus code of a `stimulus_description`: without a `[n]` repeat counter or a MIES
/// `_DA_n` channel suffix.
pub fn stimulus_code(description: &str) -> &str {
    let mut code = description.trim().trim_end_matches('\0');
    if let Some(i) = code.find('[') {
        code = &code[..i];
    }
    if let Some(i) = code.rfind("_DA_")
        && code[i + 4..].chars().all(|c| c.is_ascii_digit())
    {
        code = &code[..i];
    }
    code.trim()
}

impl StimulusNames {
    /// The Allen / IPFX ontology alone.
    pub fn allen() -> Self {
        Self::default()
    }

    /// Adds a user prefix → name entry (user entries come before the ontology).
    pub fn with(mut self, prefix: &str, name: &str) -> Self {
        self.user.push((prefix.to_string(), name.to_string()));
        self.user.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        self
    }

    /// Adds the entries of a mapping file: a JSON object `{"prefix": "name", …}` (`.json`) or
    /// CSV lines `prefix,name` (anything else; `#` comments and a `prefix,name` header are
    /// ignored).
    pub fn with_file(mut self, path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("stimulus name mapping {}", path.display()))?;
        let entries: Vec<(String, String)> = if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                .with_context(|| {
                    format!(
                        "{}: expected a JSON object of code prefix → stimulus name",
                        path.display()
                    )
                })?;
            map.into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => Ok((k, s)),
                    other => bail!("{}: `{k}` maps to {other}, not a name", path.display()),
                })
                .collect::<Result<_>>()?
        } else {
            let mut out = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let Some((k, v)) = line.split_once(',') else {
                    bail!(
                        "{} line {}: expected `prefix,name`, got `{line}`",
                        path.display(),
                        i + 1
                    );
                };
                let (k, v) = (k.trim().trim_matches('"'), v.trim().trim_matches('"'));
                if i == 0 && k.eq_ignore_ascii_case("prefix") {
                    continue;
                }
                out.push((k.to_string(), v.to_string()));
            }
            out
        };
        for (k, v) in entries {
            self = self.with(&k, &v);
        }
        Ok(self)
    }

    /// The stimulus name of a code (see [`stimulus_code`]); `None` if unknown.
    pub fn name(&self, code: &str) -> Option<String> {
        let code = stimulus_code(code);
        if let Some((_, name)) = self.user.iter().find(|(p, _)| code.starts_with(p.as_str())) {
            return Some(name.clone());
        }
        let lower = code.to_ascii_lowercase();
        ALLEN_CODES
            .iter()
            .filter(|(c, _, prefix)| {
                let c = c.to_ascii_lowercase();
                if *prefix {
                    lower.starts_with(&c)
                } else {
                    lower == c
                }
            })
            .max_by_key(|(c, _, _)| c.len())
            .map(|(_, name, _)| name.to_string())
    }
}

/// How NWB 2 files are read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Nwb2Options {
    /// Stimulus code → stimulus name mapping.
    pub names: StimulusNames,
    /// Settings of the spike detector (NWB 2 files store no spike times).
    pub spikes: SpikeParams,
}

impl Nwb2Options {
    /// The defaults plus the user mappings `gfr preprocess` picks up: the file named by
    /// `$GFR_STIMULUS_NAMES`, then `NWB_DIR/stimulus_names.csv` or `NWB_DIR/stimulus_names.json`
    /// (earlier entries win for the same prefix length).
    pub fn for_nwb_dir(nwb_dir: &Path) -> Result<Self> {
        let mut names = StimulusNames::allen();
        let mut files: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os(STIMULUS_NAMES_ENV).filter(|p| !p.is_empty()) {
            files.push(PathBuf::from(p));
        }
        files.extend(
            [STIMULUS_NAMES_FILE, "stimulus_names.json"]
                .iter()
                .map(|f| nwb_dir.join(f))
                .filter(|p| p.is_file()),
        );
        // later `with` calls sort stably, so add in reverse to let earlier files win
        for f in files.iter().rev() {
            names = names.with_file(f)?;
        }
        Ok(Self {
            names,
            ..Self::default()
        })
    }
}

/// The sweeps of a recording (each with its number) and notes on what was skipped.
#[derive(Clone, Debug, Default)]
pub struct Recording {
    /// The sweeps read, each with its sweep number.
    pub sweeps: Vec<(u32, RawSweep)>,
    /// Notes on what was skipped, one line each with the reason.
    pub notes: Vec<String>,
    /// Whether the spike times were stored in the file (NWB 1) or detected (NWB 2).
    pub spikes_stored: bool,
}

/// Reads an NWB 1 or NWB 2 file (by its version), as [`super::nwb::read_nwb_numbered`] does for
/// NWB 1: errors name the file; a reader panic on a corrupt file is an error.
pub fn read_recording(path: &Path, opts: &Nwb2Options) -> Result<Recording> {
    if !path.is_file() {
        return Err(anyhow::Error::new(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{}: no such NWB file", path.display()),
        )));
    }
    std::panic::catch_unwind(|| {
        let f = H5File::open(path).map_err(|e| {
            anyhow::anyhow!("{} is not a readable NWB/HDF5 file: {e}", path.display())
        })?;
        match nwb_version(&f) {
            NwbVersion::One => Ok(Recording {
                sweeps: read_numbered_from(&f, path)?,
                notes: Vec::new(),
                spikes_stored: true,
            }),
            NwbVersion::Two(_) => read_open_nwb2(&f, path, opts),
        }
    })
    .unwrap_or_else(|_| {
        bail!(
            "{}: the HDF5 reader failed on this file (corrupt or truncated?)",
            path.display()
        )
    })
}

/// Reads an NWB 2 file (see the module documentation).
pub fn read_nwb2(path: &Path, opts: &Nwb2Options) -> Result<Recording> {
    std::panic::catch_unwind(|| {
        let f = H5File::open(path).map_err(|e| {
            anyhow::anyhow!("{} is not a readable NWB/HDF5 file: {e}", path.display())
        })?;
        read_open_nwb2(&f, path, opts)
    })
    .unwrap_or_else(|_| {
        bail!(
            "{}: the HDF5 reader failed on this file (corrupt or truncated?)",
            path.display()
        )
    })
}

/// A series group: where it is, and its sweep number.
struct SeriesRef {
    path: String,
    name: String,
    number: Option<u32>,
    description: Option<String>,
}

/// One series' samples in SI units, its sampling rate (Hz) and start time (s).
struct Series {
    data: Vec<f64>,
    rate: f64,
    start: f64,
}

fn first_number(name: &str) -> Option<u32> {
    let digits: String = name
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn sweep_number(f: &H5File, g: &H5Group, path: &str, name: &str) -> Option<u32> {
    if let Ok(ds) = f.dataset(&format!("{path}/sweep_number"))
        && let Ok(v) = read_f64(&ds, "sweep_number")
        && let Some(&x) = v.first()
        && x >= 0.0
    {
        return Some(x as u32);
    }
    // a numeric attribute read as text: its little-endian bytes up to the first zero byte
    let attr = g.attr_string("sweep_number").ok();
    if let Some(a) = &attr
        && let [b] = a.as_bytes()
        && (1..128).contains(b)
    {
        return Some(*b as u32);
    }
    first_number(name).or(match attr.as_deref() {
        Some("") => Some(0),
        _ => None,
    })
}

/// Series groups of one neurodata type directly under `group`.
fn series_of_type(f: &H5File, group: &str, kind: &str) -> Vec<SeriesRef> {
    let Ok(g) = f.root_group().group(group) else {
        return Vec::new();
    };
    let mut names = g.group_names().unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|name| {
            let path = format!("{group}/{name}");
            let s = g.group(&name).ok()?;
            let t = s.attr_string("neurodata_type").ok()?;
            if t.trim_end_matches('\0') != kind {
                return None;
            }
            Some(SeriesRef {
                number: sweep_number(f, &s, &path, &name),
                description: s
                    .attr_string("stimulus_description")
                    .ok()
                    .map(|d| d.trim_end_matches('\0').to_string()),
                path,
                name,
            })
        })
        .collect()
}

fn scalar_attr(ds: &rust_hdf5::H5Dataset, name: &str) -> Option<f64> {
    ds.attr(name)
        .ok()?
        .read_numeric_as::<f64>()
        .ok()?
        .first()
        .copied()
}

fn read_series(f: &H5File, path: &str) -> Result<Series> {
    let dp = format!("{path}/data");
    let ds = h5(f.dataset(&dp), &dp)?;
    let mut data = read_f64(&ds, &dp)?;
    let conversion = scalar_attr(&ds, "conversion").unwrap_or(1.0);
    let offset = scalar_attr(&ds, "offset").unwrap_or(0.0);
    if conversion != 1.0 || offset != 0.0 {
        data.iter_mut().for_each(|x| *x = *x * conversion + offset);
    }
    let (rate, start) = if let Ok(st) = f.dataset(&format!("{path}/starting_time")) {
        let rate = scalar_attr(&st, "rate")
            .with_context(|| format!("{path}/starting_time has no `rate` attribute"))?;
        let start = read_f64(&st, "starting_time")?
            .first()
            .copied()
            .unwrap_or(0.0);
        (rate, start)
    } else {
        let tp = format!("{path}/timestamps");
        let ts = read_f64(&h5(f.dataset(&tp), &tp)?, &tp)?;
        if ts.len() < 2 {
            bail!("{path}: neither `starting_time` nor two `timestamps`");
        }
        let rate = (ts.len() - 1) as f64 / (ts[ts.len() - 1] - ts[0]);
        // gfr reads a series on an even grid: every timestamp must lie within half a sample
        // of it (else every spike time and bin would be wrong)
        if rate > 0.0
            && rate.is_finite()
            && let Some(k) = (0..ts.len()).find(|&k| {
                let off = (ts[k] - ts[0]) * rate - k as f64;
                !(off.abs() <= 0.5)
            })
        {
            bail!(
                "{tp}: the timestamps are not evenly spaced (sample {k} is at {:.6} s, {:.3} ms \
                 from where an even {rate:.1} Hz puts it); gfr reads series with a constant \
                 sampling rate: store `starting_time` with its `rate`, or resample the series",
                ts[k],
                ((ts[k] - ts[0]) - k as f64 / rate) * 1e3
            );
        }
        (rate, ts[0])
    };
    if !(rate > 0.0 && rate.is_finite()) {
        bail!("{path}: sampling rate {rate} is not a positive number");
    }
    Ok(Series { data, rate, start })
}

/// IPFX's test epoch (`ipfx.epochs.get_test_epoch`): if the current first changes within
/// 0.4 s, the pulse lasts to its next change, and the epoch is the pulse padded on both sides
/// by the time before it. Returns the epoch's last index.
pub fn test_epoch_end(current: &[f64], rate_hz: f64) -> Option<usize> {
    let mut changes =
        (0..current.len().saturating_sub(1)).filter(|&k| current[k + 1] != current[k]);
    let first = changes.next()?;
    if first as f64 >= 0.4 * rate_hz {
        return None;
    }
    let second = changes.next()?;
    Some(second + first + 1)
}

/// The stimulus, the response and the spikes of one sweep → the sweep as the binning takes
/// it (see the module documentation).
fn assemble(
    name: String,
    stim: Series,
    resp: Series,
    spikes: &SpikeParams,
    what: &str,
) -> Result<RawSweep> {
    let mut stimulus = stim.data;
    let finite = stimulus
        .iter()
        .rposition(|x| x.is_finite())
        .map_or(0, |k| k + 1);
    stimulus.truncate(finite);
    if let Some(i) = stimulus.iter().position(|x| !x.is_finite()) {
        bail!("{what}: stimulus sample {i} is {}", stimulus[i]);
    }
    let rs = stim.rate;
    // the recording: trailing zeros count as missing (IPFX `_nan_trailing_zeros`), and it
    // ends at its last finite sample
    let mut v = resp.data;
    let valid = v
        .iter()
        .rposition(|&x| x.is_finite() && x != 0.0)
        .map_or(0, |k| k + 1);
    v.truncate(valid);
    let v_mv: Vec<f64> = v.iter().map(|x| x * 1e3).collect();
    let offset = resp.start - stim.start;
    let same_grid = resp.rate == rs && offset == 0.0;
    let end_time = offset + valid as f64 / resp.rate;
    let recorded = if same_grid {
        valid.min(stimulus.len())
    } else {
        ((end_time * rs).floor().max(0.0) as usize).min(stimulus.len())
    };
    // the voltage on the stimulus' samples (zero where there is no recording)
    let response: Vec<f64> = if same_grid {
        let mut r = v;
        r.resize(stimulus.len(), 0.0);
        r
    } else {
        (0..stimulus.len())
            .map(|k| {
                let t = k as f64 / rs - offset;
                let j = (t * resp.rate).floor();
                if j >= 0.0 && (j as usize) < valid {
                    v[j as usize]
                } else {
                    0.0
                }
            })
            .collect()
    };
    let spike_times: Vec<f64> = detect_spikes(&v_mv, resp.rate, spikes)
        .iter()
        .map(|s| {
            if same_grid {
                sample_time(s.threshold, rs)
            } else {
                s.threshold as f64 / resp.rate + offset
            }
        })
        .filter(|&t| t >= 0.0 && t < recorded as f64 / rs)
        .collect();
    let start = test_epoch_end(&stimulus, rs).map_or(0, |e| e + 1);
    Ok(RawSweep {
        stimulus_name: name,
        sampling_rate: rs,
        stimulus,
        response,
        spike_times,
        experiment_range: Some((start, recorded.saturating_sub(1))),
    })
}

fn read_open_nwb2(f: &H5File, path: &Path, opts: &Nwb2Options) -> Result<Recording> {
    let file = path.display();
    let responses = series_of_type(f, "acquisition", "CurrentClampSeries");
    let stimuli = series_of_type(f, "stimulus/presentation", "CurrentClampStimulusSeries");
    if responses.is_empty() {
        bail!("{file}: NWB 2 file without CurrentClampSeries under /acquisition");
    }
    let mut notes = Vec::new();
    // pair by sweep number; series without one pair by position among those without
    let mut jobs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let unnumbered_stim: Vec<&SeriesRef> = stimuli.iter().filter(|s| s.number.is_none()).collect();
    let mut unnumbered = 0;
    for r in &responses {
        let (n, stim) = match r.number {
            Some(n) => (n, stimuli.iter().find(|s| s.number == Some(n))),
            None => {
                unnumbered += 1;
                (
                    unnumbered as u32,
                    unnumbered_stim.get(unnumbered - 1).copied(),
                )
            }
        };
        if !seen.insert(n) {
            notes.push(format!(
                "sweep {n}: another CurrentClampSeries ({}) has this sweep number; only the first is read",
                r.name
            ));
            continue;
        }
        let Some(stim) = stim else {
            notes.push(format!(
                "sweep {n} ({}): no CurrentClampStimulusSeries with this sweep number under /stimulus/presentation; skipped",
                r.name
            ));
            continue;
        };
        let description = stim
            .description
            .clone()
            .or_else(|| r.description.clone())
            .unwrap_or_default();
        let code = stimulus_code(&description).to_string();
        match opts.names.name(&code) {
            Some(name) if name == "Test" || name.is_empty() => {}
            Some(name) => jobs.push((n, name, stim, r)),
            None => notes.push(format!(
                "sweep {n} ({}): stimulus code `{code}` is in neither the Allen/IPFX stimulus ontology nor the user's mapping ({STIMULUS_NAMES_ENV} or NWB_DIR/{STIMULUS_NAMES_FILE}); skipped",
                r.name
            )),
        }
    }
    // read the samples (one reader), then detect spikes on every core; a sweep that cannot
    // be read is skipped with a note, and the others are kept
    let mut loaded = Vec::with_capacity(jobs.len());
    for (n, name, stim, resp) in jobs {
        let what = format!("sweep {n} ({})", resp.name);
        match (read_series(f, &stim.path), read_series(f, &resp.path)) {
            (Ok(s), Ok(r)) => loaded.push((n, name, s, r, what)),
            (Err(e), _) | (_, Err(e)) => notes.push(format!("{what}: {e:#}; skipped")),
        }
    }
    let mut sweeps = Vec::new();
    let assembled = crate::parallel::map_on_cores(loaded, |(n, name, s, r, what)| {
        assemble(name, s, r, &opts.spikes, &what).map(|sw| (n, sw))
    });
    for a in assembled {
        match a {
            Ok(sw) => sweeps.push(sw),
            Err(e) => notes.push(format!("{e:#}; skipped")),
        }
    }
    if sweeps.is_empty() {
        bail!(
            "{file}: no current-clamp sweep with a known stimulus{}",
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            }
        );
    }
    sweeps.sort_by_key(|(n, _)| *n);
    Ok(Recording {
        sweeps,
        notes,
        spikes_stored: false,
    })
}
