//! Writing NWB 2 files in the pynwb / IPFX layout that [`super::nwb2`] reads: what
//! `gfr simulate --nwb-dir` writes, so that the whole pipeline from NWB files can run on
//! simulated cells with known spikes.
//!
//! The layout, as pynwb writes an Allen / IPFX patch-clamp recording: root attributes
//! (`nwb_version` 2.2.5), `/general/intracellular_ephys/electrode_0`, per sweep a
//! `CurrentClampSeries` `data_NNNNN_AD0` (the voltage, stored in mV with `conversion` 1e-3)
//! in `/acquisition` and a `CurrentClampStimulusSeries` `data_NNNNN_DA0` (the current, in pA
//! with `conversion` 1e-12) in `/stimulus/presentation`, each with `sweep_number`,
//! `stimulus_description`, `starting_time` (attribute `rate`, Hz) and a link to the electrode.

use std::path::Path;

use anyhow::{Context, Result};
use rust_hdf5::{H5File, H5Group, VarLenUnicode};

/// One current-clamp sweep to write.
pub struct Nwb2Sweep {
    /// Sweep number (`sweep_number`; also in the series names).
    pub number: u32,
    /// Stimulus code (`stimulus_description`), e.g. `C1LSCOARSE150216_DA_0`.
    pub stimulus_code: String,
    /// Injected current per sample (pA).
    pub current_pa: Vec<f32>,
    /// Membrane potential per sample (mV); NaN where the recording has stopped.
    pub voltage_mv: Vec<f32>,
}

/// An NWB 2 file being written; [`Nwb2Writer::close`] finishes it.
pub struct Nwb2Writer {
    file: H5File,
    acquisition: H5Group,
    presentation: H5Group,
    rate_hz: f64,
    chunked: bool,
}

impl Nwb2Writer {
    /// Creates `path` (and its folder) with the file-level groups; sweeps sampled at
    /// `rate_hz`, stored in deflated chunks when `chunked`.
    pub fn create(path: &Path, identifier: &str, rate_hz: f64, chunked: bool) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create the folder", dir.display()))?;
        }
        let h5 = |e: rust_hdf5::Hdf5Error| anyhow::anyhow!("{}: {e}", path.display());
        let file = H5File::create(path).map_err(h5)?;
        for (k, v) in [
            ("nwb_version", "2.2.5"),
            ("namespace", "core"),
            ("neurodata_type", "NWBFile"),
        ] {
            file.set_attr_string(k, v).map_err(h5)?;
        }
        for (k, v) in [
            ("identifier", identifier),
            ("session_description", "written by gfr"),
            ("session_start_time", "2020-01-01T00:00:00+00:00"),
            ("timestamps_reference_time", "2020-01-01T00:00:00+00:00"),
        ] {
            file.write_vlen_strings(k, &[v]).map_err(h5)?;
        }
        let root = file.root_group();
        let electrode = root
            .create_group("general")
            .and_then(|g| g.create_group("intracellular_ephys"))
            .and_then(|g| g.create_group("electrode_0"))
            .map_err(h5)?;
        electrode
            .set_attr_string("neurodata_type", "IntracellularElectrode")
            .map_err(h5)?;
        electrode
            .write_vlen_strings("description", &["headstage 0"])
            .map_err(h5)?;
        let acquisition = root.create_group("acquisition").map_err(h5)?;
        let presentation = root
            .create_group("stimulus")
            .and_then(|g| g.create_group("presentation"))
            .map_err(h5)?;
        Ok(Self {
            file,
            acquisition,
            presentation,
            rate_hz,
            chunked,
        })
    }

    /// The `/acquisition` group (for series of other kinds).
    pub fn acquisition(&self) -> &H5Group {
        &self.acquisition
    }

    /// Writes one sweep: its voltage and stimulus series.
    pub fn sweep(&self, s: &Nwb2Sweep) -> Result<()> {
        let parts = [
            (
                &self.acquisition,
                "CurrentClampSeries",
                "AD0",
                &s.voltage_mv,
                1e-3f32,
                "volts",
            ),
            (
                &self.presentation,
                "CurrentClampStimulusSeries",
                "DA0",
                &s.current_pa,
                1e-12,
                "amperes",
            ),
        ];
        for (parent, kind, suffix, data, conversion, unit) in parts {
            let name = format!("data_{:05}_{suffix}", s.number);
            self.series(parent, &name, kind, s, data, conversion, unit)
                .with_context(|| format!("sweep {}: writing {name}", s.number))?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn series(
        &self,
        parent: &H5Group,
        name: &str,
        kind: &str,
        s: &Nwb2Sweep,
        data: &[f32],
        conversion: f32,
        unit: &str,
    ) -> rust_hdf5::Result<()> {
        let g = parent.create_group(name)?;
        g.set_attr_string("neurodata_type", kind)?;
        g.set_attr_string("namespace", "core")?;
        g.set_attr_string("stimulus_description", &s.stimulus_code)?;
        g.set_attr_string("description", "PLACEHOLDER")?;
        g.set_attr_numeric("sweep_number", &s.number)?;
        let b = g.new_dataset::<f32>().shape([data.len()]);
        let d = if self.chunked && !data.is_empty() {
            b.chunk(&[65_536.min(data.len())])
                .deflate(1)
                .create("data")?
        } else {
            b.create("data")?
        };
        d.write_raw(data)?;
        d.new_attr::<f32>()
            .shape(())
            .create("conversion")?
            .write_numeric(&conversion)?;
        d.new_attr::<f32>()
            .shape(())
            .create("resolution")?
            .write_numeric(&f32::NAN)?;
        d.new_attr::<VarLenUnicode>()
            .shape(())
            .create("unit")?
            .write_string(unit)?;
        let st = g.new_dataset::<f64>().scalar().create("starting_time")?;
        st.write_raw(&[s.number as f64 * 10.0])?;
        st.new_attr::<f32>()
            .shape(())
            .create("rate")?
            .write_numeric(&(self.rate_hz as f32))?;
        st.new_attr::<VarLenUnicode>()
            .shape(())
            .create("unit")?
            .write_string("seconds")?;
        g.new_dataset::<f32>()
            .scalar()
            .create("gain")?
            .write_raw(&[1.0f32])?;
        g.create_soft_link("electrode", "/general/intracellular_ephys/electrode_0")
    }

    /// Finishes the file.
    pub fn close(self) -> Result<()> {
        self.file
            .close()
            .map_err(|e| anyhow::anyhow!("closing the NWB file: {e}"))
    }
}

/// Writes `sweeps` (sampled at `rate_hz`) as one NWB 2 file at `path`, through a temporary
/// file renamed into place: a file at `path` is complete or absent.
pub fn write_nwb2(path: &Path, identifier: &str, sweeps: &[Nwb2Sweep], rate_hz: f64) -> Result<()> {
    let part = path.with_extension("nwb.part");
    let w = Nwb2Writer::create(&part, identifier, rate_hz, true)?;
    for s in sweeps {
        w.sweep(s)?;
    }
    w.close()
        .with_context(|| format!("writing {}", part.display()))?;
    std::fs::rename(&part, path)
        .with_context(|| format!("renaming {} to {}", part.display(), path.display()))
}
