//! Fitting configuration (`configs/*.json`, spec §3).

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One training run of the filter fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// Maximum epochs (each visits every training group once).
    pub epochs: usize,
}

/// The fitting config: activation fit, then one run per `hparams` entry. Missing keys take
/// the values of `configs/default.json`; unknown keys are an error (they are usually typos).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitConfig {
    pub config_name: String,
    /// Adam steps (lr 0.05) of each activation restart.
    pub activation_epochs: usize,
    /// Restarts of the activation fit; the lowest final loss wins.
    pub activation_repeats: usize,
    /// Keep b and c fixed while fitting the filters.
    pub freeze_activation: bool,
    /// ε inside the Poisson log-likelihood.
    pub eps: f64,
    pub hparams: Vec<RunConfig>,
    /// Start each run from the cell's saved parameters when they exist.
    pub finetune: bool,
    /// When false, cells that already have saved parameters are skipped.
    pub retrain_model: bool,
    /// When no Long Square fires within the first activation bin, fit the activation to the
    /// first 100 ms bin instead (recorded in the result). false: the published procedure.
    pub activation_fallback: bool,
}

impl RunConfig {
    pub fn new(lr: f64, epochs: usize) -> Self {
        Self { lr, epochs }
    }
}

impl Default for FitConfig {
    /// `configs/default.json`.
    fn default() -> Self {
        Self {
            config_name: "default".into(),
            activation_epochs: 1000,
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
        let cfg: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "config file {} is not a valid fitting config",
                path.display()
            )
        })?;
        cfg.check()
            .with_context(|| format!("config file {}", path.display()))?;
        Ok(cfg)
    }

    pub fn check(&self) -> Result<()> {
        if self.hparams.is_empty() {
            bail!("`hparams` must list at least one {{\"lr\", \"epochs\"}} run");
        }
        for (i, h) in self.hparams.iter().enumerate() {
            if !(h.lr > 0.0 && h.lr.is_finite()) {
                bail!("`hparams[{i}].lr` must be a positive number, got {}", h.lr);
            }
        }
        if self.activation_repeats == 0 {
            bail!("`activation_repeats` must be at least 1");
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            bail!("`eps` must be a non-negative number, got {}", self.eps);
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
}
