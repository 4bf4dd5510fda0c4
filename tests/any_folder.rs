//! The binary run outside the checkout: the default config and the Allen metadata table
//! come from the copies built into gfr when the working folder has none.

mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output};

use gfr::dataset::Dataset;
use gfr::fit::{FitConfig, FitOptions, FitResult};

/// Runs the `gfr` binary with `args` in `dir`.
fn gfr_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gfr"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run gfr")
}

const BUILT_IN: &str = "is not in this folder: using the copy built into gfr";

#[test]
fn simulate_fit_and_dataset_build_in_an_empty_folder() {
    let dir = scratch("anyfolder");
    ok(&gfr_in(&dir, &["simulate", "--cells", "2"]));
    assert!(dir.join("data/cell_ids.csv").exists());

    // a config given by a path relative to the folder is read from there
    std::fs::write(
        dir.join("tiny.json"),
        r#"{"config_name": "tiny", "activation_epochs": 20, "activation_repeats": 1,
            "hparams": [{"lr": 0.01, "epochs": 3}]}"#,
    )
    .unwrap();
    let text = ok(&gfr_in(
        &dir,
        &[
            "fit",
            "--config-path",
            "tiny.json",
            "--save-path",
            "tiny",
            "--quiet",
        ],
    ));
    assert!(!text.contains(BUILT_IN), "{text}");
    let tiny = FitResult::load(&dir.join("tiny/bin20_actv20/900000001.pickle")).unwrap();
    assert_eq!(tiny.meta.config_name.as_deref(), Some("tiny"));

    // no flags at all: the built-in configs/default.json, said in one line
    let text = ok(&gfr_in(&dir, &["fit", "--quiet"]));
    assert_eq!(text.matches(BUILT_IN).count(), 1, "{text}");
    assert!(text.contains("configs/default.json"), "{text}");
    let pair = dir.join("model/params/bin20_actv20");
    assert!(pair.join("fit_summary.json").exists());
    let fitted = FitResult::load(&pair.join("900000002.pickle")).unwrap();
    // the full default config ran: 3 runs × 200 epochs at most, and its hash is recorded
    let default_opts = FitOptions::new(
        gfr::DataDir::new("data"),
        "model/params".into(),
        FitConfig::default(),
        gfr::cpu(),
    );
    assert_eq!(fitted.meta.config_name.as_deref(), Some("default"));
    assert_eq!(fitted.meta.config_hash, Some(default_opts.config_hash()));

    // `dataset build` finds the cre lines in the built-in metadata table:
    // 565871768 is an Oxtr-T2A-Cre mouse cell there
    let mut r = fitted;
    r.evr1 = 0.9;
    r.train_losses = vec![0.5, 0.1];
    r.save(&pair.join("565871768.pickle")).unwrap();
    let text = ok(&gfr_in(&dir, &["dataset", "build"]));
    assert!(
        text.contains(&format!("data/metadata.csv {BUILT_IN}")),
        "{text}"
    );
    let ds = Dataset::load(&dir.join("model/gfr_dataset.pickle")).unwrap();
    assert_eq!(
        ds.record(565871768, 20, 20).unwrap().cre_line,
        "Oxtr-T2A-Cre"
    );

    // a metadata table named by the flag but missing is an error naming it
    let text = fails(&gfr_in(
        &dir,
        &["dataset", "build", "--metadata", "nope.csv", "--overwrite"],
    ));
    assert!(text.contains("nope.csv"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn preprocess_lists_the_cells_of_the_built_in_metadata_table() {
    let dir = scratch("anyfolder-pre");
    // no NWB folder (the default cell_types): said at once, no cell list written
    let text = fails(&gfr_in(&dir, &["preprocess", "--quiet"]));
    assert!(
        text.contains("--nwb-dir cell_types: no such folder"),
        "{text}"
    );
    assert!(!dir.join("data/cell_ids.csv").exists(), "{text}");
    // an NWB folder without NWB files: every cell is reported missing (exit 3: cells failed),
    // but the list came from the built-in table and was written
    std::fs::create_dir(dir.join("cell_types")).unwrap();
    let text = fails(&gfr_in(&dir, &["preprocess", "--quiet"]));
    assert!(text.contains("cells failed"), "{text}");
    assert!(text.contains(BUILT_IN), "{text}");
    assert!(
        text.contains("cells from the built-in data/metadata.csv"),
        "{text}"
    );
    let ids = gfr::data::read_cell_ids(&dir.join("data/cell_ids.csv")).unwrap();
    let table = gfr::dataset::builtin_cre_lines().unwrap();
    assert_eq!(ids.len(), table.len());
    assert!(ids.contains(&565871768) && ids.contains(&525011903));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_built_in_metadata_table_is_the_repo_file() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/metadata.csv");
    assert_eq!(
        gfr::dataset::builtin_cre_lines().unwrap(),
        gfr::dataset::read_cre_lines(&file).unwrap()
    );
    assert_eq!(
        gfr::dataset::BUILTIN_METADATA.as_bytes(),
        std::fs::read(&file).unwrap()
    );
}
