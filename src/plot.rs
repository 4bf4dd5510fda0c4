//! `gfr plot`: figures of fits, activations, kernels, datasets and network training, as PNG
//! (default) or SVG. Text uses a font built into the binary, so no system fonts are needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::data::{CellRecording, DataDir};
use crate::dataset::Dataset;
use crate::fit::{ActivationData, FitData, FitResult};
use crate::scan;

/// Output format of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// PNG bitmap (the default).
    Png,
    /// SVG vector graphics.
    Svg,
}

impl Format {
    /// The file extension, without the dot: `png` or `svg`.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

/// Registers the built-in Noto Sans font for every family plotters asks for.
fn init_fonts() {
    static FONTS: std::sync::Once = std::sync::Once::new();
    FONTS.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            if register_font(family, FontStyle::Normal, ttf_noto_sans::REGULAR).is_err() {
                panic!("the built-in font could not be parsed");
            }
        }
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Draws `body` on a PNG or SVG canvas at `path` (written to a temporary file, then renamed).
macro_rules! figure {
    ($path:expr, $format:expr, $size:expr, |$root:ident| $body:block) => {{
        init_fonts();
        let path: &Path = $path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        // (the process id keeps concurrent runs apart; the format comes from the extension)
        let tmp = path.with_extension(format!("{}.tmp.{}", std::process::id(), $format.ext()));
        let drawn = (|| -> anyhow::Result<()> {
            match $format {
                Format::Png => {
                    let $root = BitMapBackend::new(&tmp, $size).into_drawing_area();
                    $root.fill(&WHITE).map_err(err)?;
                    $body
                    $root.present().map_err(err)?;
                }
                Format::Svg => {
                    let $root = SVGBackend::new(&tmp, $size).into_drawing_area();
                    $root.fill(&WHITE).map_err(err)?;
                    $body
                    $root.present().map_err(err)?;
                }
            }
            Ok(())
        })();
        if let Err(e) = drawn {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok::<PathBuf, anyhow::Error>(path.to_path_buf())
    }};
}

fn range(values: impl IntoIterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = if hi > lo { hi - lo } else { hi.abs().max(1.0) };
    (lo - pad * span, hi + pad * span)
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>, RGBColor, u32)],
    legend: SeriesLabelPosition,
) -> Result<()> {
    let (x0, x1) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)), 0.0);
    let (y0, y1) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)), 0.05);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    let mut labelled = false;
    for (label, pts, color, width) in series {
        let s = chart
            .draw_series(LineSeries::new(
                pts.iter().copied(),
                color.stroke_width(*width),
            ))
            .map_err(err)?;
        if !label.is_empty() {
            labelled = true;
            let c = *color;
            s.label(label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
            });
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

fn bar_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    labels: &[String],
    values: &[f64],
    color: RGBColor,
) -> Result<()> {
    let n = values.len();
    let (y0, y1) = range(values.iter().copied().chain([0.0]), 0.08);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, y0..y1)
        .map_err(err)?;
    let labels = labels.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| labels.get(x.round() as usize).cloned().unwrap_or_default())
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(values.iter().enumerate().map(|(i, &v)| {
            Rectangle::new(
                [(i as f64 - 0.35, 0.0), (i as f64 + 0.35, v)],
                color.filled(),
            )
        }))
        .map_err(err)?;
    Ok(())
}

