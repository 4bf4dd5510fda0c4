//! `gfr plot`: PNG and SVG figures with readable text, from real pipeline outputs.

mod common;
use common::*;

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(path: &std::path::Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        path.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
    )
}

/// Share of colour bytes that are dark: text and lines were drawn.
fn ink(path: &std::path::Path) -> f64 {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    buf.iter().filter(|&&p| p < 200).count() as f64 / buf.len() as f64
}

#[test]
fn fit_dataset_and_network_figures() {
    let dir = scratch("plots");
    let data = dir.join("data");
    let params = dir.join("params");
    let figs = dir.join("figs");
    ok(&gfr(&[
        "simulate",
        "--cells",
        "1",
        "--data-dir",
        s(&data),
        "--first-id",
        "77",
    ]));
    ok(&fit("configs/test.json", &data, &params, &[]));
    let out = ok(&gfr(&[
        "plot",
        "fit",
        "--cell-id",
        "77",
        "--params-dir",
        s(&params),
        "--data-dir",
        s(&data),
        "--out",
        s(&figs),
    ]));
    for name in ["fit_77.png", "activation_77.png", "kernels_77.png"] {
        let p = figs.join(name);
        assert!(out.contains(name), "{out}");
        let (w, h) = png_size(&p);
        assert!(w >= 800 && h >= 600, "{name}: {w}×{h}");
        let ink = ink(&p);
        assert!(ink > 0.01 && ink < 0.6, "{name}: {ink} of the pixels drawn");
    }
    ok(&gfr(&[
        "plot",
        "fit",
        "--cell-id",
        "77",
        "--params-dir",
        s(&params),
        "--data-dir",
        s(&data),
        "--out",
        s(&figs),
        "--format",
        "svg",
    ]));
    let svg = std::fs::read_to_string(figs.join("fit_77.svg")).unwrap();
    for label in [
        "time (s)",
        "current (pA)",
        "firing rate (1/ms)",
        "GFR model",
        "test EVR",
    ] {
        assert!(svg.contains(label), "SVG lacks `{label}`");
    }
    let svg = std::fs::read_to_string(figs.join("kernels_77.svg")).unwrap();
    assert!(svg.contains("time constant τ (ms)") && svg.contains("k_I(t)"));

    // dataset histograms
    ok(&gfr(&[
        "dataset",
        "build",
        "--params-dir",
        s(&params),
        "--out",
        s(&dir.join("ds.pickle")),
    ]));
    let e = gfr(&[
        "plot",
        "dataset",
        "--dataset",
        s(&dir.join("ds.pickle")),
        "--out",
        s(&figs),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&e.stdout),
        String::from_utf8_lossy(&e.stderr)
    );
    // a 10-epoch fit may not meet the dataset criteria: then the error says the dataset is empty
    if e.status.success() {
        png_size(&figs.join("dataset_evr.png"));
    } else {
        assert!(text.contains("empty"), "{text}");
    }

    // network curves, two files overlaid
    let j1 = dir.join("a.json");
    let j2 = dir.join("b.json");
    std::fs::write(&j1, r#"{"history": [{"epoch": 1, "train_loss": 2.0, "test_accuracy_step1": 0.3}, {"epoch": 2, "train_loss": 1.5, "test_accuracy_step1": 0.5}]}"#).unwrap();
    std::fs::write(&j2, r#"{"history": [{"epoch": 1, "train_loss": 2.2, "test_accuracy_step1": 0.2}, {"epoch": 2, "train_loss": 1.9, "test_accuracy_step1": 0.35}]}"#).unwrap();
    ok(&gfr(&[
        "plot",
        "network",
        s(&j1),
        s(&j2),
        "--out",
        s(&figs),
        "--format",
        "svg",
    ]));
    let svg = std::fs::read_to_string(figs.join("network_training.svg")).unwrap();
    assert!(
        svg.matches("\na\n</text>").count() == 2
            && svg.matches("\nb\n</text>").count() == 2
            && svg.contains("epoch"),
        "legend names both runs"
    );
    let e = fails(&gfr(&[
        "plot",
        "network",
        s(&dir.join("missing.json")),
        "--out",
        s(&figs),
    ]));
    assert!(e.contains("missing.json"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
