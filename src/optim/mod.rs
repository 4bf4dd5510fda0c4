//! The optimizer of every training loop in gfr (the activation fit, the filter fit and the
//! network): Adam with PyTorch's defaults (lr per step, β = 0.9 / 0.999, ε = 1e-8), as the
//! published code used.
//!
//! On the CPU a step is Burn's own Adam. On wgpu it is one fused kernel per parameter
//! (`cube`): Burn's Adam launches about 14 elementwise kernels per parameter per step, which
//! on a GPU cost more than the arithmetic. Both keep Burn's [`AdamState`], so saved optimizer
//! states load either way.

mod cube;

use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};

/// β₁, β₂ and ε of every fit and network.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

/// The factor `[1]` that clips gradients (flattened) to global L2 norm `max_norm` on a wgpu
/// device, computed there in one launch per gradient and one more: min(1, max_norm /
/// (‖g‖ + 1e-6)), 1 for a NaN norm. None without gradients.
pub fn device_clip_factor(grads: Vec<Tensor<1>>, max_norm: f32) -> Option<Tensor<1>> {
    cube::clip_factor(grads, max_norm)
}

/// A fresh Adam (no moments yet).
pub fn adam() -> ModuleOptimizer {
    ModuleOptimizer::from(GfrAdam::new())
}

/// Adam: Burn's on the CPU, one fused kernel per parameter on wgpu (the same update).
#[derive(Clone)]
pub struct GfrAdam {
    burn: Adam,
}

impl GfrAdam {
    /// A fresh Adam with gfr's settings (β₁ 0.9, β₂ 0.999, ε 1e-8).
    pub fn new() -> Self {
        Self { burn: burn_adam() }
    }
}

impl Default for GfrAdam {
    fn default() -> Self {
        Self::new()
    }
}

/// Burn's Adam with gfr's settings.
pub fn burn_adam() -> Adam {
    AdamConfig::new()
        .with_beta_1(BETA_1)
        .with_beta_2(BETA_2)
        .with_epsilon(EPSILON)
        .build()
}

/// The scalars of one Adam step (f32, as Burn's Adam computes them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdamStep {
    pub beta_1: f32,
    pub beta_2: f32,
    /// √(1 − β₂ᵗ) / (1 − β₁ᵗ).
    pub factor: f32,
    /// ε √(1 − β₂ᵗ).
    pub epsilon: f32,
    pub lr: f32,
}

impl AdamStep {
    /// The scalars of step `time` (1 for the first), as Burn's Adam forms them.
    fn at(time: usize, lr: LearningRate) -> Self {
        let t = time as i32;
        let correction_2 = (1.0 - BETA_2.powi(t)).sqrt();
        Self {
            beta_1: BETA_1,
            beta_2: BETA_2,
            factor: correction_2 / (1.0 - BETA_1.powi(t)),
            epsilon: EPSILON * correction_2,
            lr: lr as f32,
        }
    }
}

impl Optimizer for GfrAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if crate::device::is_cpu(&tensor.device()) || !cube::fits(&tensor) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some((s.momentum.moment_1, s.momentum.moment_2)),
            ),
            None => (1, None),
        };
        let (tensor, moment_1, moment_2) =
            cube::adam_step(tensor, grad, moments, AdamStep::at(time, lr));
        let state = AdamState::new(AdaptiveMomentumState::new(time, moment_1, moment_2));
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
