//! The fused fit loss's CubeCL kernels (wgpu). Forward: the lengths as floats, the scan's
//! rows packed through the sweeps' neuron index, the scan's forward kernel, `loss_kernel` (each
//! sweep's loss and the weighted total in one cube). Backward: `loss_backward_kernel`, the
//! scan's backward kernel, the per-sweep gradients summed by neuron.

// CubeCL kernels index tensors with `x[i] = x[i] + …` (no compound assignment on indices)
#![allow(clippy::assign_op_pattern)]

use burn::backend::ops::IntTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Cube, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::fused::SweepLossInputs;
use crate::scan::cube::{
    KernelInputs, empty, fits_device, forward_kernel, grads_by_row, pack_selected, sequence_grads,
};

/// Units per cube.
const UNITS: u32 = 256;

/// What the backward pass keeps from the forward pass.
#[derive(Clone, Debug)]
pub(crate) struct Saved {
    /// The scan's inputs (the packed rows of the sweeps' neurons, the lengths as floats).
    scan: KernelInputs,
    /// Rates, u, I and ∂r/∂z, each `[1, T, S]`.
    trace: [CubeTensor; 4],
}

/// One cube: L_s = Σ_t m (f Δt − y Δt ln(f Δt + ε)) of each sweep (units stride over the
/// sweeps) into `losses` `[1, S]`, and Σ_s w_s L_s into `total[0]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn loss_kernel<F: Float>(
    rates: &Tensor<F>,
    target: &Tensor<F>,
    mask: &Tensor<F>,
    weight: &Tensor<F>,
    losses: &mut Tensor<F>,
    total: &mut Tensor<F>,
    dt: InputScalar,
    eps: InputScalar,
    #[comptime] units: usize,
    #[define(F)] _dtype: ElemType,
) {
    let u = UNIT_POS_X as usize;
    let sweeps = weight.len();
    let time = target.shape(0);
    let (dt, eps) = (dt.get::<F>(), eps.get::<F>());
    let mut part = F::new(0.0);
    let mut s = u;
    while s < sweeps {
        let mut acc = F::new(0.0);
        for t in 0..time {
            let at = t * sweeps + s;
            let m = mask[at];
            if m != F::new(0.0) {
                let mu = rates[at] * dt;
                acc += (mu - target[at] * dt * (mu + eps).ln()) * m;
            }
        }
        losses[s] = acc;
        part += acc * weight[s];
        s += units;
    }
    let mut shared = Shared::<[F]>::new_slice(units);
    shared[u] = part;
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
        total[0] = shared[0];
    }
}

/// ∂L/∂f `[1, T, S]` from g = ∂L/∂total (`grad_total[0]`): g w_s m Δt (1 − y Δt / (f Δt + ε)).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn loss_backward_kernel<F: Float>(
    grad_total: &Tensor<F>,
    rates: &Tensor<F>,
    target: &Tensor<F>,
    mask: &Tensor<F>,
    weight: &Tensor<F>,
    grad_rates: &mut Tensor<F>,
    dt: InputScalar,
    eps: InputScalar,
    #[define(F)] _dtype: ElemType,
) {
    let at = ABSOLUTE_POS;
    if at < grad_rates.len() {
        let sweeps = weight.len();
        let (dt, eps) = (dt.get::<F>(), eps.get::<F>());
        let m = mask[at];
        let mut g = F::new(0.0);
        if m != F::new(0.0) {
            let mu = rates[at] * dt;
            g = (F::new(1.0) - target[at] * dt / (mu + eps))
                * m
                * dt
                * weight[at % sweeps]
                * grad_total[0];
        }
        grad_rates[at] = g;
    }
}

