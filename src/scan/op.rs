//! The scan as a Burn backend extension: one operation, `gfr_scan`, with a CPU implementation
//! (ndarray: [`super::cpu`]), a CubeCL kernel (wgpu: [`super::cube`]) and a handwritten backward
//! pass registered with Burn's autodiff, so that modules calling it stay ordinary Burn modules.
#![allow(deprecated)] // burn-ndarray is gfr's CPU backend

use std::borrow::Cow;

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{
    Autodiff, Backend, DType, ExtensionType, NdArray, Shape, Slice, TensorData, TensorMetadata,
    backend_extension,
};

use super::cpu::{self, Real};

/// The float type of the host scan (the ndarray backend): `F64` keeps the fitter's numbers
/// exactly as they are; `F32` (the network) works on Burn's f32 tensors without converting
/// them. The wgpu kernels ignore it (they run in the tensors' own type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// `f64`: the default (the fitter).
    #[default]
    F64,
    /// `f32`: the network.
    F32,
}

/// The recurrent input weight W `[N, N]` (I_t = P_t + r_{t−1} W), or none.
#[derive(ExtensionType, Clone, Debug)]
pub enum Recurrence<B: Backend> {
    /// No recurrent input: I_t = P_t.
    None,
    /// A dense W, `[N, N]` (presynaptic row, postsynaptic column).
    Dense(FloatTensor<B>),
}

/// Inputs of a scan over B sequences of T bins through N neurons with n filters and K
/// polynomial coefficients. On a concrete backend it is also what the backward pass keeps.
#[derive(ExtensionType, Clone, Debug)]
pub struct ScanInputs<B: Backend> {
    /// P: input current (pA), `[B, T, N]`.
    pub current: FloatTensor<B>,
    /// α, `[N, n]`.
    pub alpha: FloatTensor<B>,
    /// Effective rate-history weights (h += β r), `[N, n]`.
    pub beta: FloatTensor<B>,
    /// 1 − λ, `[n]`; constant.
    pub decay: FloatTensor<B>,
    /// c, `[N, K]`.
    pub coeffs: FloatTensor<B>,
    /// b (pA), `[N]`.
    pub threshold: FloatTensor<B>,
    /// σ (pA) and γ (ms⁻¹), `[N]`; constants.
    pub max_current: FloatTensor<B>,
    /// γ (ms⁻¹), `[N]`; constant.
    pub max_rate: FloatTensor<B>,
    /// The recurrent weight W, if any.
    #[extension_type]
    pub recurrent: Recurrence<B>,
    /// Valid bins of each sequence, `[B, N]`: later bins keep rate 0 and get no gradient.
    pub lengths: IntTensor<B>,
    /// The float type of the host scan.
    pub precision: Precision,
}

/// The fused GFR scan: firing rates (ms⁻¹) `[B, T, N]` from rest.
#[backend_extension(NdArray, Cube, Autodiff)]
pub trait GfrScanBackend: Backend {
    /// Runs the scan: firing rates (ms⁻¹), `[B, T, N]`.
    fn gfr_scan(#[extension_type] inputs: ScanInputs<Self>) -> FloatTensor<Self>;
}

/// The primitive forward and backward passes of a backend.
pub trait ScanKernels: Backend {
    /// Rates, activation inputs u, total currents I and slopes ∂r/∂z, each `[B, T, N]`.
    fn scan_forward(inputs: &ScanInputs<Self>) -> [FloatTensor<Self>; 4];
    /// Gradients from ∂L/∂rates; `saved` is what [`ScanKernels::scan_forward`] returned.
    fn scan_backward(
        inputs: &ScanInputs<Self>,
        saved: &[FloatTensor<Self>; 4],
        grad_rates: FloatTensor<Self>,
    ) -> ScanGrads<Self>;
}

impl<B: Backend> ScanInputs<B> {
    /// W, when there is one.
    pub fn weight(&self) -> Option<&FloatTensor<B>> {
        match &self.recurrent {
            Recurrence::Dense(w) => Some(w),
            Recurrence::None => None,
        }
    }
}

/// Gradients of the trainable inputs (∂L/∂W from the kernel, or formed from ∂L/∂P by the
/// autodiff step: see `recurrent`).
pub struct ScanGrads<B: Backend> {
    /// ∂L/∂P, `[B, T, N]`.
    pub current: FloatTensor<B>,
    pub alpha: FloatTensor<B>,
    pub beta: FloatTensor<B>,
    pub coeffs: FloatTensor<B>,
    pub threshold: FloatTensor<B>,
    /// ∂L/∂W `[N, N]` when the kernel computed it (the host scan does, from its own buffers);
    /// `None`: the autodiff step computes it with a matmul.
    pub recurrent: Option<FloatTensor<B>>,
}

/// A float type the host scan runs in and Burn can hold.
pub trait HostReal: Real + burn::tensor::Element {
    /// `x` as this type without a copy, when this type is f32.
    fn borrow_f32(x: &[f32]) -> Option<&[Self]>;
    /// `v` as f32 values, without a pass over them when they already are.
    fn into_f32(v: Vec<Self>) -> Vec<f32>;
}
impl HostReal for f64 {
    fn borrow_f32(_: &[f32]) -> Option<&[Self]> {
        None
    }
    fn into_f32(v: Vec<Self>) -> Vec<f32> {
        v.into_iter().map(|x| x as f32).collect()
    }
}
impl HostReal for f32 {
    fn borrow_f32(x: &[f32]) -> Option<&[Self]> {
        Some(x)
    }
    fn into_f32(v: Vec<Self>) -> Vec<f32> {
        v
    }
}

/// Host copies of tensors, for the host implementation.
pub trait HostData: Backend {
    fn to_host<T: HostReal>(t: &FloatTensor<Self>) -> Vec<T>;
    /// Valid bins per sequence (negative: 0).
    fn lengths_to_host(t: &IntTensor<Self>) -> Vec<usize> {
        read_lengths::<Self>(t)
    }
    /// The tensor's values in place where the backend holds them on the host in `T` (the
    /// f32 network scan on ndarray), else a copy.
    fn host_slice<T: HostReal>(t: &FloatTensor<Self>) -> Cow<'_, [T]> {
        Cow::Owned(Self::to_host(t))
    }
}

