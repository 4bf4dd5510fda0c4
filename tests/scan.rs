//! The fused scan against the plain tensor-op reference (values and gradients through Burn's
//! autodiff) on the CPU backend and, when an adapter exists, on wgpu; and the host backward
//! pass against finite differences.

use burn::tensor::{Device, Tensor, TensorData};
use gfr::device::wgpu_available;
use gfr::neuron::{ActivationParams, GfrLayer, NeuronParams};
use gfr::scan::Precision;
use gfr::scan::cpu::{self, Dims, HostNeurons};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const N: usize = 5;

fn neurons(rng: &mut StdRng) -> Vec<NeuronParams> {
    (0..N)
        .map(|_| {
            let act = ActivationParams {
                max_current: rng.random_range(80.0..250.0),
                max_firing_rate: rng.random_range(0.1..0.4),
                poly_coeff: (0..3).map(|_| rng.random_range(0.3..1.3)).collect(),
                threshold: rng.random_range(0.0..60.0),
                bin_size: 20,
            };
            let mut p = NeuronParams::initial(20, act);
            for i in 0..p.n_filters() {
                p.alpha[i] += rng.random_range(-1.0..1.0);
                p.beta[i] = rng.random_range(-0.03..0.01);
            }
            p
        })
        .collect()
}

fn tensor<const D: usize>(v: &[f64], shape: [usize; D], device: &Device) -> Tensor<D> {
    let v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

fn host_int(t: Tensor<2, burn::tensor::Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap()
}

/// Rates and the gradients of Σ G ⊙ rates, via `run(layer, P, W)`.
struct Outcome {
    rates: Vec<f64>,
    grads: Vec<(&'static str, Vec<f64>)>,
}

fn outcome(
    device: &Device,
    recurrent: bool,
    run: impl Fn(&GfrLayer, Tensor<3>, Option<Tensor<2>>) -> Tensor<3>,
) -> Outcome {
    let mut rng = StdRng::seed_from_u64(11);
    let ns = neurons(&mut rng);
    let (b, t) = (3, 30);
    let current: Vec<f64> = (0..b * t * N)
        .map(|_| rng.random_range(-20.0..220.0))
        .collect();
    let weight: Vec<f64> = (0..N * N)
        .map(|_| rng.random_range(-150.0..150.0))
        .collect();
    let g: Vec<f64> = (0..b * t * N)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let ad = device.clone().autodiff();
    let scale = if recurrent { 1.0 } else { 1000.0 };
    let layer = GfrLayer::new(&ns, &ad)
        .with_trainable_activation(true)
        .with_history_scale(scale);
    let p = tensor(&current, [b, t, N], &ad).require_grad();
    let w = recurrent.then(|| tensor(&weight, [N, N], &ad).require_grad());
    let rates = run(&layer, p.clone(), w.clone());
    let loss = (rates.clone() * tensor(&g, [b, t, N], &ad)).sum();
    let grads = loss.backward();
    let mut out = vec![
        ("P", host(p.grad(&grads).unwrap())),
        ("alpha", host(layer.alpha.val().grad(&grads).unwrap())),
        ("beta", host(layer.beta.val().grad(&grads).unwrap())),
        (
            "c",
            host(layer.activation.coeffs.val().grad(&grads).unwrap()),
        ),
        (
            "b",
            host(layer.activation.threshold.val().grad(&grads).unwrap()),
        ),
    ];
    if let Some(w) = w {
        out.push(("W", host(w.grad(&grads).unwrap())));
    }
    Outcome {
        rates: host(rates),
        grads: out,
    }
}

/// The reference: plain tensor ops, one bin at a time.
fn stepped(layer: &GfrLayer, current: Tensor<3>, w: Option<Tensor<2>>) -> Tensor<3> {
    let [batch, time, n] = current.dims();
    let prepared = layer.prepare();
    let mut state = layer.init_state(batch);
    let mut rates = Vec::new();
    for t in 0..time {
        let mut input = current
            .clone()
            .slice([0..batch, t..t + 1, 0..n])
            .reshape([batch, n]);
        if let Some(w) = &w {
            input = input + state.rate.clone().matmul(w.clone());
        }
        state = prepared.step(state, input);
        rates.push(state.rate.clone().unsqueeze_dim::<3>(1));
    }
    Tensor::cat(rates, 1)
}

fn compare(device: &Device, recurrent: bool, what: &str) {
    let fused = outcome(device, recurrent, |l, p, w| l.scan(p, w));
    let reference = outcome(device, recurrent, stepped);
    let firing = reference.rates.iter().filter(|&&r| r > 0.0).count();
    assert!(
        firing > reference.rates.len() / 4 && firing < reference.rates.len(),
        "{what}: the test neurons should fire in some bins and not others ({firing})"
    );
    for (i, (a, b)) in fused.rates.iter().zip(&reference.rates).enumerate() {
        assert!(
            (a - b).abs() <= 2e-4 * b.abs().max(0.05),
            "{what}: rate {i}: {a} vs {b}"
        );
    }
    for ((name, a), (_, b)) in fused.grads.iter().zip(&reference.grads) {
        let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(scale > 0.0, "{what}: ∂/∂{name} vanishes");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 2e-3 * scale,
                "{what}: ∂/∂{name}[{i}]: fused {x} vs reference {y} (scale {scale})"
            );
        }
    }
}