/// The inputs with every tensor contiguous (a no-op for tensors that already are).
pub(crate) fn contiguous(x: SweepLossInputs<Cube>) -> SweepLossInputs<Cube> {
    let c = into_contiguous;
    SweepLossInputs {
        current: c(x.current),
        target: c(x.target),
        mask: c(x.mask),
        weight: c(x.weight),
        rows: c(x.rows),
        lengths: c(x.lengths),
        alpha: c(x.alpha),
        beta: c(x.beta),
        decay: c(x.decay),
        coeffs: c(x.coeffs),
        threshold: c(x.threshold),
        max_current: c(x.max_current),
        max_rate: c(x.max_rate),
        dt: x.dt,
        eps: x.eps,
    }
}

/// Whether the kernels fit the device: the scan's cubes, one row of at most 65,535 cubes for
/// the element-wise backward, and some sweeps.
pub(crate) fn fits(x: &SweepLossInputs<Cube>) -> bool {
    let [_, time, sweeps] = x.current.shape().dims::<3>();
    sweeps > 0
        && time > 0
        && fits_device(&x.current, 1, sweeps, false)
        && ((time * sweeps) as u64).div_ceil(UNITS as u64) <= 65_535
}

fn dtype(t: &CubeTensor) -> ElemType {
    burn::backend::cubecl::dtype_to_storage_type(t.dtype)
}

/// The forward pass: the weighted total `[1]`, the sweep losses `[1, S]` and what the backward
/// pass needs.
pub(crate) fn forward(x: &SweepLossInputs<Cube>) -> (FloatTensor<Cube>, FloatTensor<Cube>, Saved) {
    let like = &x.current;
    let scan = KernelInputs {
        current: x.current.clone(),
        weight: None,
        decay: x.decay.clone(),
        params: pack_selected(
            [&x.alpha, &x.beta, &x.coeffs],
            [&x.threshold, &x.max_current, &x.max_rate],
            &x.rows,
        ),
        lengths: into_contiguous(Cube::int_into_float(x.lengths.clone(), like.dtype.into())),
    };
    let trace = forward_kernel(&scan);
    let sweeps = x.weight.shape().num_elements();
    let losses = empty(like, Shape::new([1, sweeps]));
    let total = empty(like, Shape::new([1]));
    let scalar = |v: f64| InputScalar::new(v as f32, dtype(like));
    loss_kernel::launch(
        &like.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(UNITS),
        trace[0].clone().into_tensor_arg(),
        x.target.clone().into_tensor_arg(),
        x.mask.clone().into_tensor_arg(),
        x.weight.clone().into_tensor_arg(),
        losses.clone().into_tensor_arg(),
        total.clone().into_tensor_arg(),
        scalar(x.dt),
        scalar(x.eps),
        UNITS as usize,
        dtype(like),
    );
    (total, losses, Saved { scan, trace })
}

/// The backward pass from ∂L/∂total: gradients of α, β, c and b (the layer's rows).
pub(crate) fn backward(
    x: &SweepLossInputs<Cube>,
    saved: &Saved,
    grad_total: FloatTensor<Cube>,
) -> [FloatTensor<Cube>; 4] {
    let like = &x.current;
    let rates = &saved.trace[0];
    let grad_rates = empty(like, rates.shape());
    let n = rates.shape().num_elements() as u32;
    let scalar = |v: f64| InputScalar::new(v as f32, dtype(like));
    loss_backward_kernel::launch(
        &like.client,
        CubeCount::Static(n.div_ceil(UNITS), 1, 1),
        CubeDim::new_1d(UNITS),
        into_contiguous(grad_total).into_tensor_arg(),
        rates.clone().into_tensor_arg(),
        x.target.clone().into_tensor_arg(),
        x.mask.clone().into_tensor_arg(),
        x.weight.clone().into_tensor_arg(),
        grad_rates.clone().into_tensor_arg(),
        scalar(x.dt),
        scalar(x.eps),
        dtype(like),
    );
    let (_, d_params) = sequence_grads(&saved.scan, &saved.trace, grad_rates);
    let neurons = x.threshold.shape().num_elements();
    grads_by_row(d_params, &x.rows, &saved.scan.params, &x.decay, neurons)
}