/// The three figures of a fitted cell: prediction on Noise 2, activation fit, kernels.
pub fn plot_fit(
    cell_id: u64,
    params_dir: &Path,
    data_dir: &DataDir,
    out: &Path,
    format: Format,
) -> Result<Vec<PathBuf>> {
    let result = FitResult::load(&params_dir.join(format!("{cell_id}.pickle")))?;
    let cell = CellRecording::load(data_dir, cell_id)?;
    let p = &result.params;
    let bin = p.bin_size;
    let data = FitData::from_cell(&cell, bin).map_err(|e| anyhow!("cell {cell_id}: {e}"))?;
    let test = &data.test;
    let dt_s = bin as f64 / 1000.0;
    let t = |i: usize| i as f64 * dt_s;
    let prediction = scan::predict(p, &test.current[0]);
    let mut files = Vec::new();

    // 1. Noise 2: current above, recorded rates and prediction below
    files.push(figure!(
        &out.join(format!("fit_{cell_id}.{}", format.ext())),
        format,
        (1400, 800),
        |root| {
            let title = format!(
                "Cell {cell_id}: Noise 2 (test EVR {:.3}, bin {bin} ms)",
                result.evr2
            );
            let root = root.titled(&title, ("sans-serif", 26)).map_err(err)?;
            let (top, bottom) = root.split_vertically(260);
            let cur: Vec<(f64, f64)> = test.current[0]
                .iter()
                .enumerate()
                .map(|(i, &c)| (t(i), c))
                .collect();
            line_panel(
                &top,
                "Injected current",
                "time (s)",
                "current (pA)",
                &[(String::new(), cur, RGBColor(60, 60, 60), 1)],
                SeriesLabelPosition::UpperRight,
            )?;
            let mut series: Vec<(String, Vec<(f64, f64)>, RGBColor, u32)> = test
                .rate
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    (
                        format!("recorded, repeat {}", j + 1),
                        r.iter().enumerate().map(|(i, &f)| (t(i), f)).collect(),
                        PALETTE[(j + 1) % 6],
                        1,
                    )
                })
                .collect();
            series.push((
                "GFR model".into(),
                prediction
                    .iter()
                    .enumerate()
                    .map(|(i, &f)| (t(i), f))
                    .collect(),
                RGBColor(20, 20, 20),
                2,
            ));
            line_panel(
                &bottom,
                "Firing rate",
                "time (s)",
                "firing rate (1/ms)",
                &series,
                SeriesLabelPosition::UpperLeft,
            )?;
        }
    )?);

    // 2. the activation over the points it was fitted to
    let act = &p.activation;
    files.push(figure!(
        &out.join(format!("activation_{cell_id}.{}", format.ext())),
        format,
        (900, 650),
        |root| {
            let points = ActivationData::from_cell(&cell, act.bin_size).ok();
            let xs: Vec<f64> = points
                .as_ref()
                .map(|d| d.current.clone())
                .unwrap_or_default();
            let (x0, x1) = range(
                xs.iter().copied().chain([
                    act.threshold,
                    -act.max_current.abs(),
                    act.max_current.abs(),
                ]),
                0.05,
            );
            let curve: Vec<(f64, f64)> = (0..=300)
                .map(|k| x0 + (x1 - x0) * k as f64 / 300.0)
                .map(|x| (x, act.eval(x)))
                .collect();
            let ys = points.as_ref().map(|d| d.rate.clone()).unwrap_or_default();
            let (y0, y1) = range(
                curve
                    .iter()
                    .map(|p| p.1)
                    .chain(ys.iter().copied())
                    .chain([0.0]),
                0.08,
            );
            let title = format!(
                "Cell {cell_id}: activation (first {} ms bin of each Long Square)",
                act.bin_size
            );
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 22))
                .margin(14)
                .x_label_area_size(44)
                .y_label_area_size(70)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("current (pA)")
                .y_desc("firing rate (1/ms)")
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(err)?;
            chart
                .draw_series(LineSeries::new(curve, PALETTE[0].stroke_width(3)))
                .map_err(err)?
                .label(format!(
                    "g(x): b = {:.1} pA, γ = {:.3} /ms",
                    act.threshold, act.max_firing_rate
                ))
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], PALETTE[0].stroke_width(3))
                });
            chart
                .draw_series(
                    xs.iter()
                        .zip(&ys)
                        .map(|(&x, &y)| Circle::new((x, y), 5, PALETTE[1].filled())),
                )
                .map_err(err)?
                .label("Long Square sweeps")
                .legend(|(x, y)| Circle::new((x + 9, y), 5, PALETTE[1].filled()));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(err)?;
        }
    )?);

    // 3. kernels over time and the weights per time constant
    files.push(figure!(
        &out.join(format!("kernels_{cell_id}.{}", format.ext())),
        format,
        (1300, 900),
        |root| {
            let root = root
                .titled(
                    &format!("Cell {cell_id}: filters (bin {bin} ms)"),
                    ("sans-serif", 26),
                )
                .map_err(err)?;
            let panels = root.split_evenly((2, 2));
            let len = (2000 / bin as usize).max(10) + 1;
            let ki: Vec<(f64, f64)> = p
                .input_kernel(len)
                .into_iter()
                .enumerate()
                .map(|(i, v)| (t(i), v))
                .collect();
            let kf: Vec<(f64, f64)> = p
                .rate_kernel(len)
                .into_iter()
                .enumerate()
                .map(|(i, v)| (t(i), v))
                .collect();
            line_panel(
                &panels[0],
                "Input kernel k_I(t)",
                "time (s)",
                "weight (per pA)",
                &[(String::new(), ki, PALETTE[0], 2)],
                SeriesLabelPosition::UpperRight,
            )?;
            line_panel(
                &panels[1],
                "Rate-history kernel k_f(t)",
                "time (s)",
                "weight (pA per Hz)",
                &[(String::new(), kf, PALETTE[3], 2)],
                SeriesLabelPosition::UpperRight,
            )?;
            let taus: Vec<String> = p
                .lambda
                .iter()
                .map(|&l| {
                    if l >= 1.0 {
                        "0".to_string()
                    } else {
                        format!("{:.0}", -(bin as f64) / (1.0 - l).ln())
                    }
                })
                .collect();
            bar_panel(
                &panels[2],
                "Input weights α",
                "time constant τ (ms)",
                "α",
                &taus,
                &p.alpha,
                PALETTE[0],
            )?;
            bar_panel(
                &panels[3],
                "Rate-history weights β",
                "time constant τ (ms)",
                "β",
                &taus,
                &p.beta,
                PALETTE[3],
            )?;
        }
    )?);
    Ok(files)
}