#[test]
fn cpu_scan_matches_the_tensor_op_reference() {
    let device = gfr::device::cpu();
    compare(&device, false, "cpu");
    compare(&device, true, "cpu, recurrent");
}

#[test]
fn wgpu_scan_matches_the_tensor_op_reference() {
    if !wgpu_available() {
        eprintln!(
            "SKIPPED wgpu_scan_matches_the_tensor_op_reference: no wgpu adapter on this machine"
        );
        return;
    }
    let device = gfr::device::Backend::Wgpu.device().unwrap();
    compare(&device, false, "wgpu");
    compare(&device, true, "wgpu, recurrent");
}

/// The network's f32 host scan against the f64 one (the fitter's): rates and every gradient
/// within f32 accuracy, with and without a recurrent weight.
#[test]
fn f32_host_scan_matches_f64() {
    let device = gfr::device::cpu();
    for recurrent in [false, true] {
        let what = if recurrent {
            "recurrent"
        } else {
            "feed-forward"
        };
        let f64_scan = outcome(&device, recurrent, |l, p, w| l.scan(p, w));
        let f32_scan = outcome(&device, recurrent, |l, p, w| {
            let neurons = l.scan_neurons().with_precision(Precision::F32);
            gfr::scan::scan(&neurons, p, w, None)
        });
        let rate_scale = f64_scan.rates.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let worst = f32_scan
            .rates
            .iter()
            .zip(&f64_scan.rates)
            .map(|(a, b)| (a - b).abs() / rate_scale)
            .fold(0.0f64, f64::max);
        eprintln!("{what}: rates, worst error {worst:.2e} of the largest rate");
        assert!(worst <= 1e-4, "{what}: rates differ by {worst:e}");
        assert_eq!(f32_scan.grads.len(), if recurrent { 6 } else { 5 });
        for ((name, a), (_, b)) in f32_scan.grads.iter().zip(&f64_scan.grads) {
            let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            assert!(scale > 0.0, "{what}: ∂/∂{name} vanishes");
            let worst = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs() / scale)
                .fold(0.0f64, f64::max);
            eprintln!("{what}: ∂/∂{name}, worst error {worst:.2e} of the largest");
            assert!(worst <= 1e-4, "{what}: ∂/∂{name} differs by {worst:e}");
        }
    }
}