impl HostData for NdArray {
    /// Reads the array in place (its `into_data` goes element by element: a tenth of a network
    /// epoch once).
    fn lengths_to_host(t: &IntTensor<Self>) -> Vec<usize> {
        use burn_ndarray::NdArrayTensor;
        match t {
            NdArrayTensor::I64(s) => s.view().iter().map(|&l| l.max(0) as usize).collect(),
            NdArrayTensor::I32(s) => s.view().iter().map(|&l| l.max(0) as usize).collect(),
            _ => read_lengths::<Self>(t),
        }
    }

    fn host_slice<T: HostReal>(t: &FloatTensor<Self>) -> Cow<'_, [T]> {
        if let burn_ndarray::NdArrayTensor::F32(s) = t
            && let Some(x) = s.view().to_slice().and_then(T::borrow_f32)
        {
            return Cow::Borrowed(x);
        }
        Cow::Owned(Self::to_host(t))
    }

    /// Reads the array in place (ndarray's `into_data` copies element by element when the
    /// array is shared, as the autodiff graph's tensors are).
    fn to_host<T: HostReal>(t: &FloatTensor<Self>) -> Vec<T> {
        use burn_ndarray::NdArrayTensor;
        match t {
            NdArrayTensor::F32(s) => {
                let v = s.view();
                match v.as_slice() {
                    Some(x) => x.iter().map(|&x| T::from_f32(x)).collect(),
                    None => v.iter().map(|&x| T::from_f32(x)).collect(),
                }
            }
            NdArrayTensor::F64(s) => s.view().iter().map(|&x| T::from_f64(x)).collect(),
            _ => read_generic::<Self, T>(t),
        }
    }
}

impl HostData for burn::backend::Cube {
    fn to_host<T: HostReal>(t: &FloatTensor<Self>) -> Vec<T> {
        read_generic::<Self, T>(t)
    }
}

fn read_lengths<B: Backend>(t: &IntTensor<B>) -> Vec<usize> {
    burn_std::future::block_on(B::int_into_data(t.clone()))
        .expect("scan: reading the lengths")
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("scan: integer lengths")
        .into_iter()
        .map(|l| l.max(0) as usize)
        .collect()
}

fn read_generic<B: Backend, T: HostReal>(t: &FloatTensor<B>) -> Vec<T> {
    burn_std::future::block_on(B::float_into_data(t.clone()))
        .expect("scan: reading a tensor")
        .convert::<T>()
        .try_into_vec::<T>()
        .expect("scan: float data")
}

fn write<B: Backend, T: HostReal>(
    v: Vec<T>,
    shape: Shape,
    like: &FloatTensor<B>,
) -> FloatTensor<B> {
    let data = match like.dtype() {
        DType::F32 => TensorData::new(T::into_f32(v), shape),
        dtype => TensorData::new(v, shape).convert_dtype(dtype),
    };
    B::float_from_data(data, &like.device())
}

