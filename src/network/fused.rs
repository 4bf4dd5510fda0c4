//! A GFR network's training step on a GPU as one Burn operation: the drive, the scan, the
//! readout and the cross-entropy forward, and their gradients, in eight kernels (`cube`)
//! where Burn's operations launch about eighty. The CPU keeps Burn's operations (and its
//! numbers, bit for bit); tests compare the two within f32 rounding.
//!
//! The operation returns a batch's `[mean loss, correct count]`; the count carries no gradient,
//! so a backward pass from the pair is the loss's.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Cube, ExtensionType, backend_extension};
use burn::tensor::{Int, Tensor};

use super::cube::{self as kernels, Saved};
use super::model::GfrNetwork;

/// One mini-batch and the network's parameters, as the fused step reads them: B digits of T
/// rows of D pixels, H neurons, C classes, one zero-input readout step after the rows.
#[derive(ExtensionType, Clone, Debug)]
pub struct NetworkBatch<B: Backend> {
    /// Pixel rows x, `[B, T, D]`; constant.
    pub images: FloatTensor<B>,
    /// Digits, `[B]`.
    pub labels: IntTensor<B>,
    /// W_in, `[D, H]`.
    pub input_weight: FloatTensor<B>,
    /// b_in, `[H]`.
    pub input_bias: FloatTensor<B>,
    /// W_rec, `[H, H]`.
    pub recurrent_weight: FloatTensor<B>,
    /// b_rec, `[H]`.
    pub recurrent_bias: FloatTensor<B>,
    /// W_out, `[H, C]`.
    pub output_weight: FloatTensor<B>,
    /// b_out, `[C]`.
    pub output_bias: FloatTensor<B>,
    /// s_in, `[H]`; constant.
    pub input_scale: FloatTensor<B>,
    /// s_rec, `[H]`; constant.
    pub recurrent_scale: FloatTensor<B>,
    /// o (pA), `[H]`; constant.
    pub input_offset: FloatTensor<B>,
    /// k, `[H]`; constant.
    pub rate_scale: FloatTensor<B>,
    /// α, `[H, n]`.
    pub alpha: FloatTensor<B>,
    /// Rate-history weights, `[H, n]`, as `beta_scale` makes them effective.
    pub beta: FloatTensor<B>,
    /// 1 − λ, `[n]`; constant.
    pub decay: FloatTensor<B>,
    /// c, `[H, K]`.
    pub coeffs: FloatTensor<B>,
    /// b (pA), `[H]`.
    pub threshold: FloatTensor<B>,
    /// σ (pA), `[H]`; constant.
    pub max_current: FloatTensor<B>,
    /// γ (ms⁻¹), `[H]`; constant.
    pub max_rate: FloatTensor<B>,
    /// The factor of `beta` (the layer's history scale, or 1 for weights already effective).
    pub beta_scale: f64,
}

/// The fused training step of a GFR network.
#[backend_extension(Cube, Autodiff)]
pub trait GfrNetworkBackend: Backend {
    /// `[mean cross-entropy, correct count]` of the batch's first readout, `[2]`; None where
    /// the kernels do not fit the device (then nothing ran).
    fn gfr_network_score(#[extension_type] batch: NetworkBatch<Self>) -> Option<FloatTensor<Self>>;
}

impl GfrNetworkBackend for Cube {
    fn gfr_network_score(batch: NetworkBatch<Self>) -> Option<FloatTensor<Self>> {
        let batch = kernels::contiguous(batch);
        kernels::fits(&batch).then(|| kernels::forward(&batch).0)
    }
}

/// The backward step. Parents, in order: W_in, b_in, W_rec, b_rec, W_out, b_out, α, β, c, b.
#[derive(Debug)]
struct NetworkBackward;

impl Backward<Cube, 10> for NetworkBackward {
    type State = (NetworkBatch<Cube>, Saved);