/// Histograms of validation and test EVR per (bin, activation bin) pair.
pub fn plot_dataset(dataset: &Dataset, out: &Path, format: Format) -> Result<PathBuf> {
    if dataset.pairs.is_empty() {
        bail!("the dataset is empty: nothing to plot");
    }
    let rows = dataset.pairs.len();
    figure!(
        &out.join(format!("dataset_evr.{}", format.ext())),
        format,
        (1200, 300 * rows as u32 + 60),
        |root| {
            let root = root
                .titled(
                    "Fitted neurons: explained variance ratio per (bin, activation bin)",
                    ("sans-serif", 24),
                )
                .map_err(err)?;
            let panels = root.split_evenly((rows, 2));
            for (r, (&(b, a), recs)) in dataset.pairs.iter().enumerate() {
                for (c, (what, color)) in [("validation EVR", PALETTE[0]), ("test EVR", PALETTE[2])]
                    .into_iter()
                    .enumerate()
                {
                    let values: Vec<f64> = recs
                        .iter()
                        .map(|x| if c == 0 { x.val_evr } else { x.test_evr })
                        .filter(|v| v.is_finite())
                        .collect();
                    let bins = 20usize;
                    let mut counts = vec![0u32; bins];
                    for v in &values {
                        counts[((v.clamp(0.0, 0.9999)) * bins as f64) as usize] += 1;
                    }
                    let top = counts.iter().copied().max().unwrap_or(1).max(1);
                    let mut chart = ChartBuilder::on(&panels[r * 2 + c])
                        .caption(
                            format!(
                                "bin {b} ms / activation {a} ms: {what} ({} cells)",
                                recs.len()
                            ),
                            ("sans-serif", 17),
                        )
                        .margin(10)
                        .x_label_area_size(36)
                        .y_label_area_size(50)
                        .build_cartesian_2d(0f64..1f64, 0u32..top + 1)
                        .map_err(err)?;
                    chart
                        .configure_mesh()
                        .x_desc(what)
                        .y_desc("cells")
                        .label_style(("sans-serif", 13))
                        .draw()
                        .map_err(err)?;
                    chart
                        .draw_series(counts.iter().enumerate().map(|(i, &n)| {
                            let x = i as f64 / bins as f64;
                            Rectangle::new(
                                [(x + 0.002, 0), (x + 1.0 / bins as f64 - 0.002, n)],
                                color.filled(),
                            )
                        }))
                        .map_err(err)?;
                }
            }
        }
    )
}

/// Train loss and test accuracy per epoch of one or more `gfr network` result files.
pub fn plot_networks(files: &[PathBuf], out: &Path, format: Format) -> Result<PathBuf> {
    if files.is_empty() {
        bail!("give at least one network JSON file");
    }
    let mut runs = Vec::new();
    for f in files {
        let history = crate::network::NetworkRun::load_history(f)?;
        let curve = |value: fn(&crate::network::EpochStats) -> f64| -> Vec<(f64, f64)> {
            history
                .iter()
                .map(|e| (e.epoch as f64, value(e)))
                .filter(|p| p.1.is_finite())
                .collect()
        };
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        runs.push((
            name,
            curve(|e| e.train_loss),
            curve(|e| e.test_accuracy_step1),
        ));
    }
    figure!(
        &out.join(format!("network_training.{}", format.ext())),
        format,
        (1400, 600),
        |root| {
            let root = root
                .titled("Line-by-line MNIST", ("sans-serif", 24))
                .map_err(err)?;
            let (left, right) = root.split_horizontally(700);
            let loss: Vec<_> = runs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.0.clone(), r.1.clone(), PALETTE[i % 6], 2))
                .collect();
            let acc: Vec<_> = runs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.0.clone(), r.2.clone(), PALETTE[i % 6], 2))
                .collect();
            line_panel(
                &left,
                "Training loss",
                "epoch",
                "cross-entropy",
                &loss,
                SeriesLabelPosition::UpperRight,
            )?;
            line_panel(
                &right,
                "Test accuracy (first readout)",
                "epoch",
                "accuracy",
                &acc,
                SeriesLabelPosition::LowerRight,
            )?;
        }
    )
}

