//! The scan as CubeCL kernels (wgpu backend). One unit per (sequence, neuron) runs the whole
//! time loop; with a recurrent weight the N neurons of a sequence share one cube and exchange
//! r_{t−1} (forward) or J_{t+1} (backward) through shared memory at every bin.

// CubeCL kernels index tensors with `x[i] = x[i] + …` (no compound assignment on indices)
#![allow(clippy::assign_op_pattern)]

use burn::backend::Cube;
use burn::backend::ops::{FloatTensorOps, IntTensorOps};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Shape, TensorMetadata};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::op::{Recurrence, ScanGrads, ScanInputs, ScanKernels};

/// Units per cube when neurons are independent.
const UNITS: u32 = 128;

/// The sum of `value` over the cube's `units` units (a tree in shared memory), on every unit.
#[cube]
pub(crate) fn cube_sum<F: Float>(value: F, #[comptime] units: usize) -> F {
    let u = UNIT_POS_X as usize;
    let mut shared = Shared::<[F]>::new_slice(units);
    shared[u] = value;
    sync_cube();
    let mut stride = (CUBE_DIM_X / 2) as usize;
    while stride > 0 {
        if u < stride {
            shared[u] = shared[u] + shared[u + stride];
        }
        sync_cube();
        stride = stride / 2;
    }
    shared[0]
}

/// tanh z, with z clamped to ±15 first: tanh is ±1 in f32 beyond, and the clamp keeps
/// exp-based tanh finite on every driver.
#[cube]
pub(crate) fn clamped_tanh<F: Float>(z: F) -> F {
    let mut z = z;
    if z > F::new(15.0) {
        z = F::new(15.0);
    }
    if z < F::new(-15.0) {
        z = F::new(-15.0);
    }
    z.tanh()
}

/// tanh(Σ_k c_k² v^k) and v = (u − b)/σ for neuron j; its rate is γ max(0, tanh).
/// `params` rows: [α (n), β (n), c (K), b, σ, γ].
#[cube]
fn activation<F: Float>(
    u: F,
    j: usize,
    params: &Tensor<F>,
    #[comptime] nf: usize,
    #[comptime] kk: usize,
) -> (F, F) {
    let row = j * params.shape(1);
    let v = (u - params[row + 2 * nf + kk]) / params[row + 2 * nf + kk + 1];
    let mut z = F::new(0.0);
    let mut pw = F::new(1.0);
    #[unroll]
    for k in 0..kk {
        let c = params[row + 2 * nf + k];
        z += c * c * pw;
        pw *= v;
    }
    (clamped_tanh::<F>(z), v)
}

