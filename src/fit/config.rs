//! Fitting configuration (`configs/*.json`, spec §3).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Largest `epochs` (and `activation_epochs`) a config may ask for.
pub const MAX_EPOCHS: usize = 1_000_000;
/// Largest `activation_repeats` (every restart is a row of one model in memory).
pub const MAX_ACTIVATION_REPEATS: usize = 10_000;

/// One training run of the filter fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Maximum epochs (each visits every training group once).
    pub epochs: usize,
    /// Start from the best run so far (by validation EVR) instead of the initial neuron: a
    /// refinement of it. Left out when false, so that `config_hash` of older configs stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_best: bool,
    /// Train the activation (b, c) in this run too, whatever `freeze_activation` says (None:
    /// as `freeze_activation` says). Left out when None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_activation: Option<bool>,
    /// Validation EVR this run must gain over the best run so far to replace it (0: any
    /// gain). Noise 1 has few repeats, so a small gain is often noise that Noise 2 does not
    /// share; refinements ask for more. Left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_gain: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// The fitting config: activation fit, then one run per `hparams` entry. Missing keys take
/// the values of `configs/default.json`; unknown keys are an error (they are usually typos).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitConfig {
    /// Name of the config (recorded in each result and summary).
    pub config_name: String,
    /// Adam steps of each activation restart.
    pub activation_epochs: usize,
    /// Adam learning rate of the activation fit (published: 0.05). Left out when written
    /// at the published value, so that `config_hash` of older configs stays the same.
    #[serde(skip_serializing_if = "is_published_activation_lr")]
    pub activation_lr: f64,
    /// Restarts of the activation fit; the lowest final loss wins.
    pub activation_repeats: usize,
    /// Keep b and c fixed while fitting the filters.
    pub freeze_activation: bool,
    /// ε inside the Poisson log-likelihood.
    pub eps: f64,
    /// The filter-fit runs, in order; the run with the best validation EVR is kept.
    pub hparams: Vec<RunConfig>,
    /// Start each run from the cell's saved parameters when they exist.
    pub finetune: bool,
    /// When false, cells that already have saved parameters are skipped.
    pub retrain_model: bool,
    /// When no Long Square fires within the first activation bin, fit the activation to the
    /// first 100 ms bin instead (recorded in the result). false: the published procedure.
    pub activation_fallback: bool,
}

fn is_published_activation_lr(lr: &f64) -> bool {
    *lr == super::ACTIVATION_LR
}

impl RunConfig {
    /// A plain run: Adam at `lr` for at most `epochs` epochs, from the initial neuron.
    pub fn new(lr: f64, epochs: usize) -> Self {
        Self {
            lr,
            epochs,
            from_best: false,
            train_activation: None,
            min_gain: 0.0,
        }
    }

    /// A run that refines the best run so far.
    pub fn from_best(lr: f64, epochs: usize) -> Self {
        Self {
            from_best: true,
            ..Self::new(lr, epochs)
        }
    }
}

impl Default for FitConfig {
    /// `configs/default.json`.
    fn default() -> Self {
        Self {
            config_name: "default".into(),
            activation_epochs: 1000,
            activation_lr: super::ACTIVATION_LR,
            activation_repeats: 3,
            freeze_activation: true,
            eps: 1e-8,
            hparams: vec![
                RunConfig::new(1e-2, 200),
                RunConfig::new(1e-3, 200),
                RunConfig::new(1e-4, 200),
            ],
            finetune: false,
            retrain_model: true,
            activation_fallback: true,
        }
    }
}

/// `configs/default.json` as compiled into the binary (the repo file stays the editable copy).
pub const BUILTIN_DEFAULT_CONFIG: &str = include_str!("../../configs/default.json");

impl FitConfig {
    /// The built-in `configs/default.json` (equal to [`FitConfig::default`]; tested).
    pub fn builtin() -> Self {
        let cfg: Self = serde_json::from_str(BUILTIN_DEFAULT_CONFIG)
            .expect("the built-in configs/default.json parses");
        cfg.check()
            .expect("the built-in configs/default.json is valid");
        cfg
    }

    /// The default config with other runs.
    pub fn new(hparams: Vec<RunConfig>) -> Self {
        Self {
            hparams,
            ..Self::default()
        }
    }

