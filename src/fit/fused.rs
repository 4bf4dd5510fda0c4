//! A filter-fit step's loss on a GPU as one Burn operation: the step's sweeps and their
//! neurons gathered from the upload, the scan, and the masked Poisson loss summed per sweep and
//! weighted, forward and backward in eight kernels (`cube`) where Burn's operations launched
//! about sixty per group. The CPU keeps Burn's operations (and its numbers, bit for bit); tests compare
//! the two within f32 rounding.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, Backend, Cube, ExtensionType, backend_extension};
use burn::tensor::{Int, Tensor};

use super::cube::{self as kernels, Saved};
use crate::neuron::GfrLayer;

/// One step's sweeps, as columns of a group's upload, and the layer's neurons, as the fused
/// loss reads them: S of the group's S_all sweeps, of T of its T_all bins, through N neurons
/// with n filters and K coefficients.
#[derive(ExtensionType, Clone, Debug)]
pub struct SweepLossInputs<B: Backend> {
    /// The group's injected current (pA), `[1, T_all, S_all]`; constant.
    pub current: FloatTensor<B>,
    /// The group's recorded rates (ms⁻¹), `[T_all, S_all]`; constant.
    pub target: FloatTensor<B>,
    /// 1 on a sweep's valid bins, 0 on padding, `[T_all, S_all]`; constant.
    pub mask: FloatTensor<B>,
    /// Loss weight of each sweep, `[1, S_all]`; constant.
    pub weight: FloatTensor<B>,
    /// The neuron (layer row) of each sweep, `[S_all]`.
    pub rows: IntTensor<B>,
    /// Valid bins of each sweep, `[1, S_all]`.
    pub lengths: IntTensor<B>,
    /// The step's sweeps: their columns in the group, `[S]`.
    pub columns: IntTensor<B>,
    /// Each neuron's step sweeps, as a span of the step's S: first and end, `[N, 2]` (0, 0:
    /// none). A neuron's sweeps are consecutive.
    pub row_spans: IntTensor<B>,
    /// The step's bins T: its longest sweep.
    pub time: usize,
    /// α, `[N, n]`.
    pub alpha: FloatTensor<B>,
    /// Rate-history weights, `[N, n]`, as `beta_scale` makes them effective.
    pub beta: FloatTensor<B>,
    /// 1 − λ, `[n]`; constant.
    pub decay: FloatTensor<B>,
    /// c, `[N, K]`.
    pub coeffs: FloatTensor<B>,
    /// b (pA), `[N]`.
    pub threshold: FloatTensor<B>,
    /// σ (pA), `[N]`; constant.
    pub max_current: FloatTensor<B>,
    /// γ (ms⁻¹), `[N]`; constant.
    pub max_rate: FloatTensor<B>,
    /// The factor of `beta` (the layer's history scale, or 1 for weights already effective).
    pub beta_scale: f64,
    /// Bin size Δt (ms).
    pub dt: f64,
    /// ε inside the logarithm.
    pub eps: f64,
}