/// The forward pass: one unit per (sequence, neuron) runs the time loop, its n filter values
/// in registers (`nf` = n and `kk` = K are compiled in).
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn scan_forward_kernel<F: Float>(
    current: &Tensor<F>,
    recurrent: &Tensor<F>,
    params: &Tensor<F>,
    decay: &Tensor<F>,
    lengths: &Tensor<F>,
    rates: &mut Tensor<F>,
    act_in: &mut Tensor<F>,
    total: &mut Tensor<F>,
    slope: &mut Tensor<F>,
    #[comptime] shared_len: usize,
    #[comptime] coupled: bool,
    #[comptime] tail: bool,
    #[comptime] full: bool,
    #[comptime] nf: usize,
    #[comptime] kk: usize,
    #[define(F)] _dtype: ElemType,
) {
    let b = CUBE_POS_Y as usize;
    let j = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let time = current.shape(1);
    let nn = current.shape(2);
    let row = j * params.shape(1);
    let active = j < nn;
    let mut shared_r = Shared::<[F]>::new_slice(shared_len);
    if coupled {
        if active {
            shared_r[j] = F::new(0.0);
        }
        sync_cube();
    }
    let mut h = Array::<F>::new(nf);
    #[unroll]
    for i in 0..nf {
        h[i] = F::new(0.0);
    }
    let mut len = 0usize;
    if active {
        if full {
            len = time;
        } else {
            len = u32::cast_from(lengths[b * nn + j]) as usize;
        }
    }
    let mut r_own = F::new(0.0);
    // (coupled units step together to the end; a unit alone may stop at its length)
    let mut end = time;
    if !coupled && !tail {
        end = len;
    }
    for t in 0..end {
        if active && t >= len {
            let at = (b * time + t) * nn + j;
            rates[at] = F::new(0.0);
            act_in[at] = F::new(0.0);
            total[at] = F::new(0.0);
            slope[at] = F::new(0.0);
            r_own = F::new(0.0);
        }
        if active && t < len {
            let at = (b * time + t) * nn + j;
            let mut i_t = current[at];
            if coupled {
                for k in 0..nn {
                    i_t += shared_r[k] * recurrent[k * nn + j];
                }
            }
            let mut sum = F::new(0.0);
            #[unroll]
            for i in 0..nf {
                let v = decay[i] * h[i] + params[row + i] * i_t + params[row + nf + i] * r_own;
                h[i] = v;
                sum += v;
            }
            let u = sum / F::cast_from(nf as u32);
            let (th, _v) = activation::<F>(u, j, params, nf, kk);
            let gamma = params[row + 2 * nf + kk + 2];
            let mut r = F::new(0.0);
            let mut d = F::new(0.0);
            if th > F::new(0.0) {
                r = gamma * th;
                d = gamma * (F::new(1.0) - th * th);
            }
            slope[at] = d;
            rates[at] = r;
            act_in[at] = u;
            total[at] = i_t;
            r_own = r;
        }
        if coupled {
            sync_cube();
            if active {
                shared_r[j] = r_own;
            }
            sync_cube();
        }
    }
}

/// The backward pass (backpropagation through time), one unit per (sequence, neuron) as
/// forward: the adjoint of its filters and its parameter gradients in registers, written to
/// `d_params` once at the end.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn scan_backward_kernel<F: Float>(
    recurrent: &Tensor<F>,
    params: &Tensor<F>,
    decay: &Tensor<F>,
    rates: &Tensor<F>,
    act_in: &Tensor<F>,
    total: &Tensor<F>,
    slope: &Tensor<F>,
    grad_rates: &Tensor<F>,
    lengths: &Tensor<F>,
    d_current: &mut Tensor<F>,
    d_params: &mut Tensor<F>,
    #[comptime] shared_len: usize,
    #[comptime] coupled: bool,
    #[comptime] tail: bool,
    #[comptime] full: bool,
    #[comptime] nf: usize,
    #[comptime] kk: usize,
    #[define(F)] _dtype: ElemType,
) {
    let b = CUBE_POS_Y as usize;
    let j = (CUBE_POS_X * CUBE_DIM_X + UNIT_POS_X) as usize;
    let time = rates.shape(1);
    let nn = rates.shape(2);
    let row = j * params.shape(1);
    // per-sequence gradient rows: [dα (n), dβ (n), dc (K), db]
    let gw = 2 * nf + kk + 1;
    let g = (b * nn + j) * gw;
    let active = j < nn;
    let mut shared_j = Shared::<[F]>::new_slice(shared_len);
    if coupled {
        if active {
            shared_j[j] = F::new(0.0);
        }
        sync_cube();
    }
    let mut adj = Array::<F>::new(nf);
    #[unroll]
    for i in 0..nf {
        adj[i] = F::new(0.0);
    }
    let mut dp = Array::<F>::new(2 * nf + kk + 1);
    #[unroll]
    for k in 0..2 * nf + kk + 1 {
        dp[k] = F::new(0.0);
    }
    let mut len = 0usize;
    if active {
        if full {
            len = time;
        } else {
            len = u32::cast_from(lengths[b * nn + j]) as usize;
        }
    }
    // (a unit alone may start at its last valid bin)
    let mut first = 0usize;
    if !coupled && !tail && len < time {
        first = time - len;
    }
    for step in first..time {
        let t = time - 1 - step;
        let mut jj = F::new(0.0);
        if active && t >= len {
            d_current[(b * time + t) * nn + j] = F::new(0.0);
        }
        if active && t < len {
            let at = (b * time + t) * nn + j;
            // R_t = ∂L/∂r_t + Σ_i β_i a_{t+1}[i] + Σ_m W[j, m] J_{t+1}[m]
            let mut r = grad_rates[at];
            #[unroll]
            for i in 0..nf {
                r += params[row + nf + i] * adj[i];
            }
            if coupled {
                for m in 0..nn {
                    r += recurrent[j * nn + m] * shared_j[m];
                }
            }
            let v = (act_in[at] - params[row + 2 * nf + kk]) / params[row + 2 * nf + kk + 1];
            let dr_dz = slope[at];
            let mut e = F::new(0.0);
            if dr_dz != F::new(0.0) {
                let mut dz_dv = F::new(0.0);
                let mut pw = F::new(1.0);
                #[unroll]
                for k in 0..kk {
                    let ck = params[row + 2 * nf + k];
                    dp[2 * nf + k] = dp[2 * nf + k] + r * dr_dz * F::new(2.0) * ck * pw;
                    if comptime!(k + 1 < kk) {
                        let c1 = params[row + 2 * nf + k + 1];
                        dz_dv += F::cast_from((k + 1) as u32) * c1 * c1 * pw;
                    }
                    pw *= v;
                }
                e = r * dr_dz * dz_dv / params[row + 2 * nf + kk + 1];
                dp[2 * nf + kk] = dp[2 * nf + kk] - e;
            }
            let i_t = total[at];
            let mut r_prev = F::new(0.0);
            if t > 0 {
                r_prev = rates[at - nn];
            }
            let share = e / F::cast_from(nf as u32);
            #[unroll]
            for i in 0..nf {
                let av = decay[i] * adj[i] + share;
                adj[i] = av;
                dp[i] = dp[i] + av * i_t;
                dp[nf + i] = dp[nf + i] + av * r_prev;
                jj += params[row + i] * av;
            }
            d_current[at] = jj;
        }
        if coupled {
            sync_cube();
            if active {
                shared_j[j] = jj;
            }
            sync_cube();
        }
    }
    if active {
        #[unroll]
        for k in 0..2 * nf + kk + 1 {
            d_params[g + k] = dp[k];
        }
    }
}

