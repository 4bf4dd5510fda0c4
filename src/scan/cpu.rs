//! The scan on the host: forward and backward (BPTT) over `f64` buffers, split over the cores.
//!
//! Layout: sequences are row-major `[B, T, N]` (batch, time bin, neuron); neuron parameters
//! are one row per neuron. The recurrence of spec §1, with an optional recurrent weight W
//! (`[N, N]`, presynaptic row k, postsynaptic column j):
//!
//! ```text
//! I_t = P_t + r_{t−1} W                      (total input current, pA)
//! h_t = (1 − λ) ⊙ h_{t−1} + α I_t + β r_{t−1}  (β already carries the history scale)
//! u_t = mean_i h_t[i],  r_t = g(u_t)
//! ```
//!
//! The backward pass runs the adjoint recurrence in reverse, with a_t = ∂L/∂h_t and
//! J_t = ∂L/∂I_t:
//!
//! ```text
//! R_t = ∂L/∂r_t (from outside) + Σ_i β_i a_{t+1}[i] + (J_{t+1} Wᵀ)
//! a_t = (1 − λ) ⊙ a_{t+1} + R_t g'(u_t) / n,   J_t = Σ_i α_i a_t[i]
//! ∂L/∂α_i = Σ_t a_t[i] I_t,   ∂L/∂β_i = Σ_t a_t[i] r_{t−1},   ∂L/∂P_t = J_t
//! ```
//!
//! ∂L/∂W = Σ_t r_{t−1}ᵀ J_t is one matmul, left to the caller.

use std::ops::Range;

/// Neuron parameters of a scan, one row per neuron (N neurons, n filters, K coefficients).
#[derive(Clone, Copy, Debug)]
pub struct HostNeurons<'a> {
    /// α, `[N, n]`.
    pub alpha: &'a [f64],
    /// Effective rate-history weights (h += β r), `[N, n]`.
    pub beta: &'a [f64],
    /// 1 − λ, `[n]`.
    pub decay: &'a [f64],
    /// c, `[N, K]`.
    pub coeffs: &'a [f64],
    /// b (pA), σ (pA), γ (ms⁻¹), `[N]` each.
    pub threshold: &'a [f64],
    pub max_current: &'a [f64],
    pub max_rate: &'a [f64],
}

impl HostNeurons<'_> {
    pub fn n_neurons(&self) -> usize {
        self.threshold.len()
    }
    pub fn n_filters(&self) -> usize {
        self.decay.len()
    }
    pub fn n_coeffs(&self) -> usize {
        self.coeffs.len() / self.n_neurons().max(1)
    }
}

/// Shape of a scan: batch, time bins, neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub time: usize,
    pub neurons: usize,
}

impl Dims {
    fn len(&self) -> usize {
        self.batch * self.time * self.neurons
    }
    fn at(&self, b: usize, t: usize, j: usize) -> usize {
        (b * self.time + t) * self.neurons + j
    }
}

/// What the forward pass keeps for the backward pass, each `[B, T, N]`.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// r_t (ms⁻¹).
    pub rates: Vec<f64>,
    /// u_t = mean_i h_t[i], the activation's input (pA).
    pub act_in: Vec<f64>,
    /// I_t, the total input current (pA).
    pub total: Vec<f64>,
    /// ∂r/∂z = γ (1 − tanh² z) where the neuron fires, else 0.
    pub slope: Vec<f64>,
}

/// Gradients of a scan.
#[derive(Clone, Debug, Default)]
pub struct HostGrads {
    /// ∂L/∂P, `[B, T, N]`.
    pub current: Vec<f64>,
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
    pub coeffs: Vec<f64>,
    pub threshold: Vec<f64>,
}

/// v = (u − b)/σ of neuron j.
#[inline]
fn scaled_input(nrn: &HostNeurons, j: usize, u: f64) -> f64 {
    (u - nrn.threshold[j]) / nrn.max_current[j]
}