    fn backward(self, ops: Ops<Self::State, 10>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_score = grads.consume::<Cube>(&ops.node);
        let (batch, saved) = ops.state;
        let all = kernels::backward(&batch, &saved, grad_score);
        for (node, grad) in ops.parents.into_iter().zip(all) {
            if let Some(node) = node {
                grads.register::<Cube>(node.id, grad);
            }
        }
    }
}

impl<C: CheckpointStrategy> GfrNetworkBackend for Autodiff<Cube, C> {
    fn gfr_network_score(batch: NetworkBatch<Self>) -> Option<FloatTensor<Self>> {
        let nodes = [
            batch.input_weight.node(),
            batch.input_bias.node(),
            batch.recurrent_weight.node(),
            batch.recurrent_bias.node(),
            batch.output_weight.node(),
            batch.output_bias.node(),
            batch.alpha.node(),
            batch.beta.node(),
            batch.coeffs.node(),
            batch.threshold.node(),
        ];
        let inner = kernels::contiguous(NetworkBatch::<Cube> {
            images: batch.images.into_primitive(),
            labels: batch.labels,
            input_weight: batch.input_weight.into_primitive(),
            input_bias: batch.input_bias.into_primitive(),
            recurrent_weight: batch.recurrent_weight.into_primitive(),
            recurrent_bias: batch.recurrent_bias.into_primitive(),
            output_weight: batch.output_weight.into_primitive(),
            output_bias: batch.output_bias.into_primitive(),
            input_scale: batch.input_scale.into_primitive(),
            recurrent_scale: batch.recurrent_scale.into_primitive(),
            input_offset: batch.input_offset.into_primitive(),
            rate_scale: batch.rate_scale.into_primitive(),
            alpha: batch.alpha.into_primitive(),
            beta: batch.beta.into_primitive(),
            decay: batch.decay.into_primitive(),
            coeffs: batch.coeffs.into_primitive(),
            threshold: batch.threshold.into_primitive(),
            max_current: batch.max_current.into_primitive(),
            max_rate: batch.max_rate.into_primitive(),
            beta_scale: batch.beta_scale,
        });
        if !kernels::fits(&inner) {
            return None;
        }
        let prep = NetworkBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful();
        let (score, saved) = kernels::forward(&inner);
        Some(match prep {
            OpsKind::Tracked(prep) => prep.finish((inner, saved), score),
            OpsKind::UnTracked(prep) => prep.finish(score),
        })
    }
}

/// `[mean cross-entropy, correct count]` `[2]` of `images` `[B, 28, 28]` with `labels` `[B]`
/// at the network's first readout step, by the fused step; None where it does not apply (the
/// CPU, a layer without biases, or kernels that do not fit the device): then Burn's
/// operations compute it.
pub(crate) fn score(
    net: &GfrNetwork,
    images: &Tensor<3>,
    labels: &Tensor<1, Int>,
) -> Option<Tensor<1>> {
    use burn::backend::Dispatch;
    if crate::device::is_cpu(&images.device()) {
        return None;
    }
    let bias = |l: &burn::nn::Linear| l.bias.as_ref().map(|b| b.val().into_dispatch());
    let (neurons, beta_scale) = net.neurons.scan_neurons_unscaled();
    let batch = NetworkBatch {
        images: images.clone().into_dispatch(),
        labels: labels.clone().into_dispatch(),
        input_weight: net.input.weight.val().into_dispatch(),
        input_bias: bias(&net.input)?,
        recurrent_weight: net.recurrent.weight.val().into_dispatch(),
        recurrent_bias: bias(&net.recurrent)?,
        output_weight: net.output.weight.val().into_dispatch(),
        output_bias: bias(&net.output)?,
        input_scale: net.input_scale.val().into_dispatch(),
        recurrent_scale: net.recurrent_scale.val().into_dispatch(),
        input_offset: net.input_offset.val().into_dispatch(),
        rate_scale: net.rate_scale.val().into_dispatch(),
        alpha: neurons.alpha.into_dispatch(),
        beta: neurons.beta.into_dispatch(),
        decay: neurons.decay.into_dispatch(),
        coeffs: neurons.coeffs.into_dispatch(),
        threshold: neurons.threshold.into_dispatch(),
        max_current: neurons.max_current.into_dispatch(),
        max_rate: neurons.max_rate.into_dispatch(),
        beta_scale,
    };
    <Dispatch as GfrNetworkBackend>::gfr_network_score(batch).map(Tensor::from_dispatch)
}