/// The fused loss of a filter-fit step.
#[backend_extension(Cube, Autodiff)]
pub trait GfrSweepLossBackend: Backend {
    /// (Σ_s w_s L_s `[1]`, the sweep losses L_s `[1, S]`), L_s = Σ_t m (f Δt − y Δt ln(f Δt +
    /// ε)) over the rates f of sweep s; the sweep losses carry no gradient. None where the
    /// scan's kernels do not fit the device (then nothing ran).
    fn gfr_sweep_losses(
        #[extension_type] x: SweepLossInputs<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)>;
}

impl GfrSweepLossBackend for Cube {
    fn gfr_sweep_losses(
        x: SweepLossInputs<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let x = kernels::contiguous(x);
        kernels::fits(&x).then(|| {
            let (total, losses, _) = kernels::forward(&x);
            (total, losses)
        })
    }
}

/// The backward step. Parents, in order: α, β, c, b.
#[derive(Debug)]
struct SweepLossBackward;

impl Backward<Cube, 4> for SweepLossBackward {
    type State = (SweepLossInputs<Cube>, Saved);

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_total = grads.consume::<Cube>(&ops.node);
        let (x, saved) = ops.state;
        let all = kernels::backward(&x, &saved, grad_total);
        for (node, grad) in ops.parents.into_iter().zip(all) {
            if let Some(node) = node {
                grads.register::<Cube>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> GfrSweepLossBackend for Autodiff<Cube, C> {
    fn gfr_sweep_losses(
        x: SweepLossInputs<Self>,
    ) -> Option<(FloatTensor<Self>, FloatTensor<Self>)> {
        let nodes = [
            x.alpha.node(),
            x.beta.node(),
            x.coeffs.node(),
            x.threshold.node(),
        ];
        let inner = kernels::contiguous(SweepLossInputs::<Cube> {
            current: x.current.into_primitive(),
            target: x.target.into_primitive(),
            mask: x.mask.into_primitive(),
            weight: x.weight.into_primitive(),
            rows: x.rows,
            lengths: x.lengths,
            columns: x.columns,
            row_spans: x.row_spans,
            time: x.time,
            alpha: x.alpha.into_primitive(),
            beta: x.beta.into_primitive(),
            decay: x.decay.into_primitive(),
            coeffs: x.coeffs.into_primitive(),
            threshold: x.threshold.into_primitive(),
            max_current: x.max_current.into_primitive(),
            max_rate: x.max_rate.into_primitive(),
            beta_scale: x.beta_scale,
            dt: x.dt,
            eps: x.eps,
        });
        if !kernels::fits(&inner) {
            return None;
        }
        let prep = SweepLossBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let (total, losses, saved) = kernels::forward(&inner);
        let total = match prep {
            OpsKind::Tracked(prep) => prep.finish((inner, saved), total),
            OpsKind::UnTracked(prep) => prep.finish(total),
        };
        Some((total, Self::from_inner(losses)))
    }
}

/// A group's upload, in the shapes [`super::filters`] keeps it, and a step's columns of it.
pub(crate) struct StepSweeps<'a> {
    pub current: &'a Tensor<3>,
    pub target: &'a Tensor<2>,
    pub mask: &'a Tensor<2>,
    pub weight: &'a Tensor<2>,
    pub rows: &'a Tensor<1, Int>,
    pub lengths: &'a Tensor<2, Int>,
    /// The step's sweeps (columns of the group), `[S]`.
    pub columns: &'a Tensor<1, Int>,
    /// Each neuron's span of the step's sweeps, `[N, 2]`.
    pub row_spans: &'a Tensor<2, Int>,
    /// The step's bins.
    pub time: usize,
}

/// (sweep losses `[1, S]` without gradient, their weighted total `[1]`) through the `layer`'s
/// neurons by the fused kernels; None on the CPU and where they do not fit the device.
pub(crate) fn sweep_losses(
    layer: &GfrLayer,
    sweeps: &StepSweeps,
    dt: f64,
    eps: f64,
) -> Option<(Tensor<2>, Tensor<1>)> {
    use burn::backend::Dispatch;
    if crate::device::is_cpu(&sweeps.current.device()) {
        return None;
    }
    let (neurons, beta_scale) = layer.scan_neurons_unscaled();
    let x = SweepLossInputs {
        current: sweeps.current.clone().into_dispatch(),
        target: sweeps.target.clone().into_dispatch(),
        mask: sweeps.mask.clone().into_dispatch(),
        weight: sweeps.weight.clone().into_dispatch(),
        rows: sweeps.rows.clone().into_dispatch(),
        lengths: sweeps.lengths.clone().into_dispatch(),
        columns: sweeps.columns.clone().into_dispatch(),
        row_spans: sweeps.row_spans.clone().into_dispatch(),
        time: sweeps.time,
        alpha: neurons.alpha.clone().into_dispatch(),
        beta: neurons.beta.clone().into_dispatch(),
        decay: neurons.decay.clone().into_dispatch(),
        coeffs: neurons.coeffs.clone().into_dispatch(),
        threshold: neurons.threshold.clone().into_dispatch(),
        max_current: neurons.max_current.clone().into_dispatch(),
        max_rate: neurons.max_rate.clone().into_dispatch(),
        beta_scale,
        dt,
        eps,
    };
    let (total, losses) = <Dispatch as GfrSweepLossBackend>::gfr_sweep_losses(x)?;
    Some((Tensor::from_dispatch(losses), Tensor::from_dispatch(total)))
}

/// The activation fit's data and activations, as its fused loss reads them: P points of
/// `cols` activation rows (every restart of every cell), K coefficients.
#[derive(ExtensionType, Clone, Debug)]
pub struct ActivationLossInputs<B: Backend> {
    /// Step currents x (pA), `[P, cols]`; constant.
    pub current: FloatTensor<B>,
    /// Rates y (ms⁻¹), `[P, cols]`; constant.
    pub rate: FloatTensor<B>,
    /// 1 on a row's points, 0 on padding, `[P, cols]`; constant.
    pub mask: FloatTensor<B>,
    /// Bin size Δt of each row (ms), `[1, cols]`; constant.
    pub dt: FloatTensor<B>,
    /// c, `[cols, K]`.
    pub coeffs: FloatTensor<B>,
    /// b (pA), `[cols]`.
    pub threshold: FloatTensor<B>,
    /// σ (pA), `[cols]`; constant.
    pub max_current: FloatTensor<B>,
    /// γ (ms⁻¹), `[cols]`; constant.
    pub max_rate: FloatTensor<B>,
    /// ε inside the logarithm.
    pub eps: f64,
}

/// The fused loss of an activation-fit epoch.
#[backend_extension(Cube, Autodiff)]
pub trait GfrActivationLossBackend: Backend {
    /// Σ m (μ − y Δt ln(μ + ε)) over every point of every row, μ = g(x) Δt, `[1]`; None where
    /// the kernels do not fit the device (then nothing ran).
    fn gfr_activation_loss(
        #[extension_type] x: ActivationLossInputs<Self>,
    ) -> Option<FloatTensor<Self>>;
}

impl GfrActivationLossBackend for Cube {
    fn gfr_activation_loss(x: ActivationLossInputs<Self>) -> Option<FloatTensor<Self>> {
        let x = kernels::contiguous_activation(x);
        kernels::activation_fits(&x).then(|| kernels::activation_forward(&x))
    }
}

/// The backward step. Parents, in order: c, b.
#[derive(Debug)]
struct ActivationLossBackward;

impl Backward<Cube, 2> for ActivationLossBackward {
    type State = ActivationLossInputs<Cube>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_total = grads.consume::<Cube>(&ops.node);
        let all = kernels::activation_backward(&ops.state, grad_total);
        for (node, grad) in ops.parents.into_iter().zip(all) {
            if let Some(node) = node {
                grads.register::<Cube>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> GfrActivationLossBackend for Autodiff<Cube, C> {
    fn gfr_activation_loss(x: ActivationLossInputs<Self>) -> Option<FloatTensor<Self>> {
        let nodes = [x.coeffs.node(), x.threshold.node()];
        let inner = kernels::contiguous_activation(ActivationLossInputs::<Cube> {
            current: x.current.into_primitive(),
            rate: x.rate.into_primitive(),
            mask: x.mask.into_primitive(),
            dt: x.dt.into_primitive(),
            coeffs: x.coeffs.into_primitive(),
            threshold: x.threshold.into_primitive(),
            max_current: x.max_current.into_primitive(),
            max_rate: x.max_rate.into_primitive(),
            eps: x.eps,
        });
        if !kernels::activation_fits(&inner) {
            return None;
        }
        let prep = ActivationLossBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let total = kernels::activation_forward(&inner);
        Some(match prep {
            OpsKind::Tracked(prep) => prep.finish(inner, total),
            OpsKind::UnTracked(prep) => prep.finish(total),
        })
    }
}

/// The activation fit's loss `[1]` (see [`GfrActivationLossBackend`]) of `g` on the points
/// `current`, `rate`, `mask` `[P, cols]` with bin sizes `dt` `[1, cols]`, by the fused kernels;
/// None on the CPU and where they do not fit the device.
pub(crate) fn activation_loss(
    g: &crate::neuron::PolynomialActivation,
    [current, rate, mask]: [&Tensor<2>; 3],
    dt: &Tensor<2>,
    eps: f64,
) -> Option<Tensor<1>> {
    use burn::backend::Dispatch;
    if crate::device::is_cpu(&current.device()) {
        return None;
    }
    let x = ActivationLossInputs {
        current: current.clone().into_dispatch(),
        rate: rate.clone().into_dispatch(),
        mask: mask.clone().into_dispatch(),
        dt: dt.clone().into_dispatch(),
        coeffs: g.coeffs.val().into_dispatch(),
        threshold: g.threshold_pa().into_dispatch(),
        max_current: g.max_current.val().into_dispatch(),
        max_rate: g.max_rate.val().into_dispatch(),
        eps,
    };
    <Dispatch as GfrActivationLossBackend>::gfr_activation_loss(x).map(Tensor::from_dispatch)
}
