//! The fused network step's CubeCL kernels (wgpu). Forward: `drive_kernel` (P and the
//! effective recurrent weight), the scan's pack and forward kernels, `readout_kernel` (logits,
//! loss, count and ∂loss/∂logits in one cube). Backward: `readout_backward_kernel`, the scan's
//! backward and batch-sum kernels, `drive_backward_kernel`.

// CubeCL kernels index tensors with `x[i] = x[i] + …` (no compound assignment on indices)
#![allow(clippy::assign_op_pattern)]

use burn::backend::tensor::FloatTensor;
use burn::backend::{Cube, Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::fused::NetworkBatch;
use crate::scan::cube::{
    KernelInputs, backward_kernel, cube_sum, elementwise_cubes, empty, fits_device, forward_kernel,
    pack_rows,
};

/// Units per cube.
const UNITS: u32 = 256;

/// What the backward pass keeps from the forward pass.
#[derive(Clone, Debug)]
pub(crate) struct Saved {
    /// The scan's inputs: P `[B, T + 1, H]`, the effective recurrent weight, the packed neurons.
    scan: KernelInputs,
    /// Rates, u, I and ∂r/∂z, each `[B, T + 1, H]`.
    trace: [CubeTensor; 4],
    /// ∂(mean loss)/∂logits, `[B, C]`.
    dlogits: CubeTensor,
}

/// I_t's constant part and drive: P[b, t, h] = s_in (Σ_j x[b, t, j] W_in[j, h] + b_in) +
/// s_rec b_rec + o (x = 0 at the readout step t = T); then W_eff[i, h] = W_rec[i, h] k_i s_rec,h.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn drive_kernel<F: Float>(
    images: &Tensor<F>,
    w_in: &Tensor<F>,
    b_in: &Tensor<F>,
    w_rec: &Tensor<F>,
    b_rec: &Tensor<F>,
    s_in: &Tensor<F>,
    s_rec: &Tensor<F>,
    offset: &Tensor<F>,
    k: &Tensor<F>,
    current: &mut Tensor<F>,
    w_eff: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    let hh = b_in.len();
    let d = w_in.shape(0);
    let time = images.shape(1);
    let steps = current.shape(1);
    let np = current.len();
    if pos < np {
        let h = pos % hh;
        let t = (pos / hh) % steps;
        let b = pos / (hh * steps);
        let mut acc = F::new(0.0);
        if t < time {
            let row = (b * time + t) * d;
            for j in 0..d {
                acc += images[row + j] * w_in[j * hh + h];
            }
        }
        current[pos] = s_in[h] * (acc + b_in[h]) + s_rec[h] * b_rec[h] + offset[h];
    } else if pos < np + hh * hh {
        let q = pos - np;
        let i = q / hh;
        let h = q % hh;
        w_eff[q] = w_rec[q] * k[i] * s_rec[h];
    }
}

/// One cube: logits z = (k ⊙ r_T) W_out + b_out of each digit (a unit per digit), its
/// cross-entropy and whether its argmax is the label; writes ∂(mean loss)/∂z = (softmax − onehot)
/// / B into `dlogits` `[B, C]` and [mean loss, count] into `score`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn readout_kernel<F: Float, I: Numeric>(
    rates: &Tensor<F>,
    k: &Tensor<F>,
    w_out: &Tensor<F>,
    b_out: &Tensor<F>,
    labels: &Tensor<I>,
    dlogits: &mut Tensor<F>,
    score: &mut Tensor<F>,
    #[comptime] units: usize,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let u = UNIT_POS_X as usize;
    let batch = labels.len();
    let steps = rates.shape(1);
    let hh = rates.shape(2);
    let classes = b_out.len();
    let inv = F::new(1.0) / F::cast_from(batch as u32);
    let mut loss = F::new(0.0);
    let mut right = F::new(0.0);
    let mut b = u;
    while b < batch {
        let base = (b * steps + steps - 1) * hh;
        let row = b * classes;
        for c in 0..classes {
            let mut z = b_out[c];
            for h in 0..hh {
                z += (rates[base + h] * k[h]) * w_out[h * classes + c];
            }
            dlogits[row + c] = z;
        }
        let mut top = dlogits[row];
        let mut arg = 0usize;
        for c in 1..classes {
            let z = dlogits[row + c];
            if z > top {
                top = z;
                arg = c;
            }
        }
        let mut sum = F::new(0.0);
        for c in 0..classes {
            sum += (dlogits[row + c] - top).exp();
        }
        let label = u32::cast_from(labels[b]) as usize;
        loss += top + sum.ln() - dlogits[row + label];
        if arg == label {
            right += F::new(1.0);
        }
        for c in 0..classes {
            let mut g = (dlogits[row + c] - top).exp() / sum;
            if c == label {
                g = g - F::new(1.0);
            }
            dlogits[row + c] = g * inv;
        }
        b += units;
    }
    let loss = cube_sum::<F>(loss, units);
    let right = cube_sum::<F>(right, units);
    if u == 0 {
        score[0] = loss * inv;
        score[1] = right;
    }
}