/// Sequences with their own lengths: rates past the end are 0, the valid bins equal those of
/// the sequence run alone, and (on wgpu) the kernels agree with the host implementation.
#[test]
fn lengths_end_sequences_early() {
    let mut rng = StdRng::seed_from_u64(21);
    let ns = neurons(&mut rng);
    let (b, t) = (2, 20);
    let current: Vec<f64> = (0..b * t * N)
        .map(|_| rng.random_range(-20.0..220.0))
        .collect();
    let lengths: Vec<i64> = (0..b * N).map(|i| [20, 7, 13, 0, 20][i % 5]).collect();
    // rates, ∂L/∂P and the parameters' gradients (α, β, c, b) of L = Σ rates · weights
    let weights: Vec<f64> = (0..b * t * N)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let run = |device: &Device| -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let ad = device.clone().autodiff();
        let layer = GfrLayer::new(&ns, &ad)
            .with_trainable_filters(true)
            .with_trainable_activation(true);
        let p = tensor(&current, [b, t, N], &ad).require_grad();
        let len = Tensor::<2, burn::tensor::Int>::from_data(
            TensorData::new(lengths.clone(), [b, N]),
            &ad,
        );
        let rates = gfr::scan::scan(&layer.scan_neurons(), p.clone(), None, Some(len.clone()));
        assert_eq!(host_int(len), lengths);
        let grads = (rates.clone() * tensor(&weights, [b, t, N], &ad))
            .sum()
            .backward();
        let mut params = host(layer.alpha.grad(&grads).unwrap());
        params.extend(host(layer.beta.grad(&grads).unwrap()));
        params.extend(host(layer.activation.coeffs.grad(&grads).unwrap()));
        params.extend(host(layer.activation.threshold.grad(&grads).unwrap()));
        (host(rates), host(p.grad(&grads).unwrap()), params)
    };
    let (rates, grad, params) = run(&gfr::device::cpu());
    for bb in 0..b {
        for j in 0..N {
            let len = lengths[bb * N + j] as usize;
            let alone: Vec<f64> = (0..len).map(|tt| current[(bb * t + tt) * N + j]).collect();
            let want = gfr::scan::predict(&ns[j], &alone);
            for tt in 0..t {
                let got = rates[(bb * t + tt) * N + j];
                let g = grad[(bb * t + tt) * N + j];
                if tt < len {
                    assert!(
                        (got - want[tt]).abs() <= 1e-5 * want[tt].abs().max(0.01),
                        "{got} vs {}",
                        want[tt]
                    );
                } else {
                    assert_eq!((got, g), (0.0, 0.0), "bin {tt} past the end of ({bb}, {j})");
                }
            }
        }
    }
    if !wgpu_available() {
        eprintln!("SKIPPED the wgpu half of lengths_end_sequences_early: no wgpu adapter");
        return;
    }
    let (w_rates, w_grad, w_params) = run(&gfr::device::Backend::Wgpu.device().unwrap());
    for (x, y) in w_rates.iter().zip(&rates).chain(w_grad.iter().zip(&grad)) {
        assert!(
            (x - y).abs() <= 1e-4 * y.abs().max(0.05),
            "wgpu {x} vs cpu {y}"
        );
    }
    let largest = params.iter().fold(0f64, |m, x| m.max(x.abs()));
    assert!(largest > 0.0);
    for (k, (x, y)) in w_params.iter().zip(&params).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * largest,
            "parameter gradient {k}: wgpu {x} vs cpu {y} (largest {largest})"
        );
    }
}