/// Host copies of a scan's inputs (P in place where the backend allows).
struct HostParts<'a, T: Clone> {
    current: Cow<'a, [T]>,
    alpha: Vec<T>,
    beta: Vec<T>,
    decay: Vec<T>,
    coeffs: Vec<T>,
    threshold: Vec<T>,
    max_current: Vec<T>,
    max_rate: Vec<T>,
    recurrent: Option<Vec<T>>,
    lengths: Vec<usize>,
    dims: cpu::Dims,
}

impl<'a, T: HostReal> HostParts<'a, T> {
    /// The backward pass needs the shapes of P but not its values (`with_current` false).
    fn read<B: HostData>(x: &'a ScanInputs<B>, with_current: bool) -> Self {
        let [batch, time, neurons] = x.current.shape().dims::<3>();
        Self {
            current: if with_current {
                B::host_slice(&x.current)
            } else {
                Cow::Borrowed(&[])
            },
            alpha: B::to_host(&x.alpha),
            beta: B::to_host(&x.beta),
            decay: B::to_host(&x.decay),
            coeffs: B::to_host(&x.coeffs),
            threshold: B::to_host(&x.threshold),
            max_current: B::to_host(&x.max_current),
            max_rate: B::to_host(&x.max_rate),
            recurrent: x.weight().map(B::to_host),
            lengths: B::lengths_to_host(&x.lengths),
            dims: cpu::Dims {
                batch,
                time,
                neurons,
            },
        }
    }

    fn neurons(&self) -> cpu::HostNeurons<'_, T> {
        cpu::HostNeurons {
            alpha: &self.alpha,
            beta: &self.beta,
            decay: &self.decay,
            coeffs: &self.coeffs,
            threshold: &self.threshold,
            max_current: &self.max_current,
            max_rate: &self.max_rate,
        }
    }
}

/// The host implementation, for backends without a kernel of their own, in the inputs'
/// [`Precision`].
pub(super) fn host_forward<B: HostData>(x: &ScanInputs<B>) -> [FloatTensor<B>; 4] {
    match x.precision {
        Precision::F64 => host_forward_in::<B, f64>(x),
        Precision::F32 => host_forward_in::<B, f32>(x),
    }
}

pub(super) fn host_backward<B: HostData>(
    x: &ScanInputs<B>,
    saved: &[FloatTensor<B>; 4],
    grad_rates: FloatTensor<B>,
) -> ScanGrads<B> {
    match x.precision {
        Precision::F64 => host_backward_in::<B, f64>(x, saved, grad_rates),
        Precision::F32 => host_backward_in::<B, f32>(x, saved, grad_rates),
    }
}

fn host_forward_in<B: HostData, T: HostReal>(x: &ScanInputs<B>) -> [FloatTensor<B>; 4] {
    let h = HostParts::<T>::read(x, true);
    let trace = cpu::forward(
        &h.neurons(),
        &h.current,
        h.dims,
        &h.lengths,
        h.recurrent.as_deref(),
    );
    let shape = x.current.shape();
    [trace.rates, trace.act_in, trace.total, trace.slope]
        .map(|v| write::<B, _>(v, shape.clone(), &x.current))
}

fn host_backward_in<B: HostData, T: HostReal>(
    x: &ScanInputs<B>,
    saved: &[FloatTensor<B>; 4],
    grad_rates: FloatTensor<B>,
) -> ScanGrads<B> {
    let h = HostParts::<T>::read(x, false);
    let [rates, act_in, total, slope] = saved.each_ref().map(|t| B::host_slice::<T>(t));
    let trace = cpu::TraceView {
        rates: &rates,
        act_in: &act_in,
        total: &total,
        slope: &slope,
    };
    let g = cpu::backward_view(
        &h.neurons(),
        h.dims,
        &h.lengths,
        h.recurrent.as_deref(),
        trace,
        &B::host_slice::<T>(&grad_rates),
    );
    let recurrent = x.weight().map(|w| {
        let dw = cpu::recurrent_weight_grad(h.dims, &rates, &g.current);
        write::<B, _>(dw, w.shape(), w)
    });
    ScanGrads {
        current: write::<B, _>(g.current, x.current.shape(), &x.current),
        alpha: write::<B, _>(g.alpha, x.alpha.shape(), &x.alpha),
        beta: write::<B, _>(g.beta, x.beta.shape(), &x.beta),
        coeffs: write::<B, _>(g.coeffs, x.coeffs.shape(), &x.coeffs),
        threshold: write::<B, _>(g.threshold, x.threshold.shape(), &x.threshold),
        recurrent,
    }
}