/// From g = ∂L/∂(mean loss) (`grad_score[0]`): ∂L/∂r `[B, T + 1, H]` (non-zero at the readout
/// step only), ∂L/∂W_out `[H, C]` and ∂L/∂b_out `[C]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn readout_backward_kernel<F: Float>(
    grad_score: &Tensor<F>,
    dlogits: &Tensor<F>,
    rates: &Tensor<F>,
    k: &Tensor<F>,
    w_out: &Tensor<F>,
    grad_rates: &mut Tensor<F>,
    d_w_out: &mut Tensor<F>,
    d_b_out: &mut Tensor<F>,
    #[define(F)] _dtype: ElemType,
) {
    let pos = ABSOLUTE_POS;
    let g = grad_score[0];
    let batch = dlogits.shape(0);
    let classes = dlogits.shape(1);
    let steps = rates.shape(1);
    let hh = rates.shape(2);
    let nr = grad_rates.len();
    let nw = hh * classes;
    if pos < nr {
        let h = pos % hh;
        let t = (pos / hh) % steps;
        let b = pos / (hh * steps);
        let mut acc = F::new(0.0);
        if t == steps - 1 {
            for c in 0..classes {
                acc += dlogits[b * classes + c] * w_out[h * classes + c];
            }
        }
        grad_rates[pos] = acc * k[h] * g;
    } else if pos < nr + nw {
        let q = pos - nr;
        let h = q / classes;
        let c = q % classes;
        let mut acc = F::new(0.0);
        for b in 0..batch {
            acc += (rates[(b * steps + steps - 1) * hh + h] * k[h]) * dlogits[b * classes + c];
        }
        d_w_out[q] = acc * g;
    } else if pos < nr + nw + classes {
        let c = pos - nr - nw;
        let mut acc = F::new(0.0);
        for b in 0..batch {
            acc += dlogits[b * classes + c];
        }
        d_b_out[c] = acc * g;
    }
}

/// Units that share one output of [`drive_backward_kernel`], each summing every
/// `LANES`-th sequence of the batch.
const LANES: usize = 8;
/// Outputs per cube of [`drive_backward_kernel`].
const OUTPUTS_PER_CUBE: usize = UNITS as usize / LANES;

/// From ∂L/∂P `[B, T + 1, H]` and the rates: ∂L/∂W_in `[D, H]`, ∂L/∂b_in, ∂L/∂b_rec `[H]` and
/// ∂L/∂W_rec `[H, H]` (through W_eff: Σ_b Σ_t r_{t−1}[i] ∂L/∂P_t[h] k_i s_rec,h). Each output
/// is a sum over the batch's B (T + 1) bins: [`LANES`] units share it (unit `lane ·
/// OUTPUTS_PER_CUBE + o` of a cube sums the sequences b ≡ lane of output o, consecutive units
/// reading consecutive h), then add their sums in shared memory.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn drive_backward_kernel<F: Float>(
    images: &Tensor<F>,
    d_current: &Tensor<F>,
    rates: &Tensor<F>,
    s_in: &Tensor<F>,
    s_rec: &Tensor<F>,
    k: &Tensor<F>,
    d_w_in: &mut Tensor<F>,
    d_b_in: &mut Tensor<F>,
    d_w_rec: &mut Tensor<F>,
    d_b_rec: &mut Tensor<F>,
    #[comptime] lanes: usize,
    #[comptime] outputs: usize,
    #[define(F)] _dtype: ElemType,
) {
    let u = UNIT_POS_X as usize;
    let lane = u / outputs;
    let o = u % outputs;
    let pos = CUBE_POS_X as usize * outputs + o;
    let hh = s_in.len();
    let batch = images.shape(0);
    let time = images.shape(1);
    let d = images.shape(2);
    let steps = d_current.shape(1);
    let n_in = d * hh;
    let mut acc = F::new(0.0);
    if pos < n_in {
        let j = pos / hh;
        let h = pos % hh;
        let mut b = lane;
        while b < batch {
            for t in 0..time {
                acc += images[(b * time + t) * d + j] * d_current[(b * steps + t) * hh + h];
            }
            b += lanes;
        }
    } else if pos < n_in + hh {
        let h = pos - n_in;
        let mut b = lane;
        while b < batch {
            for t in 0..steps {
                acc += d_current[(b * steps + t) * hh + h];
            }
            b += lanes;
        }
    } else if pos < n_in + hh + hh * hh {
        let q = pos - n_in - hh;
        let i = q / hh;
        let h = q % hh;
        let mut b = lane;
        while b < batch {
            for t in 1..steps {
                acc += rates[(b * steps + t - 1) * hh + i] * d_current[(b * steps + t) * hh + h];
            }
            b += lanes;
        }
    }
    let mut shared = Shared::<[F]>::new_slice(lanes * outputs);
    shared[u] = acc;
    sync_cube();
    if lane == 0 {
        let mut sum = F::new(0.0);
        for l in 0..lanes {
            sum += shared[l * outputs + o];
        }
        if pos < n_in {
            d_w_in[pos] = sum * s_in[pos % hh];
        } else if pos < n_in + hh {
            let h = pos - n_in;
            d_b_in[h] = sum * s_in[h];
            d_b_rec[h] = sum * s_rec[h];
        } else if pos < n_in + hh + hh * hh {
            let q = pos - n_in - hh;
            d_w_rec[q] = sum * k[q / hh] * s_rec[q % hh];
        }
    }
}