/// The rate g(u) of neuron j and its slope ∂r/∂z = γ (1 − tanh² z) (both 0 where the
/// rectifier is off).
#[inline]
fn activation(nrn: &HostNeurons, j: usize, u: f64) -> (f64, f64) {
    let k = nrn.n_coeffs();
    let v = scaled_input(nrn, j, u);
    let mut z = 0.0;
    let mut pw = 1.0;
    for &c in &nrn.coeffs[j * k..(j + 1) * k] {
        z += c * c * pw;
        pw *= v;
    }
    // tanh z > 0 exactly where z > 0 (NaN: neither), so a silent neuron costs no tanh
    if !(z > 0.0) {
        return (0.0, 0.0);
    }
    let th = z.tanh();
    let gamma = nrn.max_rate[j];
    if th > 0.0 {
        (gamma * th, gamma * (1.0 - th * th))
    } else {
        (0.0, 0.0)
    }
}

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the scans of this thread kept on this thread: for callers that already
/// split their work over the cores (the network's data-parallel mini-batches).
pub(crate) fn serial<T>(f: impl FnOnce() -> T) -> T {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// Work split: batch rows and a neuron range per task. With a recurrent weight the neurons of
/// a row are coupled, so tasks split rows only.
fn tasks(dims: Dims, recurrent: bool) -> Vec<(Range<usize>, Range<usize>)> {
    let workers = if SERIAL.with(|s| s.get()) {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let work = dims.len() * if recurrent { dims.neurons } else { 1 };
    if workers == 1 || work < 20_000 {
        return vec![(0..dims.batch, 0..dims.neurons)];
    }
    let split = |n: usize| -> Vec<Range<usize>> {
        let parts = workers.min(n).max(1);
        (0..parts)
            .map(|p| p * n / parts..(p + 1) * n / parts)
            .filter(|r| !r.is_empty())
            .collect()
    };
    if recurrent || dims.batch >= workers {
        split(dims.batch)
            .into_iter()
            .map(|b| (b, 0..dims.neurons))
            .collect()
    } else {
        split(dims.neurons)
            .into_iter()
            .map(|j| (0..dims.batch, j))
            .collect()
    }
}

/// Runs `f` on every task, in parallel when there are several.
fn run_tasks<T: Send>(
    tasks: &[(Range<usize>, Range<usize>)],
    f: impl Fn(Range<usize>, Range<usize>) -> T + Sync,
) -> Vec<T> {
    if tasks.len() == 1 {
        let (b, j) = tasks[0].clone();
        return vec![f(b, j)];
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .iter()
            .map(|(b, j)| {
                let (b, j, f) = (b.clone(), j.clone(), &f);
                s.spawn(move || f(b, j))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scan worker panicked"))
            .collect()
    })
}

/// Rows `cols` of a per-neuron table `[N, n]`, transposed to `[n, cols.len()]`.
fn transposed(table: &[f64], neurons: usize, n: usize, cols: &Range<usize>) -> Vec<f64> {
    debug_assert_eq!(table.len(), neurons * n);
    let width = cols.len();
    let mut out = vec![0.0; n * width];
    for (jl, j) in cols.clone().enumerate() {
        for i in 0..n {
            out[i * width + jl] = table[j * n + i];
        }
    }
    out
}

/// Forward pass over `current` (P, `[B, T, N]`); `lengths`: valid bins per sequence `[B, N]`
/// (later bins keep rate 0); `recurrent`: W, `[N, N]`.
pub fn forward(
    nrn: &HostNeurons,
    current: &[f64],
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[f64]>,
) -> Trace {
    assert_eq!(current.len(), dims.len(), "current has the wrong size");
    assert_eq!(
        lengths.len(),
        dims.batch * dims.neurons,
        "one length per sequence"
    );
    assert_eq!(
        nrn.n_neurons(),
        dims.neurons,
        "one parameter row per neuron"
    );
    let n = nrn.n_filters();
    let parts = run_tasks(&tasks(dims, recurrent.is_some()), |rows, cols| {
        let (nb, width, nn) = (rows.len(), cols.len(), dims.neurons);
        let size = nb * dims.time * width;
        let mut out = Trace {
            rates: vec![0.0; size],
            act_in: vec![0.0; size],
            total: vec![0.0; size],
            slope: vec![0.0; size],
        };
        // filter states, filter-major per row so that the neuron loops vectorise: `[nb, n, width]`
        let mut h = vec![0.0; nb * n * width];
        let (alpha_t, beta_t) = (
            transposed(nrn.alpha, nn, n, &cols),
            transposed(nrn.beta, nn, n, &cols),
        );
        let mut sum = vec![0.0; width];
        // r_{t−1} of every neuron, per row: `[nb, N]`
        let mut r_prev = vec![0.0; nb * nn];
        let mut input = vec![0.0; nb * width];
        for t in 0..dims.time {
            for (bl, b) in rows.clone().enumerate() {
                let row = dims.at(b, t, 0);
                input[bl * width..(bl + 1) * width]
                    .copy_from_slice(&current[row + cols.start..row + cols.end]);
            }
            if let Some(w) = recurrent {
                // I += r_{t−1} W for every row of the task at once
                gemm(
                    (nb, nn, width),
                    (&r_prev, nn, 1),
                    (&w[cols.start..], nn, 1),
                    1.0,
                    (&mut input, width),
                );
            }
            for (bl, b) in rows.clone().enumerate() {
                let base = (bl * dims.time + t) * width;
                let inp = &input[bl * width..(bl + 1) * width];
                let r_own = &r_prev[bl * nn + cols.start..bl * nn + cols.end];
                let valid = |jl: usize| t < lengths[b * nn + cols.start + jl];
                // h_t[i] = (1 − λ_i) h_{t−1}[i] + α_i I_t + β_i r_{t−1}, summed in filter order
                // (the same operations in the same order as neuron by neuron)
                sum.fill(0.0);
                let all_valid = (0..width).all(valid);
                for i in 0..n {
                    let d = nrn.decay[i];
                    let hi = &mut h[(bl * n + i) * width..(bl * n + i + 1) * width];
                    let (ai, bi) = (
                        &alpha_t[i * width..(i + 1) * width],
                        &beta_t[i * width..(i + 1) * width],
                    );
                    if all_valid {
                        let terms = ai.iter().zip(bi).zip(inp.iter().zip(r_own));
                        for ((h, s), ((a, b), (x, r))) in
                            hi.iter_mut().zip(sum.iter_mut()).zip(terms)
                        {
                            *h = d * *h + a * x + b * r;
                            *s += *h;
                        }
                    } else {
                        for jl in (0..width).filter(|&jl| valid(jl)) {
                            hi[jl] = d * hi[jl] + ai[jl] * inp[jl] + bi[jl] * r_own[jl];
                            sum[jl] += hi[jl];
                        }
                    }
                }
                for (jl, j) in cols.clone().enumerate() {
                    if !valid(jl) {
                        continue;
                    }
                    let i_t = inp[jl];
                    let u = sum[jl] / n as f64;
                    let (rate, slope) = activation(nrn, j, u);
                    out.rates[base + jl] = rate;
                    out.slope[base + jl] = slope;
                    out.act_in[base + jl] = u;
                    out.total[base + jl] = i_t;
                }
                for (jl, j) in cols.clone().enumerate() {
                    r_prev[bl * nn + j] = out.rates[base + jl];
                }
            }
        }
        (rows, cols, out)
    });
    if let [(rows, cols, _)] = parts.as_slice()
        && *rows == (0..dims.batch)
        && *cols == (0..dims.neurons)
    {
        return parts.into_iter().next().expect("one part").2;
    }
    let mut trace = Trace {
        rates: vec![0.0; dims.len()],
        act_in: vec![0.0; dims.len()],
        total: vec![0.0; dims.len()],
        slope: vec![0.0; dims.len()],
    };
    for (rows, cols, part) in parts {
        let width = cols.len();
        for (bl, b) in rows.enumerate() {
            for t in 0..dims.time {
                let src = (bl * dims.time + t) * width;
                let dst = dims.at(b, t, cols.start);
                trace.rates[dst..dst + width].copy_from_slice(&part.rates[src..src + width]);
                trace.act_in[dst..dst + width].copy_from_slice(&part.act_in[src..src + width]);
                trace.total[dst..dst + width].copy_from_slice(&part.total[src..src + width]);
                trace.slope[dst..dst + width].copy_from_slice(&part.slope[src..src + width]);
            }
        }
    }
    trace
}

/// Backward pass: `grad_rates` is ∂L/∂r, `[B, T, N]`; `trace` comes from [`forward`].
pub fn backward(
    nrn: &HostNeurons,
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[f64]>,
    trace: &Trace,
    grad_rates: &[f64],
) -> HostGrads {
    assert_eq!(grad_rates.len(), dims.len(), "∂L/∂r has the wrong size");
    let (n, kk, nn) = (nrn.n_filters(), nrn.n_coeffs(), dims.neurons);
    let parts = run_tasks(&tasks(dims, recurrent.is_some()), |rows, cols| {
        let (nb, width) = (rows.len(), cols.len());
        let mut g = HostGrads {
            current: vec![0.0; nb * dims.time * width],
            alpha: vec![0.0; width * n],
            beta: vec![0.0; width * n],
            coeffs: vec![0.0; width * kk],
            threshold: vec![0.0; width],
        };
        // adjoint filter states, filter-major per row: `[nb, n, width]`; ∂L/∂α, ∂L/∂β
        // filter-major too (`[n, width]`), transposed at the end
        let mut a = vec![0.0; nb * n * width];
        let (alpha_t, beta_t) = (
            transposed(nrn.alpha, nn, n, &cols),
            transposed(nrn.beta, nn, n, &cols),
        );
        let (mut g_alpha, mut g_beta) = (vec![0.0; n * width], vec![0.0; n * width]);
        let (mut r_vec, mut share, mut jj) = (vec![0.0; width], vec![0.0; width], vec![0.0; width]);
        let (mut i_vec, mut r_prev) = (vec![0.0; width], vec![0.0; width]);
        let every_col: Vec<usize> = (0..width).collect();
        // J_{t+1} of every neuron per row, and its recurrent share J_{t+1} Wᵀ (with W only)
        let mut j_next = vec![0.0; nb * nn];
        let mut j_cur = vec![0.0; nb * nn];
        let mut fed_back = vec![0.0; nb * width];
        for t in (0..dims.time).rev() {
            if let Some(w) = recurrent {
                // fed_back[b, j] = Σ_m J_{t+1}[b, m] W[j, m]
                gemm(
                    (nb, nn, width),
                    (&j_next, nn, 1),
                    (&w[cols.start * nn..], 1, nn),
                    0.0,
                    (&mut fed_back, width),
                );
            }
            for (bl, b) in rows.clone().enumerate() {
                let valid = |jl: usize| t < lengths[b * nn + cols.start + jl];
                let all_valid = (0..width).all(valid);
                let valid_cols: Vec<usize> = if all_valid {
                    Vec::new()
                } else {
                    (0..width).filter(|&jl| valid(jl)).collect()
                };
                // the valid columns, in order
                let live: &[usize] = if all_valid { &every_col } else { &valid_cols };
                let row = dims.at(b, t, cols.start);
                // R_t = ∂L/∂r_t + Σ_m J_{t+1}[m] W[j, m] + Σ_i β_i a_{t+1}[i]
                for &jl in live {
                    r_vec[jl] = grad_rates[row + jl] + fed_back[bl * width + jl];
                }
                for i in 0..n {
                    let ai = &a[(bl * n + i) * width..(bl * n + i + 1) * width];
                    let bi = &beta_t[i * width..(i + 1) * width];
                    if all_valid {
                        for ((r, b), a) in r_vec.iter_mut().zip(bi).zip(ai) {
                            *r += b * a;
                        }
                    } else {
                        for &jl in &valid_cols {
                            r_vec[jl] += bi[jl] * ai[jl];
                        }
                    }
                }
                for &jl in live {
                    let j = cols.start + jl;
                    let at = row + jl;
                    let r = r_vec[jl];
                    let mut e = 0.0;
                    let dr_dz = if r != 0.0 { trace.slope[at] } else { 0.0 };
                    if dr_dz != 0.0 {
                        let v = scaled_input(nrn, j, trace.act_in[at]);
                        // ∂r/∂v = γ(1 − tanh²) Σ_k k c_k² v^{k−1};  ∂r/∂c_k = γ(1 − tanh²) 2 c_k v^k
                        let c = &nrn.coeffs[j * kk..(j + 1) * kk];
                        let (mut dz_dv, mut pw) = (0.0, 1.0);
                        for (k, &ck) in c.iter().enumerate() {
                            g.coeffs[jl * kk + k] += r * dr_dz * 2.0 * ck * pw;
                            if k + 1 < kk {
                                dz_dv += (k + 1) as f64 * c[k + 1] * c[k + 1] * pw;
                            }
                            pw *= v;
                        }
                        e = r * dr_dz * dz_dv / nrn.max_current[j];
                        g.threshold[jl] -= e;
                    }
                    share[jl] = e / n as f64;
                    i_vec[jl] = trace.total[at];
                    r_prev[jl] = if t > 0 {
                        trace.rates[dims.at(b, t - 1, j)]
                    } else {
                        0.0
                    };
                    jj[jl] = 0.0;
                }
                // a_t[i] = (1 − λ_i) a_{t+1}[i] + e / n;  ∂L/∂α_i += a_t[i] I_t;
                // ∂L/∂β_i += a_t[i] r_{t−1};  J_t = Σ_i α_i a_t[i] (filter order, as before)
                for i in 0..n {
                    let d = nrn.decay[i];
                    let ai = &mut a[(bl * n + i) * width..(bl * n + i + 1) * width];
                    let al = &alpha_t[i * width..(i + 1) * width];
                    let ga = &mut g_alpha[i * width..(i + 1) * width];
                    let gb = &mut g_beta[i * width..(i + 1) * width];
                    if all_valid {
                        let inputs = share.iter().zip(&i_vec).zip(&r_prev).zip(al);
                        let outputs = ai
                            .iter_mut()
                            .zip(ga.iter_mut())
                            .zip(gb.iter_mut())
                            .zip(jj.iter_mut());
                        for ((((a, ga), gb), jj), (((s, x), rp), al)) in outputs.zip(inputs) {
                            *a = d * *a + s;
                            *ga += *a * x;
                            *gb += *a * rp;
                            *jj += al * *a;
                        }
                    } else {
                        for &jl in &valid_cols {
                            ai[jl] = d * ai[jl] + share[jl];
                            ga[jl] += ai[jl] * i_vec[jl];
                            gb[jl] += ai[jl] * r_prev[jl];
                            jj[jl] += al[jl] * ai[jl];
                        }
                    }
                }
                for jl in 0..width {
                    let j = cols.start + jl;
                    let value = if all_valid || valid(jl) { jj[jl] } else { 0.0 };
                    if all_valid || valid(jl) {
                        g.current[(bl * dims.time + t) * width + jl] = value;
                    }
                    j_cur[bl * nn + j] = value;
                }
            }
            std::mem::swap(&mut j_next, &mut j_cur);
        }
        for jl in 0..width {
            for i in 0..n {
                g.alpha[jl * n + i] = g_alpha[i * width + jl];
                g.beta[jl * n + i] = g_beta[i * width + jl];
            }
        }
        (rows, cols, g)
    });
    if let [(rows, cols, _)] = parts.as_slice()
        && *rows == (0..dims.batch)
        && *cols == (0..dims.neurons)
    {
        return parts.into_iter().next().expect("one part").2;
    }
    let mut out = HostGrads {
        current: vec![0.0; dims.len()],
        alpha: vec![0.0; nn * n],
        beta: vec![0.0; nn * n],
        coeffs: vec![0.0; nn * kk],
        threshold: vec![0.0; nn],
    };
    for (rows, cols, part) in parts {
        let width = cols.len();
        for (bl, b) in rows.enumerate() {
            for t in 0..dims.time {
                let src = (bl * dims.time + t) * width;
                let dst = dims.at(b, t, cols.start);
                out.current[dst..dst + width].copy_from_slice(&part.current[src..src + width]);
            }
        }
        let add = |dst: &mut [f64], src: &[f64], per: usize| {
            for (d, s) in dst[cols.start * per..cols.end * per].iter_mut().zip(src) {
                *d += s;
            }
        };
        add(&mut out.alpha, &part.alpha, n);
        add(&mut out.beta, &part.beta, n);
        add(&mut out.coeffs, &part.coeffs, kk);
        add(&mut out.threshold, &part.threshold, 1);
    }
    out
}

/// C ← A B + β C for row-major C `[m, n]` (row stride `ldc`), with A `[m, k]` and B `[k, n]`
/// given as (slice, row stride, column stride).
fn gemm(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (&[f64], usize, usize),
    (b, rsb, csb): (&[f64], usize, usize),
    beta: f64,
    (c, ldc): (&mut [f64], usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(
        k == 0 || a.len() > last(m, k, rsa, csa),
        "gemm: A too short"
    );
    assert!(
        k == 0 || b.len() > last(k, n, rsb, csb),
        "gemm: B too short"
    );
    assert!(c.len() > last(m, n, ldc, 1), "gemm: C too short");
    // SAFETY: the asserts above keep every index matrixmultiply touches inside the slices.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            ldc as isize,
            1,
        );
    }
}