/// At most `max` points of a trace (t, y), keeping each bucket's minimum and maximum so that
/// spikes stay visible.
fn decimate(y: &[f64], rate_hz: f64, max: usize) -> Vec<(f64, f64)> {
    let bucket = y.len().div_ceil(max / 2).max(1);
    let mut out = Vec::with_capacity(2 * y.len().div_ceil(bucket));
    for (b, chunk) in y.chunks(bucket).enumerate() {
        let base = b * bucket;
        let (mut lo, mut hi) = (0, 0);
        for (k, v) in chunk.iter().enumerate() {
            if v < &chunk[lo] {
                lo = k;
            }
            if v > &chunk[hi] {
                hi = k;
            }
        }
        for k in if lo <= hi { [lo, hi] } else { [hi, lo] } {
            out.push(((base + k) as f64 / rate_hz, chunk[k]));
        }
    }
    out
}

/// A sweep's membrane potential (mV) with its detected spikes (and the stored ones, for NWB 1
/// files) marked, above its stimulus current (pA). Written as `sweep_{N}_spikes.{ext}`.
pub fn plot_spikes(
    cell_id: u64,
    s: &crate::data::spikes::SweepSpikes,
    out: &Path,
    format: Format,
) -> Result<PathBuf> {
    let sweep = &s.sweep;
    let rate = sweep.sampling_rate;
    let mv: Vec<f64> = sweep.recorded_voltage().iter().map(|v| v * 1e3).collect();
    let pa: Vec<f64> = sweep.stimulus.iter().map(|i| i * 1e12).collect();
    let voltage = decimate(&mv, rate, 20_000);
    let current = decimate(&pa, rate, 20_000);
    let at = |t: f64| mv.get((t * rate) as usize).copied().unwrap_or(f64::NAN);
    let path = out.join(format!(
        "cell_{cell_id}_sweep_{}_spikes.{}",
        s.sweep_number,
        format.ext()
    ));
    figure!(&path, format, (1400, 800), |root| {
        let (top, bottom) = root.split_vertically(540);
        let (t0, _) = range(voltage.iter().map(|p| p.0), 0.0);
        let (y0, y1) = range(voltage.iter().map(|p| p.1), 0.05);
        let mut chart = ChartBuilder::on(&top)
            .caption(
                format!(
                    "cell {cell_id}, sweep {} ({}): {} spikes detected{}",
                    s.sweep_number,
                    s.stimulus_name,
                    s.detected.len(),
                    s.stored
                        .as_ref()
                        .map(|st| format!(", {} stored", st.len()))
                        .unwrap_or_default()
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(t0..voltage.last().map_or(1.0, |p| p.0), y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .y_desc("membrane potential (mV)")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                voltage.iter().copied(),
                PALETTE[0].stroke_width(1),
            ))
            .map_err(err)?
            .label("voltage")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], PALETTE[0].stroke_width(3))
            });
        chart
            .draw_series(
                s.detected
                    .iter()
                    .map(|&t| Circle::new((t, at(t)), 4, PALETTE[3].filled())),
            )
            .map_err(err)?
            .label("detected (threshold)")
            .legend(|(x, y)| Circle::new((x + 9, y), 4, PALETTE[3].filled()));
        if let Some(stored) = &s.stored {
            chart
                .draw_series(stored.iter().map(|&t| {
                    TriangleMarker::new((t, y1 - 0.03 * (y1 - y0)), 5, PALETTE[2].filled())
                }))
                .map_err(err)?
                .label("stored in the file")
                .legend(|(x, y)| TriangleMarker::new((x + 9, y), 5, PALETTE[2].filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        line_panel(
            &bottom,
            "",
            "time (s)",
            "stimulus (pA)",
            &[(String::new(), current, PALETTE[1], 1)],
            SeriesLabelPosition::UpperRight,
        )?;
    })
}
