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