/// Launch geometry: (cube dim, cube count, shared length, coupled).
fn geometry(coupled: bool, batch: usize, neurons: usize) -> (CubeDim, CubeCount, usize, bool) {
    if coupled {
        (
            CubeDim::new_1d(neurons as u32),
            CubeCount::Static(1, batch as u32, 1),
            neurons,
            true,
        )
    } else {
        let units = (neurons as u32).clamp(1, UNITS);
        (
            CubeDim::new_1d(units),
            CubeCount::Static((neurons as u32).div_ceil(units), batch as u32, 1),
            1,
            false,
        )
    }
}

/// Cubes of `units` for `n` elements, one unit each, spread over the count's dimensions where
/// one row of cubes would be over the device's limit (65,535 cubes on many GPUs); the kernels
/// index by `ABSOLUTE_POS`, which runs over every dimension, and skip positions past `n`.
pub(crate) fn elementwise_cubes(like: &CubeTensor, n: usize, units: u32) -> CubeCount {
    cubecl::calculate_cube_count_elemwise(&like.client, n, CubeDim::new_1d(units))
}

/// Whether the kernels can run `batch` sequences of `neurons` on `like`'s device: with a
/// recurrent weight (`coupled`) one cube must hold every neuron of a sequence, and the batch
/// is the cube count's second dimension. Otherwise the host implementation runs.
pub(crate) fn fits_device(like: &CubeTensor, batch: usize, neurons: usize, coupled: bool) -> bool {
    let hw = &like.client.properties().hardware;
    let units = hw.max_cube_dim.0.min(hw.max_units_per_cube);
    batch as u64 <= hw.max_cube_count.1 as u64
        && (!coupled || neurons as u64 <= units as u64)
        && (neurons as u32).div_ceil(UNITS) <= hw.max_cube_count.0
}

