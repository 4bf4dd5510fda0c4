//! The fused fit loss's CubeCL kernels (wgpu). Forward: `gather_kernel` (the step's columns of
//! the group's upload), the scan's rows packed through the sweeps' neuron index, the scan's
//! forward kernel, `loss_kernel` (each sweep's loss), `total_kernel` (their weighted sum).
//! Backward: `loss_backward_kernel`, the scan's backward kernel, the per-sweep gradients summed
//! by neuron.

// CubeCL kernels index tensors with `x[i] = x[i] + …` (no compound assignment on indices)
#![allow(clippy::assign_op_pattern)]

use burn::backend::tensor::FloatTensor;
use burn::backend::{Cube, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::fused::{ActivationLossInputs, SweepLossInputs};
use crate::scan::cube::{
    KernelInputs, clamped_tanh, cube_sum, elementwise_cubes, empty, fits_device, forward_kernel,
    grads_by_row, pack_selected, sequence_grads,
};

/// Units per cube.
const UNITS: u32 = 256;

/// What the backward pass keeps from the forward pass. Every tensor `[T, S]` of it holds each
/// sweep's valid bins only (its length, `scan.lengths`): the kernels read no others.
#[derive(Clone, Debug)]
pub(crate) struct Saved {
    /// The scan's inputs: the step's current, its sweeps' neurons packed, lengths as floats.
    scan: KernelInputs,
    /// The step's sweeps.
    step: Step,
    /// Rates, u, I and ∂r/∂z, each `[1, T, S]`.
    trace: [CubeTensor; 4],
}

/// The step's columns of the group: targets and masks `[T, S]`, weights `[1, S]`, neurons `[S]`.
#[derive(Clone, Debug)]
struct Step {
    target: CubeTensor,
    mask: CubeTensor,
    weight: CubeTensor,
    rows: CubeTensor,
}

/// The step's columns `cols` `[S]` of the group (current `[1, T_all, S_all]`, targets and masks
/// `[T_all, S_all]`, weights `[1, S_all]`, neurons and lengths `[S_all]`), each sweep's valid
/// bins of the first T (the rest left unwritten), the lengths as floats: one unit per output
/// entry.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn gather_kernel<F: Float, I: Numeric>(
    current_all: &Tensor<F>,
    target_all: &Tensor<F>,
    mask_all: &Tensor<F>,
    weight_all: &Tensor<F>,
    rows_all: &Tensor<I>,
    lengths_all: &Tensor<I>,
    cols: &Tensor<I>,
    current: &mut Tensor<F>,
    target: &mut Tensor<F>,
    mask: &mut Tensor<F>,
    weight: &mut Tensor<F>,
    rows: &mut Tensor<I>,
    lengths: &mut Tensor<F>,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let pos = ABSOLUTE_POS;
    let sweeps = cols.len();
    let all = weight_all.len();
    let bins = sweeps * mask.shape(0);
    if pos < bins {
        // only a sweep's valid bins: nothing reads the others (see `Saved`)
        let c = u32::cast_from(cols[pos % sweeps]) as usize;
        let t = pos / sweeps;
        if t < u32::cast_from(lengths_all[c]) as usize {
            let at = t * all + c;
            current[pos] = current_all[at];
            target[pos] = target_all[at];
            mask[pos] = mask_all[at];
        }
    } else if pos < bins + sweeps {
        let s = pos - bins;
        let c = u32::cast_from(cols[s]) as usize;
        weight[s] = weight_all[c];
        rows[s] = rows_all[c];
        lengths[s] = F::cast_from(lengths_all[c]);
    }
}

