//! What the hidden layer of a GFR network does on real digits: per step, how many neurons fire,
//! how far their mean filter value sits from threshold, what current they receive, and how much
//! gradient reaches the input weights. `gfr network --diagnose` prints it before and after
//! training; it is how the biological network's input scaling was chosen (see the README).

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::model::GfrNetwork;
use super::train::{batch_tensors, logit_spread, slice_grads};
use crate::data::mnist::{Mnist, SIDE};

/// 10th, 50th and 90th percentiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    /// 10th percentile (0 when there are no finite values).
    pub p10: f64,
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    /// Median.
    pub p50: f64,
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    /// 90th percentile.
    pub p90: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Self {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Self {
            p10: q(0.1),
            p50: q(0.5),
            p90: q(0.9),
        }
    }
}

/// One step of the sequence, over every (digit, neuron).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepDiagnostics {
    /// 1..=28: image rows; 29: the first zero-input readout step.
    pub step: usize,
    /// Fraction of (digit, neuron) pairs with a non-zero rate.
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    pub active_fraction: f64,
    /// (mean filter value − b) / σ: where the activation's input sits relative to threshold.
    pub margin: Spread,
    /// Input current I_t / σ (recurrent term included).
    pub current: Spread,
    /// Rate / γ: the fraction of each cell's maximum rate.
    pub rate: Spread,
}

/// Diagnostics of a GFR network on the first `digits` digits of a data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Digits run through the network (at most the number asked for).
    pub digits: usize,
    /// One entry per step: the 28 image rows, then the readout step.
    pub steps: Vec<StepDiagnostics>,
    /// Neurons that fire at the readout step for at least one digit.
    pub neurons_active_at_readout: usize,
    /// Hidden GFR neurons in the network.
    pub neurons: usize,
    /// Largest difference between two digits' logits at the readout (0: every digit gets the
    /// same answer and no gradient reaches the input weights).
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    pub logit_spread: f64,
    /// L2 norm of the cross-entropy gradient reaching W_in, on one mini-batch of 64 digits.
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    pub input_gradient_norm: f64,
    /// The same for W_out.
    #[serde(deserialize_with = "super::experiment::f64_or_nan")]
    pub output_gradient_norm: f64,
}

impl Diagnostics {
    /// The readout step.
    pub fn readout(&self) -> &StepDiagnostics {
        self.steps.last().expect("at least one step")
    }

    /// A table for the terminal: every 4th row step and the readout.
    pub fn table(&self) -> String {
        let mut s = format!(
            "hidden layer on {} training digits: step, fraction of neurons firing, (mean filter − b)/σ p10/p50/p90, I/σ p10/p50/p90, rate/γ p90\n",
            self.digits
        );
        for d in &self.steps {
            if d.step % 4 != 0 && d.step <= SIDE {
                continue;
            }
            let name = if d.step > SIDE {
                "readout".to_string()
            } else {
                format!("row {:>2}", d.step)
            };
            s += &format!(
                "  {name:>7}  {:>5.1}%  {:>7.2} {:>7.2} {:>7.2}   {:>7.2} {:>7.2} {:>7.2}   {:.3}\n",
                100.0 * d.active_fraction,
                d.margin.p10,
                d.margin.p50,
                d.margin.p90,
                d.current.p10,
                d.current.p50,
                d.current.p90,
                d.rate.p90
            );
        }
        s += &format!(
            "  {} of {} neurons fire at the readout for some digit; logit spread {:.3e}; gradient norm at W_in {:.3e}, at W_out {:.3e}",
            self.neurons_active_at_readout,
            self.neurons,
            self.logit_spread,
            self.input_gradient_norm,
            self.output_gradient_norm
        );
        s
    }
}

fn host(t: Tensor<2>) -> Vec<f64> {
    crate::neuron::to_vec(t)
}

/// Steps the network's hidden layer (the plain-op reference path) over the first `digits`
/// digits of `data` and one readout step, and measures the gradient reaching W_in on 64 of
/// them. `device` is the training device (with or without autodiff).
pub fn diagnose(net: &GfrNetwork, data: &Mnist, digits: usize, device: &Device) -> Diagnostics {
    let idx: Vec<usize> = (0..data.len().min(digits.max(1))).collect();
    let plain = device.clone().without_autodiff();
    let model = net.valid();
    let (images, _) = batch_tensors(data, &idx, &plain);
    let [batch, time, _] = images.dims();
    let h = model.hidden();
    let (drive, w_rec) = model.drive(images, 1);
    let act = &model.neurons.activation;
    let row = |t: Tensor<1>| t.reshape([1, h]);
    let (b, sigma, gamma) = (
        row(act.threshold_pa()),
        row(act.max_current.val()),
        row(act.max_rate.val()),
    );
    let layer = model.neurons.prepare();
    let mut state = model.neurons.init_state(batch);
    let mut steps = Vec::new();
    let mut fired = vec![false; h];
    for t in 0..time + 1 {
        let p = drive
            .clone()
            .slice([0..batch, t..t + 1, 0..h])
            .reshape([batch, h]);
        let input = p + state.rate.clone().matmul(w_rec.clone());
        state = layer.step(state, input.clone());
        let mean = state.h.clone().mean_dim(2).reshape([batch, h]);
        let margin = host((mean - b.clone()) / sigma.clone());
        let rate = host(state.rate.clone() / gamma.clone());
        let active = rate.iter().filter(|&&r| r > 0.0).count();
        if t == time {
            for (i, r) in rate.iter().enumerate() {
                fired[i % h] |= *r > 0.0;
            }
        }
        steps.push(StepDiagnostics {
            step: t + 1,
            active_fraction: active as f64 / rate.len() as f64,
            margin: Spread::of(margin),
            current: Spread::of(host(input / sigma.clone())),
            rate: Spread::of(rate),
        });
    }
    let logit_spread = logit_spread(&model, data, batch, &plain);
    let grad_device = if device.is_autodiff() {
        device.clone()
    } else {
        device.clone().autodiff()
    };
    let net_ad = net.clone().fork(&grad_device);
    let few = &idx[..idx.len().min(64)];
    let (_, _, grads) = slice_grads(net_ad.clone(), data, few, &grad_device);
    let norm = |g: Option<Tensor<2>>| {
        g.map_or(0.0, |g| {
            (g.clone() * g).sum().into_scalar::<f32>().sqrt() as f64
        })
    };
    Diagnostics {
        digits: batch,
        steps,
        neurons_active_at_readout: fired.iter().filter(|&&f| f).count(),
        neurons: h,
        logit_spread,
        input_gradient_norm: norm(grads.get::<2>(net_ad.input.weight.id)),
        output_gradient_norm: norm(grads.get::<2>(net_ad.output.weight.id)),
    }
}
