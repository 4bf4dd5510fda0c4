//! The fused training step of a GFR network on wgpu (`GfrNetwork::batch_loss`: eight hand-written
//! kernels, forward and backward) against Burn's operations and autodiff on the same device and on
//! the CPU: the loss, the correct count and every gradient, for default and biological networks,
//! trainable and frozen neurons, several sizes. And the clipped Adam step that folds the
//! clipping factor into Adam's kernel against clipping first. Skipped, saying so, without a
//! wgpu adapter.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use gfr::device::{Backend, wgpu_available};
use gfr::network::model::cross_entropy;
use gfr::network::{BioInput, BioUnits, GfrNetwork, LineClassifier, default_neuron};
use gfr::neuron::{ActivationParams, NeuronParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cell-like neurons: thresholds of tens of pA, ranges of hundreds, rates below 0.4 ms⁻¹.
fn cells(n: usize, rng: &mut StdRng) -> Vec<NeuronParams> {
    (0..n)
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

/// `batch` digits of the built-in sample from `first` on: images `[B, 28, 28]`, labels `[B]`.
fn digits(first: usize, batch: usize, device: &Device) -> (Tensor<3>, Tensor<1, Int>) {
    let (train, _) = gfr::network::mnist::builtin_sample();
    let idx: Vec<usize> = (first..first + batch).map(|i| i % train.len()).collect();
    let pixels: Vec<f32> = idx.iter().flat_map(|&i| train.image(i).to_vec()).collect();
    let labels: Vec<i64> = idx.iter().map(|&i| train.labels[i] as i64).collect();
    (
        Tensor::from_data(TensorData::new(pixels, [batch, 28, 28]), device),
        Tensor::from_data(TensorData::new(labels, [batch]), device),
    )
}

/// Every parameter's gradient (None: the parameter got none), in the module's order.
struct Grads<'a> {
    grads: &'a GradientsParams,
    all: Vec<Option<Vec<f32>>>,
}

impl ModuleVisitor for Grads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.all.push(
            self.grads
                .get::<D>(param.id)
                .map(|g| g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()),
        );
    }
}

/// `(loss, count, gradients)` of one batch through `batch_loss` (fused on wgpu) or through
/// Burn's operations (`fused` false).
fn run(
    net: &GfrNetwork,
    images: Tensor<3>,
    labels: Tensor<1, Int>,
    fused: bool,
) -> (f32, f32, Vec<Option<Vec<f32>>>) {
    // fresh autodiff leaves for each backward pass, as training forks the model per batch
    let net = &net.clone().fork(&images.device());
    let (objective, score) = if fused {
        net.batch_loss(images, labels)
    } else {
        cross_entropy(net, images, labels)
    };
    let on_gpu = !gfr::device::is_cpu(&objective.device());
    // the fused step returns [loss, count] as its objective; Burn's operations the loss alone
    assert_eq!(objective.dims()[0], if fused && on_gpu { 2 } else { 1 });
    let grads = GradientsParams::from_grads(objective.backward(), net);
    let mut visit = Grads {
        grads: &grads,
        all: Vec::new(),
    };
    net.visit(&mut visit);
    let score = score
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    (score[0], score[1], visit.all)
}