/// The batch with every tensor contiguous (a no-op for tensors that already are).
pub(crate) fn contiguous(x: NetworkBatch<Cube>) -> NetworkBatch<Cube> {
    let c = into_contiguous;
    NetworkBatch {
        images: c(x.images),
        labels: c(x.labels),
        input_weight: c(x.input_weight),
        input_bias: c(x.input_bias),
        recurrent_weight: c(x.recurrent_weight),
        recurrent_bias: c(x.recurrent_bias),
        output_weight: c(x.output_weight),
        output_bias: c(x.output_bias),
        input_scale: c(x.input_scale),
        recurrent_scale: c(x.recurrent_scale),
        input_offset: c(x.input_offset),
        rate_scale: c(x.rate_scale),
        alpha: c(x.alpha),
        beta: c(x.beta),
        decay: c(x.decay),
        coeffs: c(x.coeffs),
        threshold: c(x.threshold),
        max_current: c(x.max_current),
        max_rate: c(x.max_rate),
        beta_scale: x.beta_scale,
    }
}

/// Cubes for `n` units, one unit each.
fn cubes(like: &CubeTensor, n: usize) -> CubeCount {
    elementwise_cubes(like, n, UNITS)
}

/// Whether every kernel fits the device: the scan's cube per sequence, and one row of at most
/// 65,535 cubes for the drive's backward kernel (OUTPUTS_PER_CUBE outputs per cube; the
/// element-wise kernels spread theirs over the count's dimensions).
pub(crate) fn fits(x: &NetworkBatch<Cube>) -> bool {
    let batch = x.images.shape().dims::<3>()[0];
    let [pixels, hidden] = x.input_weight.shape().dims::<2>();
    let drive_outputs = pixels * hidden + hidden + hidden * hidden;
    batch > 0
        && fits_device(&x.images, batch, hidden, true)
        && (drive_outputs as u64 * LANES as u64).div_ceil(UNITS as u64) <= 65_535
}

fn dtype(t: &CubeTensor) -> ElemType {
    burn::backend::cubecl::dtype_to_storage_type(t.dtype)
}