impl ScanKernels for NdArray {
    fn scan_forward(inputs: &ScanInputs<Self>) -> [FloatTensor<Self>; 4] {
        host_forward(inputs)
    }
    fn scan_backward(
        inputs: &ScanInputs<Self>,
        saved: &[FloatTensor<Self>; 4],
        grad_rates: FloatTensor<Self>,
    ) -> ScanGrads<Self> {
        host_backward(inputs, saved, grad_rates)
    }
}

impl GfrScanBackend for NdArray {
    fn gfr_scan(inputs: ScanInputs<Self>) -> FloatTensor<Self> {
        let [rates, ..] = Self::scan_forward(&inputs);
        rates
    }
}

impl GfrScanBackend for burn::backend::Cube {
    fn gfr_scan(inputs: ScanInputs<Self>) -> FloatTensor<Self> {
        let [rates, ..] = Self::scan_forward(&inputs);
        rates
    }
}

/// The backward step: parents are P, α, β, c, b and W (P again when there is no W).
#[derive(Debug)]
struct ScanBackward;

impl<B: Backend + ScanKernels> Backward<B, 6> for ScanBackward {
    type State = (ScanInputs<B>, [FloatTensor<B>; 4]);

    fn backward(self, ops: Ops<Self::State, 6>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [
            p_current,
            p_alpha,
            p_beta,
            p_coeffs,
            p_threshold,
            p_recurrent,
        ] = ops.parents;
        let grad_rates = grads.consume::<B>(&ops.node);
        let (inputs, saved) = ops.state;
        let g = B::scan_backward(&inputs, &saved, grad_rates);
        if let (Some(node), Some(dw)) = (&p_recurrent, g.recurrent) {
            grads.register::<B>(node.id, dw);
        } else if let (Some(node), Some(w)) = (p_recurrent, inputs.weight()) {
            // ∂L/∂W = Σ_b Σ_t r_{t−1}ᵀ J_t: one product per sequence, then the sum over the
            // batch (a GPU matmul over the whole B·T inner length runs on few cores)
            let [batch, time, neurons] = saved[0].shape().dims::<3>();
            if time > 1 {
                let prev = B::float_slice(
                    saved[0].clone(),
                    &[
                        Slice::from(0..batch),
                        Slice::from(0..time - 1),
                        Slice::from(0..neurons),
                    ],
                );
                let next = B::float_slice(
                    g.current.clone(),
                    &[
                        Slice::from(0..batch),
                        Slice::from(1..time),
                        Slice::from(0..neurons),
                    ],
                );
                let per_sequence = B::float_matmul(B::float_swap_dims(prev, 1, 2), next);
                let dw = B::float_reshape(
                    B::float_sum_dim(per_sequence, 0),
                    Shape::new([neurons, neurons]),
                );
                grads.register::<B>(node.id, dw);
            } else {
                // a single bin: r_{−1} = 0, so W gets no gradient
                grads.register::<B>(node.id, B::float_mul_scalar(w.clone(), 0.0.into()));
            }
        }
        for (node, grad) in [
            (p_current, g.current),
            (p_alpha, g.alpha),
            (p_beta, g.beta),
            (p_coeffs, g.coeffs),
            (p_threshold, g.threshold),
        ] {
            if let Some(node) = node {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

impl<B: Backend + ScanKernels, C: CheckpointStrategy> GfrScanBackend for Autodiff<B, C> {
    fn gfr_scan(inputs: ScanInputs<Self>) -> FloatTensor<Self> {
        let w_node = match &inputs.recurrent {
            Recurrence::Dense(w) => w.node(),
            Recurrence::None => inputs.current.node(),
        };
        let prep = ScanBackward
            .prepare::<C>([
                inputs.current.node(),
                inputs.alpha.node(),
                inputs.beta.node(),
                inputs.coeffs.node(),
                inputs.threshold.node(),
                w_node,
            ])
            .compute_bound()
            .stateful();
        let inputs = ScanInputs::<B> {
            current: inputs.current.into_primitive(),
            alpha: inputs.alpha.into_primitive(),
            beta: inputs.beta.into_primitive(),
            decay: inputs.decay.into_primitive(),
            coeffs: inputs.coeffs.into_primitive(),
            threshold: inputs.threshold.into_primitive(),
            max_current: inputs.max_current.into_primitive(),
            max_rate: inputs.max_rate.into_primitive(),
            recurrent: match inputs.recurrent {
                Recurrence::None => Recurrence::None,
                Recurrence::Dense(w) => Recurrence::Dense(w.into_primitive()),
            },
            lengths: inputs.lengths,
            precision: inputs.precision,
        };
        let saved = B::scan_forward(&inputs);
        let rates = saved[0].clone();
        match prep {
            OpsKind::Tracked(prep) => prep.finish((inputs, saved), rates),
            OpsKind::UnTracked(prep) => prep.finish(rates),
        }
    }
}