fn fits(x: &ScanInputs<Cube>) -> bool {
    let [batch, _, neurons] = x.current.shape().dims::<3>();
    fits_device(&x.current, batch, neurons, x.weight().is_some())
}

fn contiguous(x: &ScanInputs<Cube>) -> ScanInputs<Cube> {
    let c = |t: &CubeTensor| into_contiguous(t.clone());
    ScanInputs {
        current: c(&x.current),
        alpha: c(&x.alpha),
        beta: c(&x.beta),
        decay: c(&x.decay),
        coeffs: c(&x.coeffs),
        threshold: c(&x.threshold),
        max_current: c(&x.max_current),
        max_rate: c(&x.max_rate),
        recurrent: match x.weight() {
            Some(w) => Recurrence::Dense(c(w)),
            None => Recurrence::None,
        },
        lengths: into_contiguous(x.lengths.clone()),
        precision: x.precision,
    }
}

/// An uninitialised tensor of `shape` on `like`'s device, in its type.
pub(crate) fn empty(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// What the kernels read, contiguous: P `[B, T, N]`, W `[N, N]` (if any), 1 − λ `[n]`, the
/// packed neuron rows `[N, 2n + K + 3]` (see `pack`) and the valid bins as floats `[B, N]`.
/// A caller that runs the forward and the backward pass (the network's fused step) builds it
/// once for both.
#[derive(Clone, Debug)]
pub(crate) struct KernelInputs {
    pub current: CubeTensor,
    pub weight: Option<CubeTensor>,
    pub decay: CubeTensor,
    pub params: CubeTensor,
    /// Valid bins of each sequence as floats `[B, N]`; None: every sequence is whole (the
    /// kernels then read none).
    pub lengths: Option<CubeTensor>,
    /// The factor the packed β carries (packed by [`pack_rows`] or [`pack_selected`]): the
    /// kernels' β is β · `beta_scale`, and the β gradients they return are with respect to β
    /// (1 for a β already effective).
    pub beta_scale: f32,
    /// Whether the kernels write zeros past each sequence's length (rates, u, I, ∂r/∂z
    /// forward, ∂L/∂P backward). A caller that reads only the valid bins (the fit's fused
    /// loss) leaves them unwritten: without a recurrent weight each unit then stops at its
    /// sequence's end.
    pub tail: bool,
}

impl KernelInputs {
    fn of(x: &ScanInputs<Cube>) -> Self {
        Self {
            current: x.current.clone(),
            weight: x.weight().cloned(),
            decay: x.decay.clone(),
            params: pack(x),
            lengths: Some(lengths(x)),
            beta_scale: 1.0,
            tail: true,
        }
    }
}

/// The forward kernel: rates, u, I and ∂r/∂z, each `[B, T, N]`.
pub(crate) fn forward_kernel(k: &KernelInputs) -> [CubeTensor; 4] {
    let [batch, time, neurons] = k.current.shape().dims::<3>();
    let nf = k.decay.shape().dims::<1>()[0];
    let shape = k.current.shape();
    let out = [(); 4].map(|_| empty(&k.current, shape.clone()));
    if batch * time * neurons == 0 {
        return out;
    }
    let kk = k.params.shape().dims::<2>()[1] - 2 * nf - 3;
    let (dim, count, shared, coupled) = geometry(k.weight.is_some(), batch, neurons);
    let w = k.weight.clone().unwrap_or_else(|| k.decay.clone());
    let dtype = burn::backend::cubecl::dtype_to_storage_type(k.current.dtype);
    scan_forward_kernel::launch(
        &k.current.client,
        count,
        dim,
        k.current.clone().into_tensor_arg(),
        w.into_tensor_arg(),
        k.params.clone().into_tensor_arg(),
        k.decay.clone().into_tensor_arg(),
        k.lengths
            .clone()
            .unwrap_or_else(|| k.decay.clone())
            .into_tensor_arg(),
        out[0].clone().into_tensor_arg(),
        out[1].clone().into_tensor_arg(),
        out[2].clone().into_tensor_arg(),
        out[3].clone().into_tensor_arg(),
        shared,
        coupled,
        k.tail,
        k.lengths.is_none(),
        nf,
        kk,
        dtype,
    );
    out
}

/// The shapes of α `[N, n]`, β `[N, n]`, c `[N, K]` and b `[N]` for packed rows `params`.
fn param_shapes(params: &CubeTensor, decay: &CubeTensor, neurons: usize) -> [Shape; 4] {
    let nf = decay.shape().dims::<1>()[0];
    let kk = params.shape().dims::<2>()[1] - 3 - 2 * nf;
    [
        Shape::new([neurons, nf]),
        Shape::new([neurons, nf]),
        Shape::new([neurons, kk]),
        Shape::new([neurons]),
    ]
}

/// The backward kernel and the batch sum: ∂L/∂P `[B, T, N]` and ∂L/∂(α `[N, n]`, β `[N, n]`,
/// c `[N, K]`, b `[N]`) from ∂L/∂rates (contiguous) and what [`forward_kernel`] returned.
pub(crate) fn backward_kernel(
    k: &KernelInputs,
    saved: &[CubeTensor; 4],
    grad_rates: CubeTensor,
) -> (CubeTensor, [CubeTensor; 4]) {
    let [batch, time, neurons] = k.current.shape().dims::<3>();
    let like = &k.current;
    let shapes = param_shapes(&k.params, &k.decay, neurons);
    if batch * time * neurons == 0 {
        // nothing ran: every gradient is zero
        let zeros = |s: Shape| Cube::float_zeros(s, &like.device, like.dtype.into());
        return (zeros(k.current.shape()), shapes.map(zeros));
    }
    let (d_current, d_params) = sequence_grads(k, saved, grad_rates);
    let width = d_params.shape().dims::<3>()[2];
    let grads = shapes.map(|s| empty(like, s));
    let dtype = burn::backend::cubecl::dtype_to_storage_type(like.dtype);
    // per-sequence partial sums → sums over the batch, split by parameter (one kernel)
    let n = (neurons * width) as u32;
    unpack_grads_kernel::launch(
        &like.client,
        elementwise_cubes(like, n as usize, UNITS),
        CubeDim::new_1d(UNITS),
        d_params.into_tensor_arg(),
        grads[0].clone().into_tensor_arg(),
        grads[1].clone().into_tensor_arg(),
        grads[2].clone().into_tensor_arg(),
        grads[3].clone().into_tensor_arg(),
        InputScalar::new(k.beta_scale, dtype),
        dtype,
    );
    (d_current, grads)
}

/// The backward kernel alone: ∂L/∂P `[B, T, N]` and each sequence's parameter gradients
/// `[B, N, 2n + K + 1]` (rows [dα (n), dβ (n), dc (K), db]), for a batch with rows.
pub(crate) fn sequence_grads(
    k: &KernelInputs,
    saved: &[CubeTensor; 4],
    grad_rates: CubeTensor,
) -> (CubeTensor, CubeTensor) {
    let [batch, _, neurons] = k.current.shape().dims::<3>();
    let nf = k.decay.shape().dims::<1>()[0];
    let width = k.params.shape().dims::<2>()[1] - 2;
    let like = &k.current;
    let d_current = empty(like, k.current.shape());
    let d_params = empty(like, Shape::new([batch, neurons, width]));

    let (dim, count, shared, coupled) = geometry(k.weight.is_some(), batch, neurons);
    let w = k.weight.clone().unwrap_or_else(|| k.decay.clone());
    let dtype = burn::backend::cubecl::dtype_to_storage_type(like.dtype);
    scan_backward_kernel::launch(
        &like.client,
        count,
        dim,
        w.into_tensor_arg(),
        k.params.clone().into_tensor_arg(),
        k.decay.clone().into_tensor_arg(),
        saved[0].clone().into_tensor_arg(),
        saved[1].clone().into_tensor_arg(),
        saved[2].clone().into_tensor_arg(),
        saved[3].clone().into_tensor_arg(),
        grad_rates.into_tensor_arg(),
        k.lengths
            .clone()
            .unwrap_or_else(|| k.decay.clone())
            .into_tensor_arg(),
        d_current.clone().into_tensor_arg(),
        d_params.clone().into_tensor_arg(),
        shared,
        coupled,
        k.tail,
        k.lengths.is_none(),
        nf,
        width - 2 * nf - 1,
        dtype,
    );
    (d_current, d_params)
}

/// Per-sequence parameter gradients `[1, S, 2n + K + 1]` of a batch whose neuron j ran the
/// sequences `spans[j, 0] .. spans[j, 1]` (`[N, 2]`; an empty span: none) summed by neuron:
/// ∂L/∂(α `[N, n]`, β `[N, n]`, c `[N, K]`, b `[N]`) (0 for a neuron without sequences).
/// `k`: what the scan ran on.
pub(crate) fn grads_by_row(
    d_params: CubeTensor,
    spans: &CubeTensor,
    k: &KernelInputs,
) -> [CubeTensor; 4] {
    let (params, decay) = (&k.params, &k.decay);
    let like = &d_params;
    let neurons = spans.shape().dims::<2>()[0];
    let width = d_params.shape().dims::<3>()[2];
    let grads = param_shapes(params, decay, neurons).map(|s| empty(like, s));
    let n = (neurons * width) as u32;
    if n == 0 {
        return grads;
    }
    let dtypes = [
        burn::backend::cubecl::dtype_to_storage_type(like.dtype),
        burn::backend::cubecl::dtype_to_storage_type(spans.dtype),
    ];
    unpack_rows_kernel::launch(
        &like.client,
        elementwise_cubes(like, n as usize, UNITS),
        CubeDim::new_1d(UNITS),
        d_params.clone().into_tensor_arg(),
        spans.clone().into_tensor_arg(),
        grads[0].clone().into_tensor_arg(),
        grads[1].clone().into_tensor_arg(),
        grads[2].clone().into_tensor_arg(),
        grads[3].clone().into_tensor_arg(),
        InputScalar::new(k.beta_scale, dtypes[0]),
        dtypes,
    );
    grads
}

/// [`unpack_grads_kernel`] for sequences of different neurons: entry (j, c) sums the
/// sequences of neuron j's span.
#[cube(launch)]
fn unpack_rows_kernel<F: Float, I: Numeric>(
    d_params: &Tensor<F>,
    spans: &Tensor<I>,
    alpha: &mut Tensor<F>,
    beta: &mut Tensor<F>,
    coeffs: &mut Tensor<F>,
    threshold: &mut Tensor<F>,
    beta_scale: InputScalar,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let i = ABSOLUTE_POS;
    let width = d_params.shape(2);
    let neurons = threshold.len();
    if i < neurons * width {
        let j = i / width;
        let c = i % width;
        let first = u32::cast_from(spans[2 * j]) as usize;
        let end = u32::cast_from(spans[2 * j + 1]) as usize;
        let mut sum = F::new(0.0);
        for s in first..end {
            sum += d_params[s * width + c];
        }
        store_grad::<F>(
            alpha,
            beta,
            coeffs,
            threshold,
            j,
            c,
            sum,
            beta_scale.get::<F>(),
        );
    }
}

impl ScanKernels for Cube {
    fn scan_forward(x: &ScanInputs<Self>) -> [FloatTensor<Self>; 4] {
        if !fits(x) {
            return super::op::host_forward(x);
        }
        forward_kernel(&KernelInputs::of(&contiguous(x)))
    }

    fn scan_backward(
        x: &ScanInputs<Self>,
        saved: &[FloatTensor<Self>; 4],
        grad_rates: FloatTensor<Self>,
    ) -> ScanGrads<Self> {
        if !fits(x) {
            return super::op::host_backward(x, saved, grad_rates);
        }
        let k = KernelInputs::of(&contiguous(x));
        let saved = saved.clone().map(into_contiguous);
        let (current, [alpha, beta, coeffs, threshold]) =
            backward_kernel(&k, &saved, into_contiguous(grad_rates));
        ScanGrads {
            current,
            alpha,
            beta,
            coeffs,
            threshold,
            recurrent: None,
        }
    }
}

/// Valid bins per sequence as floats `[B, N]` (exact below 2²⁴).
fn lengths(x: &ScanInputs<Cube>) -> CubeTensor {
    into_contiguous(Cube::int_into_float(
        x.lengths.clone(),
        x.current.dtype.into(),
    ))
}

/// One row per neuron: [α (n), β (n), c (K), b, σ, γ] — one binding instead of six, packed
/// by one kernel (the inputs are contiguous: see `contiguous`).
fn pack(x: &ScanInputs<Cube>) -> CubeTensor {
    pack_rows(
        [&x.alpha, &x.beta, &x.coeffs],
        [&x.threshold, &x.max_current, &x.max_rate],
        1.0,
    )
}

/// Entry `c` of neuron `j`'s packed row [α (n), β · `beta_scale` (n), c (K), b, σ, γ].
#[cube]
#[allow(clippy::too_many_arguments)]
fn packed_entry<F: Float>(
    alpha: &Tensor<F>,
    beta: &Tensor<F>,
    coeffs: &Tensor<F>,
    threshold: &Tensor<F>,
    max_current: &Tensor<F>,
    max_rate: &Tensor<F>,
    j: usize,
    c: usize,
    beta_scale: F,
) -> F {
    let nf = alpha.shape(1);
    let kk = coeffs.shape(1);
    let mut v = max_rate[j];
    if c < nf {
        v = alpha[j * nf + c];
    } else if c < 2 * nf {
        v = beta[j * nf + c - nf] * beta_scale;
    } else if c < 2 * nf + kk {
        v = coeffs[j * kk + c - 2 * nf];
    } else if c == 2 * nf + kk {
        v = threshold[j];
    } else if c == 2 * nf + kk + 1 {
        v = max_current[j];
    }
    v
}

/// Stores `sum`, entry `c` of neuron `j`'s gradient row [dα (n), dβ (n), dc (K), db], in its
/// parameter's gradient (dβ times `beta_scale`: the gradient of the β the rows were packed
/// from).
#[cube]
#[allow(clippy::too_many_arguments)]
fn store_grad<F: Float>(
    alpha: &mut Tensor<F>,
    beta: &mut Tensor<F>,
    coeffs: &mut Tensor<F>,
    threshold: &mut Tensor<F>,
    j: usize,
    c: usize,
    sum: F,
    beta_scale: F,
) {
    let nf = alpha.shape(1);
    let kk = coeffs.shape(1);
    if c < nf {
        alpha[j * nf + c] = sum;
    } else if c < 2 * nf {
        beta[j * nf + c - nf] = sum * beta_scale;
    } else if c < 2 * nf + kk {
        coeffs[j * kk + c - 2 * nf] = sum;
    } else {
        threshold[j] = sum;
    }
}

/// The packed rows `[S, 2n + K + 3]` of the neurons `rows` `[S]` (an index each) from α, β
/// `[N, n]`, c `[N, K]` and b, σ, γ `[N]`, all contiguous.
pub(crate) fn pack_selected(
    [alpha, beta, coeffs]: [&CubeTensor; 3],
    [threshold, max_current, max_rate]: [&CubeTensor; 3],
    rows: &CubeTensor,
    beta_scale: f32,
) -> CubeTensor {
    let nf = alpha.shape().dims::<2>()[1];
    let kk = coeffs.shape().dims::<2>()[1];
    let out = empty(
        alpha,
        Shape::new([rows.shape().num_elements(), 2 * nf + kk + 3]),
    );
    let n = out.shape().num_elements() as u32;
    if n == 0 {
        return out;
    }
    let dtypes = [
        burn::backend::cubecl::dtype_to_storage_type(alpha.dtype),
        burn::backend::cubecl::dtype_to_storage_type(rows.dtype),
    ];
    pack_selected_kernel::launch(
        &alpha.client,
        elementwise_cubes(alpha, n as usize, UNITS),
        CubeDim::new_1d(UNITS),
        alpha.clone().into_tensor_arg(),
        beta.clone().into_tensor_arg(),
        coeffs.clone().into_tensor_arg(),
        threshold.clone().into_tensor_arg(),
        max_current.clone().into_tensor_arg(),
        max_rate.clone().into_tensor_arg(),
        rows.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        InputScalar::new(beta_scale, dtypes[0]),
        dtypes,
    );
    out
}

/// [`pack_kernel`] through an index: row s of `out` is neuron `rows[s]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn pack_selected_kernel<F: Float, I: Numeric>(
    alpha: &Tensor<F>,
    beta: &Tensor<F>,
    coeffs: &Tensor<F>,
    threshold: &Tensor<F>,
    max_current: &Tensor<F>,
    max_rate: &Tensor<F>,
    rows: &Tensor<I>,
    out: &mut Tensor<F>,
    beta_scale: InputScalar,
    #[define(F, I)] _dtypes: [ElemType; 2],
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let width = out.shape(1);
        let j = u32::cast_from(rows[i / width]) as usize;
        out[i] = packed_entry::<F>(
            alpha,
            beta,
            coeffs,
            threshold,
            max_current,
            max_rate,
            j,
            i % width,
            beta_scale.get::<F>(),
        );
    }
}

