//! The optimizer of every training loop in gfr (the activation fit, the filter fit and the
//! network): Adam with PyTorch's defaults (lr per step, β = 0.9 / 0.999, ε = 1e-8), as the
//! published code used.

use burn::optim::{AdamConfig, ModuleOptimizer};

/// A fresh Adam (no moments yet).
pub fn adam() -> ModuleOptimizer {
    AdamConfig::new().with_epsilon(1e-8).init()
}