/// L_s = Σ_t m (f Δt − y Δt ln(f Δt + ε)) of each sweep into `losses` `[1, S]`: one unit per
/// sweep.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn loss_kernel<F: Float>(
    rates: &Tensor<F>,
    target: &Tensor<F>,
    mask: &Tensor<F>,
    lengths: &Tensor<F>,
    losses: &mut Tensor<F>,
    dt: InputScalar,
    eps: InputScalar,
    #[define(F)] _dtype: ElemType,
) {
    let s = ABSOLUTE_POS;
    let sweeps = losses.len();
    if s < sweeps {
        let len = u32::cast_from(lengths[s]) as usize;
        let (dt, eps) = (dt.get::<F>(), eps.get::<F>());
        let mut acc = F::new(0.0);
        for t in 0..len {
            let at = t * sweeps + s;
            let m = mask[at];
            if m != F::new(0.0) {
                let mu = rates[at] * dt;
                acc += (mu - target[at] * dt * (mu + eps).ln()) * m;
            }
        }
        losses[s] = acc;
    }
}

/// One cube: Σ_s w_s L_s into `total[0]` (units stride over the sweeps, then a tree in shared
/// memory).
#[cube(launch)]
fn total_kernel<F: Float>(
    losses: &Tensor<F>,
    weight: &Tensor<F>,
    total: &mut Tensor<F>,
    #[comptime] units: usize,
    #[define(F)] _dtype: ElemType,
) {
    let u = UNIT_POS_X as usize;
    let mut part = F::new(0.0);
    let mut s = u;
    while s < losses.len() {
        part += losses[s] * weight[s];
        s += units;
    }
    let sum = cube_sum::<F>(part, units);
    if u == 0 {
        total[0] = sum;
    }
}

/// ∂L/∂f `[1, T, S]` from g = ∂L/∂total (`grad_total[0]`): g w_s m Δt (1 − y Δt / (f Δt + ε))
/// on each sweep's valid bins.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn loss_backward_kernel<F: Float>(
    grad_total: &Tensor<F>,
    rates: &Tensor<F>,
    target: &Tensor<F>,
    mask: &Tensor<F>,
    weight: &Tensor<F>,
    lengths: &Tensor<F>,
    grad_rates: &mut Tensor<F>,
    dt: InputScalar,
    eps: InputScalar,
    #[define(F)] _dtype: ElemType,
) {
    let at = ABSOLUTE_POS;
    let sweeps = weight.len();
    // (a sweep's valid bins only: the scan's backward kernel reads no others)
    if at < grad_rates.len() && at / sweeps < u32::cast_from(lengths[at % sweeps]) as usize {
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
        columns: c(x.columns),
        row_spans: c(x.row_spans),
        time: x.time,
        alpha: c(x.alpha),
        beta: c(x.beta),
        decay: c(x.decay),
        coeffs: c(x.coeffs),
        threshold: c(x.threshold),
        max_current: c(x.max_current),
        max_rate: c(x.max_rate),
        beta_scale: x.beta_scale,
        dt: x.dt,
        eps: x.eps,
    }
}

/// Whether the kernels fit the device (the scan's cubes) and there is work: some sweeps and
/// bins.
pub(crate) fn fits(x: &SweepLossInputs<Cube>) -> bool {
    let (time, sweeps) = (x.time, x.columns.shape().num_elements());
    sweeps > 0
        && time > 0
        && time <= x.current.shape().dims::<3>()[1]
        && fits_device(&x.current, 1, sweeps, false)
}

fn dtype(t: &CubeTensor) -> ElemType {
    burn::backend::cubecl::dtype_to_storage_type(t.dtype)
}