/// The packed rows `[N, 2n + K + 3]` from α, β `[N, n]`, c `[N, K]` and b, σ, γ `[N]`, all
/// contiguous.
pub(crate) fn pack_rows(
    [alpha, beta, coeffs]: [&CubeTensor; 3],
    [threshold, max_current, max_rate]: [&CubeTensor; 3],
    beta_scale: f32,
) -> CubeTensor {
    let [neurons, nf] = alpha.shape().dims::<2>();
    let kk = coeffs.shape().dims::<2>()[1];
    let out = empty(alpha, Shape::new([neurons, 2 * nf + kk + 3]));
    let n = out.shape().num_elements() as u32;
    if n == 0 {
        return out;
    }
    let dtype = burn::backend::cubecl::dtype_to_storage_type(alpha.dtype);
    pack_kernel::launch(
        &alpha.client,
        elementwise_cubes(alpha, n as usize, UNITS),
        CubeDim::new_1d(UNITS),
        alpha.clone().into_tensor_arg(),
        beta.clone().into_tensor_arg(),
        coeffs.clone().into_tensor_arg(),
        threshold.clone().into_tensor_arg(),
        max_current.clone().into_tensor_arg(),
        max_rate.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        InputScalar::new(beta_scale, dtype),
        dtype,
    );
    out
}