/// Asserts that two runs agree: loss within `1e-5` relative, the same count (unless a digit
/// sits on a tie within rounding), each gradient within `tol` of its own largest entry or
/// within `tol_all` of the largest gradient entry of any parameter (a gradient ten thousand
/// times smaller than the largest, a sum that nearly cancels, carries the f32 noise of the
/// device's exp and tanh).
fn agree(
    what: &str,
    a: &(f32, f32, Vec<Option<Vec<f32>>>),
    b: &(f32, f32, Vec<Option<Vec<f32>>>),
    tol: f32,
    tol_all: f32,
) {
    assert!(
        (a.0 - b.0).abs() <= 1e-5 * b.0.abs().max(1.0),
        "{what}: loss {} vs {}",
        a.0,
        b.0
    );
    assert!((a.1 - b.1).abs() <= 1.0, "{what}: count {} vs {}", a.1, b.1);
    assert_eq!(a.2.len(), b.2.len());
    let mut compared = 0;
    let largest =
        b.2.iter()
            .flatten()
            .flatten()
            .fold(0f32, |m, x| m.max(x.abs()));
    for (k, (ga, gb)) in a.2.iter().zip(&b.2).enumerate() {
        match (ga, gb) {
            (None, None) => {}
            (Some(ga), Some(gb)) => {
                let scale = gb.iter().fold(0f32, |m, x| m.max(x.abs()));
                let worst = ga
                    .iter()
                    .zip(gb)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    worst <= tol * scale || worst <= tol_all * largest,
                    "{what}: parameter {k}: gradients differ by {worst} (largest {scale}, of all {largest})"
                );
                compared += 1;
            }
            _ => panic!("{what}: parameter {k} has a gradient one way only"),
        }
    }
    assert!(compared > 0, "{what}: some gradient compared");
}

/// The networks compared, built on the CPU: (name, network); hidden sizes 12 to 24.
fn networks(seed: u64) -> Vec<(String, GfrNetwork)> {
    let device = gfr::device::cpu().autodiff();
    let mut rng = StdRng::seed_from_u64(seed);
    let bio = cells(24, &mut rng);
    device.seed(seed);
    let default = GfrNetwork::new(&vec![default_neuron(); 16], false, &device);
    let published = GfrNetwork::biological(&bio, BioInput::Published, &device);
    let relative = GfrNetwork::biological(&bio[..20], BioInput::Relative, &device)
        .with_bio_units(BioUnits::Relative);
    let frozen = GfrNetwork::biological(&bio[..12], BioInput::Relative, &device).tap_neurons(|l| {
        l.with_trainable_filters(false)
            .with_trainable_activation(false)
    });
    vec![
        ("default H=16".into(), default),
        ("published H=24".into(), published),
        ("relative H=20".into(), relative),
        ("frozen neurons H=12".into(), frozen),
    ]
}

#[test]
fn the_fused_network_step_matches_burns_operations() {
    if !wgpu_available() {
        eprintln!("SKIPPED the_fused_network_step_matches_burns_operations: no wgpu adapter");
        return;
    }
    let gpu = Backend::Wgpu.device().unwrap().autodiff();
    let cpu = gfr::device::cpu().autodiff();
    for (seed, first, batch) in [(1u64, 0usize, 7usize), (2, 300, 64), (3, 901, 1)] {
        for (name, net_cpu) in networks(seed) {
            let net = net_cpu.clone().fork(&gpu);
            let what = format!("{name}, batch {batch}, seed {seed}");
            let (x, y) = digits(first, batch, &gpu);
            let fused = run(&net, x.clone(), y.clone(), true);
            let burn = run(&net, x, y, false);
            agree(
                &format!("wgpu fused vs wgpu Burn ({what})"),
                &fused,
                &burn,
                2e-4,
                0.0,
            );
            let (x, y) = digits(first, batch, &cpu);
            let host = run(&net_cpu, x, y, true);
            agree(
                &format!("wgpu fused vs CPU ({what})"),
                &fused,
                &host,
                2e-4,
                1e-5,
            );
            assert!(fused.0.is_finite() && fused.0 > 0.0, "{what}: a loss");
        }
    }
}

/// A readout step that gets no drive: the loss and gradients stay those of Burn's operations
/// for a network whose neurons never fire (every rate 0).
#[test]
fn the_fused_step_of_a_silent_network_matches() {
    if !wgpu_available() {
        eprintln!("SKIPPED the_fused_step_of_a_silent_network_matches: no wgpu adapter");
        return;
    }
    let gpu = Backend::Wgpu.device().unwrap().autodiff();
    let mut n = default_neuron();
    n.activation.threshold = 1e6;
    gpu.seed(3);
    let net = GfrNetwork::new(&vec![n; 8], false, &gpu);
    assert!(gfr::network::silent_readout(
        &net,
        &gfr::network::mnist::builtin_sample().1,
        &gpu
    ));
    let (x, y) = digits(50, 9, &gpu);
    let fused = run(&net, x.clone(), y.clone(), true);
    let burn = run(&net, x, y, false);
    agree("silent network", &fused, &burn, 1e-4, 0.0);
}

