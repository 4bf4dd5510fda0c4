//! The optimizer of every training loop in gfr (the activation fit, the filter fit and the
//! network): Adam with PyTorch's defaults (lr per step, β = 0.9 / 0.999, ε = 1e-8), as the
//! published code used.
//!
//! On the CPU a step is Burn's own Adam. On wgpu it is one fused kernel per parameter
//! (`cube`): Burn's Adam launches about 14 elementwise kernels per parameter per step, which
//! on a GPU cost more than the arithmetic. Both keep Burn's [`AdamState`], so saved optimizer
//! states load either way.

mod cube;

use std::cell::RefCell;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, GradientsParams, LearningRate,
    ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};

/// β₁, β₂ and ε of every fit and network.
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

/// The factor `[1]` that clips gradients (flattened) to global L2 norm `max_norm` on a wgpu
/// device, computed there in one launch: min(1, max_norm / (‖g‖ + 1e-6)), 1 for a NaN norm.
/// None without gradients.
pub fn device_clip_factor(grads: Vec<Tensor<1>>, max_norm: f32) -> Option<Tensor<1>> {
    cube::clip_factor(grads, max_norm)
}

/// Collects every gradient of a module, flattened, in the module's order.
struct Flattened<'a> {
    grads: &'a GradientsParams,
    all: Vec<Tensor<1>>,
}

impl ModuleVisitor for Flattened<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let n = g.shape().num_elements();
            self.all.push(g.reshape([n]));
        }
    }
}

/// Scales every gradient of a module by one factor.
struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: Factor,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            let g = match &self.factor {
                Factor::Host(f) => g * *f,
                Factor::Device(f) => g * f.clone().reshape([1; D]),
            };
            self.grads.register(param.id, g);
        }
    }
}

/// A factor for every gradient: a number, or a `[1]` tensor on the gradients' device.
#[allow(clippy::large_enum_variant)] // one per step
enum Factor {
    Host(f64),
    Device(Tensor<1>),
}

/// The factor that clips the gradients of `module` to global L2 norm `max_norm`, or None when
/// they need none. On the CPU the norm is read, and None when it is not over (a NaN norm
/// included); on a GPU the factor min(1, max_norm / norm) stays on the device (reading the norm
/// would wait for the device every batch).
fn clip_factor<M: Module>(module: &M, grads: &GradientsParams, max_norm: f64) -> Option<Factor> {
    let mut flat = Flattened {
        grads,
        all: Vec::new(),
    };
    module.visit(&mut flat);
    let first = flat.all.first()?;
    if !crate::device::is_cpu(&first.device()) {
        // 1 unless the norm is over: also for a NaN norm, as on the CPU
        return device_clip_factor(flat.all, max_norm as f32).map(Factor::Device);
    }
    let total = flat
        .all
        .into_iter()
        .map(|g| (g.clone() * g).sum())
        .reduce(|a, b| a + b)
        .expect("one gradient at least");
    let n = (total.into_scalar::<f32>() as f64).sqrt();
    // (a NaN norm leaves the gradients as they are)
    (n > max_norm).then(|| Factor::Host(max_norm / (n + 1e-6)))
}

/// Clips the gradients of `module` to global L2 norm `max_norm`: each is scaled by
/// min(1, max_norm / (‖g‖ + 1e-6)) when the norm of all of them, flattened, is over.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) {
    if let Some(factor) = clip_factor(module, grads, max_norm) {
        module.visit(&mut Scale { grads, factor });
    }
}

thread_local! {
    /// The gradient scale [`step_clipped`] hands gfr's Adam on a GPU for one step, and how
    /// many parameters Adam scaled with it.
    static GRAD_SCALE: RefCell<(Option<Tensor<1>>, usize)> = const { RefCell::new((None, 0)) };
}

/// Clears [`GRAD_SCALE`] when the step ends, also by a panic.
struct ScaleGuard;

impl Drop for ScaleGuard {
    fn drop(&mut self) {
        GRAD_SCALE.with(|s| *s.borrow_mut() = (None, 0));
    }
}

/// [`clip_global_norm`] then `optim`'s step with learning rate `lr`. On a GPU the clipping
/// factor stays on the device and gfr's Adam ([`adam`]) applies it inside its own kernel,
/// where scaling each gradient first would take a launch per parameter; there `optim` must be
/// gfr's Adam (another optimizer panics after its step rather than step unclipped). The CPU
/// and the numbers are as with [`clip_global_norm`] and a step.
pub fn step_clipped<M: Module>(
    optim: &mut ModuleOptimizer,
    lr: LearningRate,
    module: M,
    mut grads: GradientsParams,
    max_norm: f64,
) -> M {
    match clip_factor(&module, &grads, max_norm) {
        None => optim.step(lr, module, grads),
        Some(Factor::Device(scale)) => {
            let _clear = ScaleGuard;
            GRAD_SCALE.with(|s| *s.borrow_mut() = (Some(scale), 0));
            let module = optim.step(lr, module, grads);
            let scaled = GRAD_SCALE.with(|s| s.borrow().1);
            assert!(
                scaled > 0,
                "step_clipped on a GPU needs gfr's Adam (gfr::optim::adam): this optimizer stepped without the clipping factor"
            );
            module
        }
        Some(factor) => {
            module.visit(&mut Scale {
                grads: &mut grads,
                factor,
            });
            optim.step(lr, module, grads)
        }
    }
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
        if crate::device::is_cpu(&tensor.device()) {
            return self.burn.step(lr, tensor, grad, state);
        }
        // the clipping factor of `step_clipped`, if this step is one
        let scale = GRAD_SCALE.with(|s| {
            let mut s = s.borrow_mut();
            s.1 += usize::from(s.0.is_some());
            s.0.clone()
        });
        let (time, moments) = match state {
            Some(s) => (
                s.momentum.time + 1,
                Some((s.momentum.moment_1, s.momentum.moment_2)),
            ),
            None => (1, None),
        };
        let (tensor, moment_1, moment_2) =
            cube::adam_step(tensor, grad, scale, moments, AdamStep::at(time, lr));
        let state = AdamState::new(AdaptiveMomentumState::new(time, moment_1, moment_2));
        (tensor, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.to_device(device);
        state
    }
}