/// The forward pass: the weighted total `[1]`, the sweep losses `[1, S]` and what the backward
/// pass needs.
pub(crate) fn forward(x: &SweepLossInputs<Cube>) -> (FloatTensor<Cube>, FloatTensor<Cube>, Saved) {
    let like = &x.current;
    let (time, sweeps) = (x.time, x.columns.shape().num_elements());
    let current = empty(like, Shape::new([1, time, sweeps]));
    let step = Step {
        target: empty(like, Shape::new([time, sweeps])),
        mask: empty(like, Shape::new([time, sweeps])),
        weight: empty(like, Shape::new([1, sweeps])),
        rows: empty(&x.rows, Shape::new([sweeps])),
    };
    let lengths = empty(like, Shape::new([1, sweeps]));
    let dtypes = [dtype(like), dtype(&x.rows)];
    gather_kernel::launch(
        &like.client,
        cubes(like, time * sweeps + sweeps),
        CubeDim::new_1d(UNITS),
        x.current.clone().into_tensor_arg(),
        x.target.clone().into_tensor_arg(),
        x.mask.clone().into_tensor_arg(),
        x.weight.clone().into_tensor_arg(),
        x.rows.clone().into_tensor_arg(),
        x.lengths.clone().into_tensor_arg(),
        x.columns.clone().into_tensor_arg(),
        current.clone().into_tensor_arg(),
        step.target.clone().into_tensor_arg(),
        step.mask.clone().into_tensor_arg(),
        step.weight.clone().into_tensor_arg(),
        step.rows.clone().into_tensor_arg(),
        lengths.clone().into_tensor_arg(),
        dtypes,
    );
    let scan = KernelInputs {
        current,
        weight: None,
        decay: x.decay.clone(),
        params: pack_selected(
            [&x.alpha, &x.beta, &x.coeffs],
            [&x.threshold, &x.max_current, &x.max_rate],
            &step.rows,
            x.beta_scale as f32,
        ),
        lengths: Some(lengths.clone()),
        beta_scale: x.beta_scale as f32,
        tail: false,
    };
    let trace = forward_kernel(&scan);
    let losses = empty(like, Shape::new([1, sweeps]));
    let total = empty(like, Shape::new([1]));
    let scalar = |v: f64| InputScalar::new(v as f32, dtype(like));
    loss_kernel::launch(
        &like.client,
        cubes(like, sweeps),
        CubeDim::new_1d(UNITS),
        trace[0].clone().into_tensor_arg(),
        step.target.clone().into_tensor_arg(),
        step.mask.clone().into_tensor_arg(),
        lengths.clone().into_tensor_arg(),
        losses.clone().into_tensor_arg(),
        scalar(x.dt),
        scalar(x.eps),
        dtype(like),
    );
    total_kernel::launch(
        &like.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(UNITS),
        losses.clone().into_tensor_arg(),
        step.weight.clone().into_tensor_arg(),
        total.clone().into_tensor_arg(),
        UNITS as usize,
        dtype(like),
    );
    (total, losses, Saved { scan, step, trace })
}

/// Cubes for `n` units, one unit each.
fn cubes(like: &CubeTensor, n: usize) -> CubeCount {
    elementwise_cubes(like, n, UNITS)
}

/// The backward pass from ∂L/∂total: gradients of α, β, c and b (the layer's rows).
pub(crate) fn backward(
    x: &SweepLossInputs<Cube>,
    saved: &Saved,
    grad_total: FloatTensor<Cube>,
) -> [FloatTensor<Cube>; 4] {
    let like = &x.current;
    let (rates, step) = (&saved.trace[0], &saved.step);
    let grad_rates = empty(like, rates.shape());
    let scalar = |v: f64| InputScalar::new(v as f32, dtype(like));
    loss_backward_kernel::launch(
        &like.client,
        cubes(like, rates.shape().num_elements()),
        CubeDim::new_1d(UNITS),
        into_contiguous(grad_total).into_tensor_arg(),
        rates.clone().into_tensor_arg(),
        step.target.clone().into_tensor_arg(),
        step.mask.clone().into_tensor_arg(),
        step.weight.clone().into_tensor_arg(),
        saved
            .scan
            .lengths
            .clone()
            .expect("the fit's lengths")
            .into_tensor_arg(),
        grad_rates.clone().into_tensor_arg(),
        scalar(x.dt),
        scalar(x.eps),
        dtype(like),
    );
    let (_, d_params) = sequence_grads(&saved.scan, &saved.trace, grad_rates);
    grads_by_row(d_params, &x.row_spans, &saved.scan)
}