/// A network wider than a cube can hold (the fused scan keeps a sequence's neurons in one) falls
/// back to Burn's operations: the same objective `[1]` and values as `cross_entropy`.
#[test]
fn a_network_wider_than_a_cube_falls_back() {
    if !wgpu_available() {
        eprintln!("SKIPPED a_network_wider_than_a_cube_falls_back: no wgpu adapter");
        return;
    }
    let gpu = Backend::Wgpu.device().unwrap().autodiff();
    gpu.seed(5);
    // wider than any adapter's cube (WebGPU allows at most 1,024 units per workgroup)
    let net = GfrNetwork::new(&vec![default_neuron(); 1100], false, &gpu);
    let (x, y) = digits(7, 2, &gpu);
    let (objective, score) = net.batch_loss(x.clone(), y.clone());
    assert_eq!(objective.dims(), [1], "Burn's operations ran");
    let (_, want) = cross_entropy(&net, x, y);
    let (a, b) = (
        score
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
        want.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap(),
    );
    assert_eq!(a, b);
}

/// `optim::step_clipped` on wgpu (the clipping factor applied inside Adam's kernel) against
/// clipping the gradients first and stepping, over steps that clip and steps that do not;
/// and an optimizer other than gfr's Adam is refused rather than stepped unclipped.
#[test]
fn the_clipped_step_folds_the_clip_into_adam() {
    if !wgpu_available() {
        eprintln!("SKIPPED the_clipped_step_folds_the_clip_into_adam: no wgpu adapter");
        return;
    }
    let gpu = Backend::Wgpu.device().unwrap().autodiff();
    gpu.seed(4);
    let start = GfrNetwork::new(&vec![default_neuron(); 16], false, &gpu);
    let (mut folded, mut first) = (start.clone(), start.clone());
    let (mut opt_a, mut opt_b) = (gfr::optim::adam(), gfr::optim::adam());
    // max norms far below and far above the gradients' norm
    for (step, max_norm) in [1e-3, 1e3, 1e-2, 1e3].into_iter().enumerate() {
        let (x, y) = digits(step * 16, 16, &gpu);
        let grads = |net: &GfrNetwork| {
            let (objective, _) = net.batch_loss(x.clone(), y.clone());
            GradientsParams::from_grads(objective.backward(), net)
        };
        folded =
            gfr::optim::step_clipped(&mut opt_a, 1e-2, folded.clone(), grads(&folded), max_norm);
        let mut g = grads(&first);
        gfr::optim::clip_global_norm(&first, &mut g, max_norm);
        first = opt_b.step(1e-2, first.clone(), g);
        let (a, b, before) = (params(&folded), params(&first), params(&start));
        for (pa, pb) in a.iter().zip(&b) {
            for (x, y) in pa.iter().zip(pb) {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "step {step}: {x} vs {y}"
                );
            }
        }
        let shift = a
            .iter()
            .zip(&before)
            .flat_map(|(pa, p0)| pa.iter().zip(p0).map(|(x, z)| (x - z).abs()))
            .fold(0f32, f32::max);
        assert!(shift > 0.0, "step {step} moves the parameters");
    }
    let mut other = burn::optim::ModuleOptimizer::from(gfr::optim::burn_adam());
    let (x, y) = digits(0, 8, &gpu);
    let (objective, _) = start.batch_loss(x, y);
    let grads = GradientsParams::from_grads(objective.backward(), &start);
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        gfr::optim::step_clipped(&mut other, 1e-2, start.clone(), grads, 1e-3)
    }));
    assert!(refused.is_err(), "another optimizer is refused on a GPU");
}

/// Every parameter's values, in the module's order.
fn params(net: &GfrNetwork) -> Vec<Vec<f32>> {
    struct Values(Vec<Vec<f32>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(
                param
                    .val()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap(),
            );
        }
    }
    let mut v = Values(Vec::new());
    net.visit(&mut v);
    v.0
}