/// The host backward pass (∂L/∂P, α, β, c, b and, from ∂L/∂P, W) against central differences
/// of the host forward pass, in f64.
#[test]
fn host_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(4);
    let ns = neurons(&mut rng);
    let n = ns[0].n_filters();
    let dims = Dims {
        batch: 2,
        time: 25,
        neurons: N,
    };
    let flat =
        |f: &dyn Fn(&NeuronParams) -> Vec<f64>| -> Vec<f64> { ns.iter().flat_map(f).collect() };
    let mut alpha = flat(&|p| p.alpha.clone());
    let mut beta = flat(&|p| p.beta.iter().map(|b| b * 1000.0).collect());
    let decay: Vec<f64> = ns[0].lambda.iter().map(|l| 1.0 - l).collect();
    let mut coeffs = flat(&|p| p.activation.poly_coeff.clone());
    let mut threshold = flat(&|p| vec![p.activation.threshold]);
    let max_current = flat(&|p| vec![p.activation.max_current]);
    let max_rate = flat(&|p| vec![p.activation.max_firing_rate]);
    let mut current: Vec<f64> = (0..dims.batch * dims.time * N)
        .map(|_| rng.random_range(-20.0..220.0))
        .collect();
    let mut w: Vec<f64> = (0..N * N)
        .map(|_| rng.random_range(-150.0..150.0))
        .collect();
    let g: Vec<f64> = current
        .iter()
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    // some sequences end early: their later bins stay silent and take no gradient
    let lengths = [25, 25, 18, 25, 9, 25, 25, 25, 21, 25];

    #[allow(clippy::too_many_arguments)]
    let loss = |alpha: &[f64],
                beta: &[f64],
                coeffs: &[f64],
                threshold: &[f64],
                current: &[f64],
                w: &[f64]| {
        let nrn = HostNeurons {
            alpha,
            beta,
            decay: &decay,
            coeffs,
            threshold,
            max_current: &max_current,
            max_rate: &max_rate,
        };
        let trace = cpu::forward(&nrn, current, dims, &lengths, Some(w));
        (
            trace.rates.iter().zip(&g).map(|(r, g)| r * g).sum::<f64>(),
            trace,
        )
    };
    let (_, trace) = loss(&alpha, &beta, &coeffs, &threshold, &current, &w);
    let nrn = HostNeurons {
        alpha: &alpha,
        beta: &beta,
        decay: &decay,
        coeffs: &coeffs,
        threshold: &threshold,
        max_current: &max_current,
        max_rate: &max_rate,
    };
    let grads = cpu::backward(&nrn, dims, &lengths, Some(&w), &trace, &g);
    // ∂L/∂W[k, j] = Σ_{b,t} r_{t−1}[k] J_t[j], as the host scan's backward forms it
    let dw = cpu::recurrent_weight_grad(dims, &trace.rates, &grads.current);
    let check = |analytic: f64, numeric: f64, what: String| {
        assert!(
            (analytic - numeric).abs() <= 1e-5 * analytic.abs().max(numeric.abs()) + 1e-8,
            "{what}: analytic {analytic} vs numeric {numeric}"
        );
    };
    macro_rules! fd {
        ($buf:ident, $i:expr, $h:expr, $analytic:expr, $name:expr) => {{
            let keep = $buf[$i];
            $buf[$i] = keep + $h;
            let up = loss(&alpha, &beta, &coeffs, &threshold, &current, &w).0;
            $buf[$i] = keep - $h;
            let down = loss(&alpha, &beta, &coeffs, &threshold, &current, &w).0;
            $buf[$i] = keep;
            check(
                $analytic,
                (up - down) / (2.0 * $h),
                format!("{}[{}]", $name, $i),
            );
        }};
    }
    for i in [0, n + 2, 3 * n + 5] {
        fd!(alpha, i, 1e-5, grads.alpha[i], "α");
        fd!(beta, i, 1e-5, grads.beta[i], "β");
    }
    for i in [0, 4, 13] {
        fd!(coeffs, i, 1e-6, grads.coeffs[i], "c");
    }
    for i in [1, 3] {
        fd!(threshold, i, 1e-4, grads.threshold[i], "b");
    }
    for i in [7, 60, 133] {
        fd!(current, i, 1e-4, grads.current[i], "P");
    }
    for i in [0, 6, 19] {
        fd!(w, i, 1e-5, dw[i], "W");
    }
}

/// The host prediction agrees with the plain rendering of spec §1 in `NeuronParams::predict`.
#[test]
fn host_prediction_matches_the_spec_rendering() {
    let mut rng = StdRng::seed_from_u64(8);
    let ns = neurons(&mut rng);
    let current: Vec<f64> = (0..200).map(|_| rng.random_range(-20.0..220.0)).collect();
    for p in &ns {
        let (a, b) = (gfr::scan::predict(p, &current), p.predict(&current));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "{x} vs {y}");
        }
    }
}