    /// Reads and checks a config file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_json(&text, &format!("config file {}", path.display()))
    }

    /// A config from JSON text (`origin` names it in errors, e.g. `config file F`), checked;
    /// every error is a [`crate::error::Invalid`] naming the origin and the field.
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let parse = || -> Result<Self> {
            let bad = || format!("{origin} is not a valid fitting config");
            let json: serde_json::Value = serde_json::from_str(text).with_context(bad)?;
            if !json.is_object() {
                // serde would read a list as the fields in order (`[]`: every default)
                bail!(
                    "{}: expected a JSON object such as {{\"config_name\": …, \"hparams\": […]}}",
                    bad()
                );
            }
            let cfg: Self = serde_json::from_value(json).with_context(bad)?;
            cfg.check().with_context(|| origin.to_string())?;
            Ok(cfg)
        };
        parse().map_err(|e| crate::error::invalid(format!("{e:#}")))
    }

    /// A config shipped with gfr by name: `default`, `thorough` or `test` (the files in
    /// `configs/`, compiled in).
    pub fn named(name: &str) -> Result<Self> {
        let text = match name {
            "default" => BUILTIN_DEFAULT_CONFIG,
            "thorough" => include_str!("../../configs/thorough.json"),
            "test" => include_str!("../../configs/test.json"),
            other => {
                return Err(crate::error::invalid(format!(
                    "no built-in config named `{other}` (default, thorough, test)"
                )));
            }
        };
        Self::from_json(text, &format!("the built-in configs/{name}.json"))
    }

    /// Checks every field; errors are [`crate::error::Invalid`] and name the field.
    pub fn check(&self) -> Result<()> {
        self.check_fields()
            .map_err(|e| crate::error::invalid(format!("{e:#}")))
    }

    fn check_fields(&self) -> Result<()> {
        if self.hparams.is_empty() {
            bail!("`hparams` must list at least one {{\"lr\", \"epochs\"}} run");
        }
        for (i, h) in self.hparams.iter().enumerate() {
            if !(h.lr > 0.0 && h.lr.is_finite()) {
                bail!("`hparams[{i}].lr` must be a positive number, got {}", h.lr);
            }
            if !(0.0..1.0).contains(&h.min_gain) {
                bail!(
                    "`hparams[{i}].min_gain` must be a validation EVR gain in [0, 1), got {}",
                    h.min_gain
                );
            }
            if !(1..=MAX_EPOCHS).contains(&h.epochs) {
                bail!(
                    "`hparams[{i}].epochs` must be between 1 and {MAX_EPOCHS}, got {}",
                    h.epochs
                );
            }
        }
        if !(1..=MAX_ACTIVATION_REPEATS).contains(&self.activation_repeats) {
            bail!(
                "`activation_repeats` must be between 1 and {MAX_ACTIVATION_REPEATS}, got {}",
                self.activation_repeats
            );
        }
        if self.activation_epochs > MAX_EPOCHS {
            bail!(
                "`activation_epochs` must be at most {MAX_EPOCHS}, got {}",
                self.activation_epochs
            );
        }
        if !(self.activation_lr > 0.0 && self.activation_lr.is_finite()) {
            bail!(
                "`activation_lr` must be a positive number, got {}",
                self.activation_lr
            );
        }
        // ε = 0 makes ln(0) = −∞ wherever the model is silent and the cell fires
        if !(self.eps > 0.0 && self.eps < 1.0) {
            bail!(
                "`eps` must be a positive number below 1 (published: 1e-8), got {}",
                self.eps
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_configs_match_the_spec() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let d = FitConfig::load(&root.join("configs/default.json")).unwrap();
        assert_eq!(d, FitConfig::default());
        assert_eq!(FitConfig::builtin(), d);
        let t = FitConfig::load(&root.join("configs/test.json")).unwrap();
        assert_eq!((t.activation_epochs, t.activation_repeats), (10, 1));
        assert_eq!(t.hparams, vec![RunConfig::new(1e-2, 10)]);
        assert!(t.freeze_activation && t.retrain_model && !t.finetune);
        assert!(d.activation_fallback && t.activation_fallback);
        let off: FitConfig = serde_json::from_str(r#"{"activation_fallback": false}"#).unwrap();
        assert!(!off.activation_fallback);
    }

    #[test]
    fn builtin_config_is_the_repo_file_byte_for_byte() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let file = std::fs::read_to_string(root.join("configs/default.json")).unwrap();
        assert_eq!(BUILTIN_DEFAULT_CONFIG, file);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<FitConfig>(r#"{"activation_epoch": 3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("activation_epoch"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected_naming_the_field() {
        let dir = std::env::temp_dir().join(format!("gfr-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.json");
        for (json, field) in [
            ("[]", "JSON object"),
            ("3", "JSON object"),
            (r#"{"eps": 0}"#, "`eps`"),
            (r#"{"eps": -1e-8}"#, "`eps`"),
            (
                r#"{"hparams": [{"lr": 0.01, "epochs": 0}]}"#,
                "`hparams[0].epochs`",
            ),
            (
                r#"{"activation_repeats": 100000000000}"#,
                "`activation_repeats`",
            ),
            (r#"{"activation_repeats": 0}"#, "`activation_repeats`"),
            (
                r#"{"activation_epochs": 100000000000}"#,
                "`activation_epochs`",
            ),
            (r#"{"activation_lr": 0}"#, "`activation_lr`"),
            (r#"{"hparams": []}"#, "`hparams`"),
        ] {
            std::fs::write(&p, json).unwrap();
            let e = format!("{:#}", FitConfig::load(&p).unwrap_err());
            assert!(e.contains(field) && e.contains("c.json"), "{json}: {e}");
        }
        // a config without the newer keys still loads, with the published values
        std::fs::write(&p, r#"{"config_name": "old", "activation_epochs": 5}"#).unwrap();
        let c = FitConfig::load(&p).unwrap();
        assert_eq!(c.activation_lr, 0.05);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