/// g = γ max(0, tanh z), z = Σ_k c_k² v^k, v = (x − b)/σ, of activation row `col`, and
/// ∂g/∂z (0 where g is 0).
#[cube]
fn activation_at<F: Float>(
    x: F,
    col: usize,
    coeffs: &Tensor<F>,
    threshold: &Tensor<F>,
    max_current: &Tensor<F>,
    max_rate: &Tensor<F>,
) -> (F, F, F) {
    let kk = coeffs.shape(1);
    let v = (x - threshold[col]) / max_current[col];
    let mut z = F::new(0.0);
    let mut pw = F::new(1.0);
    for k in 0..kk {
        let c = coeffs[col * kk + k];
        z += c * c * pw;
        pw *= v;
    }
    let th = clamped_tanh::<F>(z);
    let gamma = max_rate[col];
    let mut g = F::new(0.0);
    let mut dg = F::new(0.0);
    if th > F::new(0.0) {
        g = gamma * th;
        dg = gamma * (F::new(1.0) - th * th);
    }
    (g, dg, v)
}

/// One cube: Σ m (μ − y Δt ln(μ + ε)), μ = g(x) Δt, over every point of every row into
/// `total[0]` (units stride over the rows).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn activation_loss_kernel<F: Float>(
    current: &Tensor<F>,
    rate: &Tensor<F>,
    mask: &Tensor<F>,
    dt: &Tensor<F>,
    coeffs: &Tensor<F>,
    threshold: &Tensor<F>,
    max_current: &Tensor<F>,
    max_rate: &Tensor<F>,
    total: &mut Tensor<F>,
    eps: InputScalar,
    #[comptime] units: usize,
    #[define(F)] _dtype: ElemType,
) {
    let u = UNIT_POS_X as usize;
    let cols = dt.len();
    let points = current.shape(0);
    let eps = eps.get::<F>();
    let mut part = F::new(0.0);
    let mut col = u;
    while col < cols {
        let step = dt[col];
        for p in 0..points {
            let at = p * cols + col;
            let m = mask[at];
            if m != F::new(0.0) {
                let (g, _dg, _v) =
                    activation_at::<F>(current[at], col, coeffs, threshold, max_current, max_rate);
                let mu = g * step;
                part += (mu - rate[at] * step * (mu + eps).ln()) * m;
            }
        }
        col += units;
    }
    let sum = cube_sum::<F>(part, units);
    if u == 0 {
        total[0] = sum;
    }
}

/// ∂L/∂c `[cols, K]` and ∂L/∂b `[cols]` from g = ∂L/∂total (`grad_total[0]`): a unit per row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn activation_backward_kernel<F: Float>(
    grad_total: &Tensor<F>,
    current: &Tensor<F>,
    rate: &Tensor<F>,
    mask: &Tensor<F>,
    dt: &Tensor<F>,
    coeffs: &Tensor<F>,
    threshold: &Tensor<F>,
    max_current: &Tensor<F>,
    max_rate: &Tensor<F>,
    d_coeffs: &mut Tensor<F>,
    d_threshold: &mut Tensor<F>,
    eps: InputScalar,
    #[define(F)] _dtype: ElemType,
) {
    let col = ABSOLUTE_POS;
    let cols = dt.len();
    if col < cols {
        let points = current.shape(0);
        let kk = coeffs.shape(1);
        let eps = eps.get::<F>();
        let step = dt[col];
        let sigma = max_current[col];
        for k in 0..kk {
            d_coeffs[col * kk + k] = F::new(0.0);
        }
        let mut db = F::new(0.0);
        for p in 0..points {
            let at = p * cols + col;
            let m = mask[at];
            if m != F::new(0.0) {
                let (g, dg, v) =
                    activation_at::<F>(current[at], col, coeffs, threshold, max_current, max_rate);
                if dg != F::new(0.0) {
                    let mu = g * step;
                    // ∂L/∂z = m (1 − y Δt / (μ + ε)) Δt ∂g/∂z
                    let dz = (F::new(1.0) - rate[at] * step / (mu + eps)) * m * step * dg;
                    let mut pw = F::new(1.0);
                    let mut dv = F::new(0.0);
                    for k in 0..kk {
                        let c = coeffs[col * kk + k];
                        let at_c = col * kk + k;
                        d_coeffs[at_c] = d_coeffs[at_c] + dz * F::new(2.0) * c * pw;
                        if k + 1 < kk {
                            let c1 = coeffs[col * kk + k + 1];
                            dv += F::cast_from((k + 1) as u32) * c1 * c1 * pw;
                        }
                        pw *= v;
                    }
                    db -= dz * dv / sigma;
                }
            }
        }
        let g = grad_total[0];
        for k in 0..kk {
            d_coeffs[col * kk + k] = d_coeffs[col * kk + k] * g;
        }
        d_threshold[col] = db * g;
    }
}

