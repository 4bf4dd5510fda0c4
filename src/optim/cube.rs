//! Adam as one CubeCL kernel per parameter (wgpu): reads θ, g, m, v once and writes θ, m, v.

// CubeCL kernels index tensors with `x[i] = …` (no compound assignment on indices)
#![allow(clippy::assign_op_pattern)]

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, ExtensionType, TensorMetadata, backend_extension};
use burn_cubecl::kernel::into_contiguous;
use cubecl::prelude::*;

use super::AdamStep;
use crate::scan::cube::{cube_sum, elementwise_cubes, empty};

/// A tensor of Burn's (cubecl's `Tensor` is the kernels' view of one).
type BurnTensor<const D: usize> = burn::tensor::Tensor<D>;

/// Units per cube.
const UNITS: u32 = 256;

/// One Adam step of a parameter on the device.
#[backend_extension(Cube)]
pub trait AdamKernel: Backend {
    /// θ, g, m, v (one shape) → θ − lr · m′ f / (√v′ + ε′), m′ = β₁ m + (1 − β₁) g,
    /// v′ = β₂ v + (1 − β₂) g², as (θ′, m′, v′); with `scaled`, g is first multiplied by
    /// `scale[0]` (the clipping factor; unread otherwise).
    fn adam_kernel(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scaled: bool,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adam_step_kernel<F: Float>(
    param: &Tensor<F>,
    grad: &Tensor<F>,
    scale: &Tensor<F>,
    moment_1: &Tensor<F>,
    moment_2: &Tensor<F>,
    param_out: &mut Tensor<F>,
    moment_1_out: &mut Tensor<F>,
    moment_2_out: &mut Tensor<F>,
    beta_1: InputScalar,
    beta_2: InputScalar,
    factor: InputScalar,
    epsilon: InputScalar,
    lr: InputScalar,
    #[comptime] scaled: bool,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i < param.len() {
        let (b1, b2) = (beta_1.get::<F>(), beta_2.get::<F>());
        let mut g = grad[i];
        if scaled {
            g = g * scale[0];
        }
        // Burn's operations in Burn's order (a driver may fuse a multiply-add: an f32 rounding)
        let m = moment_1[i] * b1 + g * (F::new(1.0) - b1);
        let v = moment_2[i] * b2 + (g * g) * (F::new(1.0) - b2);
        let update = (m * factor.get::<F>()) / (v.sqrt() + epsilon.get::<F>());
        param_out[i] = param[i] - update * lr.get::<F>();
        moment_1_out[i] = m;
        moment_2_out[i] = v;
    }
}

impl AdamKernel for Cube {
    fn adam_kernel(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        scaled: bool,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [param, grad, scale, moment_1, moment_2] =
            [param, grad, scale, moment_1, moment_2].map(into_contiguous);
        let out = [(); 3].map(|_| empty(&param, param.shape()));
        let n = param.shape().num_elements() as u32;
        if n == 0 {
            let [p, m, v] = out;
            return (p, m, v);
        }
        let dtype = burn::backend::cubecl::dtype_to_storage_type(param.dtype);
        let scalar = |x: f32| InputScalar::new(x, dtype);
        let client = param.client.clone();
        adam_step_kernel::launch(
            &client,
            elementwise_cubes(&param, n as usize, UNITS),
            CubeDim::new_1d(UNITS),
            param.into_tensor_arg(),
            grad.into_tensor_arg(),
            scale.into_tensor_arg(),
            moment_1.into_tensor_arg(),
            moment_2.into_tensor_arg(),
            out[0].clone().into_tensor_arg(),
            out[1].clone().into_tensor_arg(),
            out[2].clone().into_tensor_arg(),
            scalar(step.beta_1),
            scalar(step.beta_2),
            scalar(step.factor),
            scalar(step.epsilon),
            scalar(step.lr),
            scaled,
            dtype,
        );
        let [p, m, v] = out;
        (p, m, v)
    }
}

/// One Adam step of `param` (no moments yet: zeros) with `grad` scaled by `scale` `[1]` if
/// given, on a wgpu device.
pub(super) fn adam_step<const D: usize>(
    param: BurnTensor<D>,
    grad: BurnTensor<D>,
    scale: Option<BurnTensor<1>>,
    moments: Option<(BurnTensor<D>, BurnTensor<D>)>,
    step: AdamStep,
) -> (BurnTensor<D>, BurnTensor<D>, BurnTensor<D>) {
    use burn::backend::Dispatch;
    let (m, v) = moments.unwrap_or_else(|| (param.zeros_like(), param.zeros_like()));
    let scaled = scale.is_some();
    // without a scale the kernel reads none: any tensor binds the slot
    let scale = scale.map_or_else(|| grad.clone().into_dispatch(), BurnTensor::into_dispatch);
    let (p, m, v) = <Dispatch as AdamKernel>::adam_kernel(
        param.into_dispatch(),
        grad.into_dispatch(),
        scale,
        scaled,
        m.into_dispatch(),
        v.into_dispatch(),
        step,
    );
    (
        BurnTensor::from_dispatch(p),
        BurnTensor::from_dispatch(m),
        BurnTensor::from_dispatch(v),
    )
}

/// Gradients one clipping launch reads.
const PER_LAUNCH: usize = 8;

/// Up to [`PER_LAUNCH`] gradients for one clipping launch: `count` of them, the other slots
/// bound to the first and unread.
#[derive(ExtensionType, Clone, Debug)]
pub struct GradGroup<B: Backend> {
    g0: FloatTensor<B>,
    g1: FloatTensor<B>,
    g2: FloatTensor<B>,
    g3: FloatTensor<B>,
    g4: FloatTensor<B>,
    g5: FloatTensor<B>,
    g6: FloatTensor<B>,
    g7: FloatTensor<B>,
    count: usize,
}

/// The global-norm clipping factor of a step's gradients on the device, in ⌈P / 8⌉ launches
/// for P gradients (Burn's operations take about four per gradient).
#[backend_extension(Cube)]
pub trait ClipKernels: Backend {
    /// Writes Σ g² over the group's gradients into `sums[slot]` (one cube: 256 units stride
    /// over each gradient in turn, then a tree in shared memory) and hands `sums` back. With
    /// `max_norm` (the last group), also writes the factor from `sums[0..=slot]` into
    /// `factor[0]`: max_norm / (‖g‖ + 1e-6) where ‖g‖ = √(Σ sums) exceeds it, else 1 (also
    /// for a NaN norm).
    fn clip_sums(
        #[extension_type] group: GradGroup<Self>,
        sums: FloatTensor<Self>,
        slot: usize,
        factor: FloatTensor<Self>,
        max_norm: Option<f32>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

/// Σ g² over the entries of `grad` that unit `u` of `units` visits.
#[cube]
fn squares<F: Float>(grad: &Tensor<F>, u: usize, #[comptime] units: usize) -> F {
    let mut acc = F::new(0.0);
    let mut i = u;
    while i < grad.len() {
        let g = grad[i];
        acc += g * g;
        i += units;
    }
    acc
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn clip_sums_kernel<F: Float>(
    g0: &Tensor<F>,
    g1: &Tensor<F>,
    g2: &Tensor<F>,
    g3: &Tensor<F>,
    g4: &Tensor<F>,
    g5: &Tensor<F>,
    g6: &Tensor<F>,
    g7: &Tensor<F>,
    sums: &mut Tensor<F>,
    factor: &mut Tensor<F>,
    slot: InputScalar,
    max_norm: InputScalar,
    #[comptime] count: usize,
    #[comptime] last: bool,
    #[comptime] units: usize,
    #[define(F)] _dtype: ElemType,
) {
    let u = UNIT_POS_X as usize;
    let mut acc = squares::<F>(g0, u, units);
    if comptime!(count > 1) {
        acc += squares::<F>(g1, u, units);
    }
    if comptime!(count > 2) {
        acc += squares::<F>(g2, u, units);
    }
    if comptime!(count > 3) {
        acc += squares::<F>(g3, u, units);
    }
    if comptime!(count > 4) {
        acc += squares::<F>(g4, u, units);
    }
    if comptime!(count > 5) {
        acc += squares::<F>(g5, u, units);
    }
    if comptime!(count > 6) {
        acc += squares::<F>(g6, u, units);
    }
    if comptime!(count > 7) {
        acc += squares::<F>(g7, u, units);
    }
    let sum = cube_sum::<F>(acc, units);
    if u == 0 {
        let k = u32::cast_from(slot.get::<F>()) as usize;
        sums[k] = sum;
        if last {
            // the earlier groups' sums, written by earlier launches
            let mut total = sum;
            for j in 0..k {
                total += sums[j];
            }
            let norm = total.sqrt();
            let max = max_norm.get::<F>();
            let mut f = F::new(1.0);
            if norm > max {
                f = max / (norm + F::new(1e-6));
            }
            factor[0] = f;
        }
    }
}

impl ClipKernels for Cube {
    fn clip_sums(
        group: GradGroup<Self>,
        sums: FloatTensor<Self>,
        slot: usize,
        factor: FloatTensor<Self>,
        max_norm: Option<f32>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let g = [
            group.g0, group.g1, group.g2, group.g3, group.g4, group.g5, group.g6, group.g7,
        ]
        .map(into_contiguous);
        let dtype = burn::backend::cubecl::dtype_to_storage_type(g[0].dtype);
        let client = g[0].client.clone();
        let [g0, g1, g2, g3, g4, g5, g6, g7] = g.map(|t| t.into_tensor_arg());
        clip_sums_kernel::launch(
            &client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(UNITS),
            g0,
            g1,
            g2,
            g3,
            g4,
            g5,
            g6,
            g7,
            sums.clone().into_tensor_arg(),
            factor.clone().into_tensor_arg(),
            InputScalar::new(slot as f32, dtype),
            InputScalar::new(max_norm.unwrap_or(0.0), dtype),
            group.count,
            max_norm.is_some(),
            UNITS as usize,
            dtype,
        );
        (sums, factor)
    }
}

/// The clipping factor `[1]` for gradients (flattened) to global L2 norm `max_norm`, on a
/// wgpu device: min(1, max_norm / (‖g‖ + 1e-6)), 1 for a NaN norm. None without gradients.
pub(super) fn clip_factor(grads: Vec<BurnTensor<1>>, max_norm: f32) -> Option<BurnTensor<1>> {
    use burn::backend::Dispatch;
    let first = grads.first()?.clone();
    let device = first.device();
    let groups = grads.len().div_ceil(PER_LAUNCH);
    let mut sums = BurnTensor::<1>::empty([groups], &device).into_dispatch();
    let mut factor = BurnTensor::<1>::empty([1], &device).into_dispatch();
    for (slot, chunk) in grads.chunks(PER_LAUNCH).enumerate() {
        let at = |k: usize| chunk.get(k).unwrap_or(&chunk[0]).clone().into_dispatch();
        let group = GradGroup {
            g0: at(0),
            g1: at(1),
            g2: at(2),
            g3: at(3),
            g4: at(4),
            g5: at(5),
            g6: at(6),
            g7: at(7),
            count: chunk.len(),
        };
        let last = (slot + 1 == groups).then_some(max_norm);
        (sums, factor) = <Dispatch as ClipKernels>::clip_sums(group, sums, slot, factor, last);
    }
    Some(BurnTensor::from_dispatch(factor))
}