/// The scan's parameter gradients `[B, N, 2n + K + 1]` (per sequence) summed over the batch
/// and split into α `[N, n]`, β `[N, n]`, c `[N, K]` and b `[N]`.
#[cube(launch)]
fn unpack_grads_kernel<F: Float>(
    d_params: &Tensor<F>,
    alpha: &mut Tensor<F>,
    beta: &mut Tensor<F>,
    coeffs: &mut Tensor<F>,
    threshold: &mut Tensor<F>,
    beta_scale: InputScalar,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    let batch = d_params.shape(0);
    let row = d_params.shape(1) * d_params.shape(2);
    if i < row {
        let width = d_params.shape(2);
        let j = i / width;
        let c = i % width;
        let mut sum = F::new(0.0);
        for b in 0..batch {
            sum += d_params[b * row + i];
        }
        store_grad::<F>(
            alpha,
            beta,
            coeffs,
            threshold,
            j,
            c,
            sum,
            beta_scale.get::<F>(),
        );
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn pack_kernel<F: Float>(
    alpha: &Tensor<F>,
    beta: &Tensor<F>,
    coeffs: &Tensor<F>,
    threshold: &Tensor<F>,
    max_current: &Tensor<F>,
    max_rate: &Tensor<F>,
    out: &mut Tensor<F>,
    beta_scale: InputScalar,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let width = out.shape(1);
        out[i] = packed_entry::<F>(
            alpha,
            beta,
            coeffs,
            threshold,
            max_current,
            max_rate,
            i / width,
            i % width,
            beta_scale.get::<F>(),
        );
    }
}
