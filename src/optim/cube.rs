//! Adam as one CubeCL kernel per parameter (wgpu): reads θ, g, m, v once and writes θ, m, v.

// CubeCL kernels index tensors with `x[i] = …` (no compound assignment on indices)
#![allow(clippy::assign_op_pattern)]

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, TensorMetadata, backend_extension};
use burn_cubecl::kernel::into_contiguous;
use cubecl::prelude::*;

use super::AdamStep;
use crate::scan::cube::empty;

/// A tensor of Burn's (cubecl's `Tensor` is the kernels' view of one).
type BurnTensor<const D: usize> = burn::tensor::Tensor<D>;

/// Units per cube.
const UNITS: u32 = 256;

/// One Adam step of a parameter on the device.
#[backend_extension(Cube)]
pub trait AdamKernel: Backend {
    /// θ, g, m, v (one shape) → θ − lr · m′ f / (√v′ + ε′), m′ = β₁ m + (1 − β₁) g,
    /// v′ = β₂ v + (1 − β₂) g², as (θ′, m′, v′).
    fn adam_kernel(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
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
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i < param.len() {
        let (b1, b2) = (beta_1.get::<F>(), beta_2.get::<F>());
        let g = grad[i];
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
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [param, grad, moment_1, moment_2] =
            [param, grad, moment_1, moment_2].map(into_contiguous);
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
            CubeCount::Static(n.div_ceil(UNITS), 1, 1),
            CubeDim::new_1d(UNITS),
            param.into_tensor_arg(),
            grad.into_tensor_arg(),
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
            dtype,
        );
        let [p, m, v] = out;
        (p, m, v)
    }
}

/// Whether one launch covers the tensor (one cube row of at most 65,535 cubes).
pub(super) fn fits<const D: usize>(t: &BurnTensor<D>) -> bool {
    (t.shape().num_elements() as u64).div_ceil(UNITS as u64) <= 65_535
}

/// One Adam step of `param` (no moments yet: zeros), on a wgpu device.
pub(super) fn adam_step<const D: usize>(
    param: BurnTensor<D>,
    grad: BurnTensor<D>,
    moments: Option<(BurnTensor<D>, BurnTensor<D>)>,
    step: AdamStep,
) -> (BurnTensor<D>, BurnTensor<D>, BurnTensor<D>) {
    use burn::backend::Dispatch;
    let (m, v) = moments.unwrap_or_else(|| (param.zeros_like(), param.zeros_like()));
    let (p, m, v) = <Dispatch as AdamKernel>::adam_kernel(
        param.into_dispatch(),
        grad.into_dispatch(),
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

/// The global-norm clipping factor of a step's gradients on the device, in P + 1 launches
/// (P gradients) instead of about four per gradient with Burn's operations.
#[backend_extension(Cube)]
pub trait ClipKernels: Backend {
    /// Writes Σ g² of `grad` into `sums[slot]` (one cube: 256 units, then a tree in shared
    /// memory) and hands `sums` back.
    fn squared_sum_into(
        grad: FloatTensor<Self>,
        sums: FloatTensor<Self>,
        slot: usize,
    ) -> FloatTensor<Self>;
    /// `[1]`: max_norm / (‖g‖ + 1e-6) where ‖g‖ = √(Σ sums) exceeds `max_norm`, else 1 (also
    /// for a NaN norm).
    fn clip_factor(sums: FloatTensor<Self>, max_norm: f32) -> FloatTensor<Self>;
}

#[cube(launch)]
fn squared_sum_kernel<F: Float>(
    grad: &Tensor<F>,
    sums: &mut Tensor<F>,
    slot: InputScalar,
    #[comptime] units: usize,
    #[define(F)] _dtype: ElemType,
) {
    let u = UNIT_POS_X as usize;
    let n = grad.len();
    let mut acc = F::new(0.0);
    let mut i = u;
    while i < n {
        let g = grad[i];
        acc += g * g;
        i += units;
    }
    let mut shared = Shared::<[F]>::new_slice(units);
    shared[u] = acc;
    sync_cube();
    let mut stride = (CUBE_DIM_X / 2) as usize;
    while stride > 0 {
        if u < stride {
            shared[u] = shared[u] + shared[u + stride];
        }
        sync_cube();
        stride = stride / 2;
    }
    if u == 0 {
        let k = u32::cast_from(slot.get::<F>()) as usize;
        sums[k] = shared[0];
    }
}

#[cube(launch)]
fn clip_factor_kernel<F: Float>(
    sums: &Tensor<F>,
    factor: &mut Tensor<F>,
    max_norm: InputScalar,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS == 0 {
        let mut total = F::new(0.0);
        for k in 0..sums.len() {
            total += sums[k];
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

impl ClipKernels for Cube {
    fn squared_sum_into(
        grad: FloatTensor<Self>,
        sums: FloatTensor<Self>,
        slot: usize,
    ) -> FloatTensor<Self> {
        let grad = into_contiguous(grad);
        let dtype = burn::backend::cubecl::dtype_to_storage_type(grad.dtype);
        squared_sum_kernel::launch(
            &grad.client.clone(),
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(UNITS),
            grad.into_tensor_arg(),
            sums.clone().into_tensor_arg(),
            InputScalar::new(slot as f32, dtype),
            UNITS as usize,
            dtype,
        );
        sums
    }

    fn clip_factor(sums: FloatTensor<Self>, max_norm: f32) -> FloatTensor<Self> {
        let dtype = burn::backend::cubecl::dtype_to_storage_type(sums.dtype);
        let factor = empty(&sums, [1].into());
        clip_factor_kernel::launch(
            &sums.client.clone(),
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            sums.into_tensor_arg(),
            factor.clone().into_tensor_arg(),
            InputScalar::new(max_norm, dtype),
            dtype,
        );
        factor
    }
}

/// The clipping factor `[1]` for gradients (flattened) to global L2 norm `max_norm`, on a
/// wgpu device: min(1, max_norm / (‖g‖ + 1e-6)), 1 for a NaN norm. None without gradients.
pub(super) fn clip_factor(grads: Vec<BurnTensor<1>>, max_norm: f32) -> Option<BurnTensor<1>> {
    use burn::backend::Dispatch;
    let first = grads.first()?;
    let mut sums = BurnTensor::<1>::empty([grads.len()], &first.device()).into_dispatch();
    for (slot, g) in grads.into_iter().enumerate() {
        sums = <Dispatch as ClipKernels>::squared_sum_into(g.into_dispatch(), sums, slot);
    }
    Some(BurnTensor::from_dispatch(
        <Dispatch as ClipKernels>::clip_factor(sums, max_norm),
    ))
}