/// The inputs with every tensor contiguous (a no-op for tensors that already are).
pub(crate) fn contiguous_activation(x: ActivationLossInputs<Cube>) -> ActivationLossInputs<Cube> {
    let c = into_contiguous;
    ActivationLossInputs {
        current: c(x.current),
        rate: c(x.rate),
        mask: c(x.mask),
        dt: c(x.dt),
        coeffs: c(x.coeffs),
        threshold: c(x.threshold),
        max_current: c(x.max_current),
        max_rate: c(x.max_rate),
        eps: x.eps,
    }
}

/// Whether there is work for the activation kernels: some rows.
pub(crate) fn activation_fits(x: &ActivationLossInputs<Cube>) -> bool {
    x.dt.shape().num_elements() > 0
}

/// The activation fit's loss `[1]`.
pub(crate) fn activation_forward(x: &ActivationLossInputs<Cube>) -> FloatTensor<Cube> {
    let like = &x.current;
    let total = empty(like, Shape::new([1]));
    activation_loss_kernel::launch(
        &like.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(UNITS),
        x.current.clone().into_tensor_arg(),
        x.rate.clone().into_tensor_arg(),
        x.mask.clone().into_tensor_arg(),
        x.dt.clone().into_tensor_arg(),
        x.coeffs.clone().into_tensor_arg(),
        x.threshold.clone().into_tensor_arg(),
        x.max_current.clone().into_tensor_arg(),
        x.max_rate.clone().into_tensor_arg(),
        total.clone().into_tensor_arg(),
        InputScalar::new(x.eps as f32, dtype(like)),
        UNITS as usize,
        dtype(like),
    );
    total
}

/// The backward pass from ∂L/∂total: gradients of c and b.
pub(crate) fn activation_backward(
    x: &ActivationLossInputs<Cube>,
    grad_total: FloatTensor<Cube>,
) -> [FloatTensor<Cube>; 2] {
    let like = &x.current;
    let d_coeffs = empty(like, x.coeffs.shape());
    let d_threshold = empty(like, x.threshold.shape());
    activation_backward_kernel::launch(
        &like.client,
        cubes(&x.dt, x.dt.shape().num_elements()),
        CubeDim::new_1d(UNITS),
        into_contiguous(grad_total).into_tensor_arg(),
        x.current.clone().into_tensor_arg(),
        x.rate.clone().into_tensor_arg(),
        x.mask.clone().into_tensor_arg(),
        x.dt.clone().into_tensor_arg(),
        x.coeffs.clone().into_tensor_arg(),
        x.threshold.clone().into_tensor_arg(),
        x.max_current.clone().into_tensor_arg(),
        x.max_rate.clone().into_tensor_arg(),
        d_coeffs.clone().into_tensor_arg(),
        d_threshold.clone().into_tensor_arg(),
        InputScalar::new(x.eps as f32, dtype(like)),
        dtype(like),
    );
    [d_coeffs, d_threshold]
}