/// The forward pass: `[mean loss, count]` and what the backward pass needs.
pub(crate) fn forward(x: &NetworkBatch<Cube>) -> (FloatTensor<Cube>, Saved) {
    let [batch, time, _] = x.images.shape().dims::<3>();
    let hidden = x.input_weight.shape().dims::<2>()[1];
    let classes = x.output_bias.shape().num_elements();
    let like = &x.images;
    let client = &like.client;
    let current = empty(like, Shape::new([batch, time + 1, hidden]));
    let w_eff = empty(like, Shape::new([hidden, hidden]));
    drive_kernel::launch(
        client,
        cubes(like, current.shape().num_elements() + hidden * hidden),
        CubeDim::new_1d(UNITS),
        x.images.clone().into_tensor_arg(),
        x.input_weight.clone().into_tensor_arg(),
        x.input_bias.clone().into_tensor_arg(),
        x.recurrent_weight.clone().into_tensor_arg(),
        x.recurrent_bias.clone().into_tensor_arg(),
        x.input_scale.clone().into_tensor_arg(),
        x.recurrent_scale.clone().into_tensor_arg(),
        x.input_offset.clone().into_tensor_arg(),
        x.rate_scale.clone().into_tensor_arg(),
        current.clone().into_tensor_arg(),
        w_eff.clone().into_tensor_arg(),
        dtype(like),
    );
    let scan = KernelInputs {
        current,
        weight: Some(w_eff),
        decay: x.decay.clone(),
        params: pack_rows(
            [&x.alpha, &x.beta, &x.coeffs],
            [&x.threshold, &x.max_current, &x.max_rate],
            x.beta_scale as f32,
        ),
        // every sequence is whole: the kernels read no lengths
        lengths: None,
        beta_scale: x.beta_scale as f32,
        tail: true,
    };
    let trace = forward_kernel(&scan);
    let dlogits = empty(like, Shape::new([batch, classes]));
    let score = empty(like, Shape::new([2]));
    readout_kernel::launch(
        client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(UNITS),
        trace[0].clone().into_tensor_arg(),
        x.rate_scale.clone().into_tensor_arg(),
        x.output_weight.clone().into_tensor_arg(),
        x.output_bias.clone().into_tensor_arg(),
        x.labels.clone().into_tensor_arg(),
        dlogits.clone().into_tensor_arg(),
        score.clone().into_tensor_arg(),
        UNITS as usize,
        [dtype(like), dtype(&x.labels)],
    );
    (
        score,
        Saved {
            scan,
            trace,
            dlogits,
        },
    )
}

/// The backward pass from ∂L/∂[mean loss, count] (the count's part is ignored): gradients of
/// W_in, b_in, W_rec, b_rec, W_out, b_out, α, β, c and b, in that order.
pub(crate) fn backward(
    x: &NetworkBatch<Cube>,
    saved: &Saved,
    grad_score: FloatTensor<Cube>,
) -> [FloatTensor<Cube>; 10] {
    let grad_score = into_contiguous(grad_score);
    let like = &x.images;
    let client = &like.client;
    let rates = &saved.trace[0];
    let [pixels, hidden] = x.input_weight.shape().dims::<2>();
    let classes = x.output_bias.shape().num_elements();
    let grad_rates = empty(like, rates.shape());
    let d_w_out = empty(like, Shape::new([hidden, classes]));
    let d_b_out = empty(like, Shape::new([classes]));
    readout_backward_kernel::launch(
        client,
        cubes(
            like,
            rates.shape().num_elements() + hidden * classes + classes,
        ),
        CubeDim::new_1d(UNITS),
        grad_score.into_tensor_arg(),
        saved.dlogits.clone().into_tensor_arg(),
        rates.clone().into_tensor_arg(),
        x.rate_scale.clone().into_tensor_arg(),
        x.output_weight.clone().into_tensor_arg(),
        grad_rates.clone().into_tensor_arg(),
        d_w_out.clone().into_tensor_arg(),
        d_b_out.clone().into_tensor_arg(),
        dtype(like),
    );
    let (d_current, [d_alpha, d_beta, d_coeffs, d_threshold]) =
        backward_kernel(&saved.scan, &saved.trace, grad_rates);
    let d_w_in = empty(like, Shape::new([pixels, hidden]));
    let d_b_in = empty(like, Shape::new([hidden]));
    let d_w_rec = empty(like, Shape::new([hidden, hidden]));
    let d_b_rec = empty(like, Shape::new([hidden]));
    let outputs = pixels * hidden + hidden + hidden * hidden;
    drive_backward_kernel::launch(
        client,
        CubeCount::Static(outputs.div_ceil(OUTPUTS_PER_CUBE) as u32, 1, 1),
        CubeDim::new_1d(UNITS),
        x.images.clone().into_tensor_arg(),
        d_current.into_tensor_arg(),
        rates.clone().into_tensor_arg(),
        x.input_scale.clone().into_tensor_arg(),
        x.recurrent_scale.clone().into_tensor_arg(),
        x.rate_scale.clone().into_tensor_arg(),
        d_w_in.clone().into_tensor_arg(),
        d_b_in.clone().into_tensor_arg(),
        d_w_rec.clone().into_tensor_arg(),
        d_b_rec.clone().into_tensor_arg(),
        LANES,
        OUTPUTS_PER_CUBE,
        dtype(like),
    );
    [
        d_w_in,
        d_b_in,
        d_w_rec,
        d_b_rec,
        d_w_out,
        d_b_out,
        d_alpha,
        d_beta,
        d_coeffs,
        d_threshold,
    ]
}
