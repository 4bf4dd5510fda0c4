//! The scan on the host: forward and backward (BPTT) over `f64` or `f32` buffers ([`Real`]),
//! split over the cores.
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

use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Range, Sub, SubAssign};

/// The float type of a host scan: `f64` (the fitter) or `f32` (the network). Generic code
/// spells out every operation, so that the `f64` instance is the plain `f64` scan.
pub trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + std::fmt::Debug
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Whether [`Real::tanh`] is cheap and branch-free enough to run for every neuron of a
    /// row at once (vectorised), silent ones included: f32's [`fast_tanh`] is; f64's libm
    /// tanh is not, so the f64 scan skips it for silent neurons instead.
    const VECTOR_TANH: bool;
    /// `x as Self`.
    fn from_f64(x: f64) -> Self;
    /// `x as Self`.
    fn from_f32(x: f32) -> Self;
    /// `self as f64`.
    fn to_f64(self) -> f64;
    /// `self as f32`.
    fn to_f32(self) -> f32;
    /// `n as Self`.
    fn from_usize(n: usize) -> Self;
    /// tanh: `f64::tanh`, or [`fast_tanh`] for `f32`.
    fn tanh(self) -> Self;
    /// matrixmultiply's `dgemm` / `sgemm`: C ← α A B + β C with strides in elements.
    ///
    /// # Safety
    /// As for `matrixmultiply::dgemm`: every index the strides reach must lie inside the
    /// buffers.
    unsafe fn gemm_raw(
        mkn: (usize, usize, usize),
        alpha: Self,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        beta: Self,
        c: (*mut Self, isize, isize),
    );
}

macro_rules! real {
    ($t:ty, $gemm:ident, $tanh:path, $vector_tanh:expr) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const VECTOR_TANH: bool = $vector_tanh;
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn from_f32(x: f32) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline]
            fn from_usize(n: usize) -> Self {
                n as $t
            }
            #[inline]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            unsafe fn gemm_raw(
                (m, k, n): (usize, usize, usize),
                alpha: Self,
                (a, rsa, csa): (*const Self, isize, isize),
                (b, rsb, csb): (*const Self, isize, isize),
                beta: Self,
                (c, rsc, csc): (*mut Self, isize, isize),
            ) {
                // SAFETY: the caller's contract is matrixmultiply's.
                unsafe {
                    matrixmultiply::$gemm(
                        m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
                    )
                }
            }
        }
    };
}

real!(f64, dgemm, f64::tanh, false);
real!(f32, sgemm, fast_tanh, true);

/// tanh in single precision as a rational function (Eigen's `generic_fast_tanh_float`: the
/// odd polynomial of degree 13 over the even one of degree 6, inputs clamped to ±7.9053):
/// within 5e-7 of tanh, several times faster than glibc's `tanhf` (which goes through
/// `expm1f`). The f64 scan keeps `f64::tanh`.
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_672e-11,
        2.000_188e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347_1e-4, 1.198_258_4e-6];
    if x.abs() < 4e-4 {
        return x;
    }
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = A[6];
    for &a in A[..6].iter().rev() {
        p = p * x2 + a;
    }
    let q = ((B[3] * x2 + B[2]) * x2 + B[1]) * x2 + B[0];
    x * p / q
}

/// Neuron parameters of a scan, one row per neuron (N neurons, n filters, K coefficients).
#[derive(Clone, Copy, Debug)]
pub struct HostNeurons<'a, T = f64> {
    /// α, `[N, n]`.
    pub alpha: &'a [T],
    /// Effective rate-history weights (h += β r), `[N, n]`.
    pub beta: &'a [T],
    /// 1 − λ, `[n]`.
    pub decay: &'a [T],
    /// c, `[N, K]`.
    pub coeffs: &'a [T],
    /// b (pA), σ (pA), γ (ms⁻¹), `[N]` each.
    pub threshold: &'a [T],
    /// σ (pA), `[N]`.
    pub max_current: &'a [T],
    /// γ (ms⁻¹), `[N]`.
    pub max_rate: &'a [T],
}

impl<T> HostNeurons<'_, T> {
    /// Number of neurons N.
    pub fn n_neurons(&self) -> usize {
        self.threshold.len()
    }
    /// Number of filters per neuron n.
    pub fn n_filters(&self) -> usize {
        self.decay.len()
    }
    /// Polynomial coefficients per neuron K (d + 1).
    pub fn n_coeffs(&self) -> usize {
        self.coeffs.len() / self.n_neurons().max(1)
    }
}

/// Shape of a scan: batch, time bins, neurons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Sequences B.
    pub batch: usize,
    /// Time bins T.
    pub time: usize,
    /// Neurons N.
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
pub struct Trace<T = f64> {
    /// r_t (ms⁻¹).
    pub rates: Vec<T>,
    /// `u_t = mean_i h_t[i]`, the activation's input (pA).
    pub act_in: Vec<T>,
    /// I_t, the total input current (pA).
    pub total: Vec<T>,
    /// ∂r/∂z = γ (1 − tanh² z) where the neuron fires, else 0.
    pub slope: Vec<T>,
}

/// A [`Trace`] borrowed (the backward pass reads it in place).
#[derive(Clone, Copy, Debug)]
pub struct TraceView<'a, T> {
    /// r_t (ms⁻¹), `[B, T, N]`.
    pub rates: &'a [T],
    /// u_t, the activation's input (pA), `[B, T, N]`.
    pub act_in: &'a [T],
    /// I_t, the total input current (pA), `[B, T, N]`.
    pub total: &'a [T],
    /// ∂r/∂z, `[B, T, N]`.
    pub slope: &'a [T],
}

impl<T> Trace<T> {
    /// The trace borrowed.
    pub fn view(&self) -> TraceView<'_, T> {
        TraceView {
            rates: &self.rates,
            act_in: &self.act_in,
            total: &self.total,
            slope: &self.slope,
        }
    }
}

/// Gradients of a scan.
#[derive(Clone, Debug, Default)]
pub struct HostGrads<T = f64> {
    /// ∂L/∂P, `[B, T, N]`.
    pub current: Vec<T>,
    /// ∂L/∂α, `[N, n]`.
    pub alpha: Vec<T>,
    /// ∂L/∂β (the effective weights of [`HostNeurons::beta`]), `[N, n]`.
    pub beta: Vec<T>,
    /// ∂L/∂c, `[N, K]`.
    pub coeffs: Vec<T>,
    /// ∂L/∂b, `[N]`.
    pub threshold: Vec<T>,
}

/// v = (u − b)/σ of neuron j.
#[inline]
fn scaled_input<T: Real>(nrn: &HostNeurons<T>, j: usize, u: T) -> T {
    (u - nrn.threshold[j]) / nrn.max_current[j]
}

/// The rate g(u) of neuron j and its slope ∂r/∂z = γ (1 − tanh² z) (both 0 where the
/// rectifier is off).
#[inline]
fn activation<T: Real>(nrn: &HostNeurons<T>, j: usize, u: T) -> (T, T) {
    let k = nrn.n_coeffs();
    let v = scaled_input(nrn, j, u);
    let mut z = T::ZERO;
    let mut pw = T::ONE;
    for &c in &nrn.coeffs[j * k..(j + 1) * k] {
        z += c * c * pw;
        pw *= v;
    }
    // tanh z > 0 exactly where z > 0 (NaN: neither), so a silent neuron costs no tanh
    if !(z > T::ZERO) {
        return (T::ZERO, T::ZERO);
    }
    let th = z.tanh();
    let gamma = nrn.max_rate[j];
    if th > T::ZERO {
        (gamma * th, gamma * (T::ONE - th * th))
    } else {
        (T::ZERO, T::ZERO)
    }
}

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests: keep every row on the neuron-by-neuron path.
    static SCALAR_ROWS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a row whose sequences are all valid may take the vectorised activation path.
fn vector_rows<T: Real>() -> bool {
    T::VECTOR_TANH && !SCALAR_ROWS.with(|s| s.get())
}

/// Runs `f` with the scans of this thread kept on this thread: for callers that already
/// split their work over the cores (the network's data-parallel mini-batches).
pub(crate) fn serial<T>(f: impl FnOnce() -> T) -> T {
    let before = SERIAL.with(|s| s.replace(true));
    let out = f();
    SERIAL.with(|s| s.set(before));
    out
}

/// The task functions below are also compiled for AVX2 (`*_avx2`), used where the CPU has it
/// (x86-64, checked once at run time). Only the vector width changes: every element sees the
/// same operations in the same order (no fused multiply-add), so the results are bit for bit
/// the same either way.
/// Whether this CPU has AVX2.
#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx2"))
}

/// Work split: batch rows and a neuron range per task. With a recurrent weight the neurons of
/// a row are coupled, so tasks split rows only.
fn tasks(dims: Dims, recurrent: bool) -> Vec<(Range<usize>, Range<usize>)> {
    let workers = if SERIAL.with(|s| s.get()) {
        1
    } else {
        crate::parallel::cores()
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
fn transposed<T: Real>(table: &[T], neurons: usize, n: usize, cols: &Range<usize>) -> Vec<T> {
    debug_assert_eq!(table.len(), neurons * n);
    let width = cols.len();
    let mut out = vec![T::ZERO; n * width];
    for (jl, j) in cols.clone().enumerate() {
        for i in 0..n {
            out[i * width + jl] = table[j * n + i];
        }
    }
    out
}

/// Forward pass over `current` (P, `[B, T, N]`); `lengths`: valid bins per sequence `[B, N]`
/// (later bins keep rate 0); `recurrent`: W, `[N, N]`.
pub fn forward<T: Real>(
    nrn: &HostNeurons<T>,
    current: &[T],
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[T]>,
) -> Trace<T> {
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
    let parts = run_tasks(&tasks(dims, recurrent.is_some()), |rows, cols| {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time)
            let out =
                unsafe { forward_task_avx2(nrn, current, dims, lengths, recurrent, &rows, &cols) };
            return (rows, cols, out);
        }
        let out = forward_task(nrn, current, dims, lengths, recurrent, &rows, &cols);
        (rows, cols, out)
    });
    // one task covers every row and neuron (`tasks` splits into several or none)
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part").2;
    }
    let mut trace = Trace {
        rates: vec![T::ZERO; dims.len()],
        act_in: vec![T::ZERO; dims.len()],
        total: vec![T::ZERO; dims.len()],
        slope: vec![T::ZERO; dims.len()],
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
pub fn backward<T: Real>(
    nrn: &HostNeurons<T>,
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[T]>,
    trace: &Trace<T>,
    grad_rates: &[T],
) -> HostGrads<T> {
    backward_view(nrn, dims, lengths, recurrent, trace.view(), grad_rates)
}

/// [`backward`] from a borrowed trace.
pub fn backward_view<T: Real>(
    nrn: &HostNeurons<T>,
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[T]>,
    trace: TraceView<'_, T>,
    grad_rates: &[T],
) -> HostGrads<T> {
    assert_eq!(grad_rates.len(), dims.len(), "∂L/∂r has the wrong size");
    let (n, kk, nn) = (nrn.n_filters(), nrn.n_coeffs(), dims.neurons);
    let parts = run_tasks(&tasks(dims, recurrent.is_some()), |rows, cols| {
        #[cfg(target_arch = "x86_64")]
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time)
            let g = unsafe {
                backward_task_avx2(
                    nrn, dims, lengths, recurrent, trace, grad_rates, &rows, &cols,
                )
            };
            return (rows, cols, g);
        }
        let g = backward_task(
            nrn, dims, lengths, recurrent, trace, grad_rates, &rows, &cols,
        );
        (rows, cols, g)
    });
    // one task covers every row and neuron (`tasks` splits into several or none)
    if parts.len() == 1 {
        return parts.into_iter().next().expect("one part").2;
    }
    let mut out = HostGrads {
        current: vec![T::ZERO; dims.len()],
        alpha: vec![T::ZERO; nn * n],
        beta: vec![T::ZERO; nn * n],
        coeffs: vec![T::ZERO; nn * kk],
        threshold: vec![T::ZERO; nn],
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
        let add = |dst: &mut [T], src: &[T], per: usize| {
            for (d, &s) in dst[cols.start * per..cols.end * per].iter_mut().zip(src) {
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

/// [`forward_task`] compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_task_avx2<T: Real>(
    nrn: &HostNeurons<T>,
    current: &[T],
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[T]>,
    rows: &Range<usize>,
    cols: &Range<usize>,
) -> Trace<T> {
    forward_task(nrn, current, dims, lengths, recurrent, rows, cols)
}

/// [`backward_task`] compiled for AVX2.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_task_avx2<T: Real>(
    nrn: &HostNeurons<T>,
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[T]>,
    trace: TraceView<'_, T>,
    grad_rates: &[T],
    rows: &Range<usize>,
    cols: &Range<usize>,
) -> HostGrads<T> {
    backward_task(nrn, dims, lengths, recurrent, trace, grad_rates, rows, cols)
}

/// One task of [`forward`]: batch rows `rows`, neurons `cols`.
#[inline(always)]
fn forward_task<T: Real>(
    nrn: &HostNeurons<T>,
    current: &[T],
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[T]>,
    rows: &Range<usize>,
    cols: &Range<usize>,
) -> Trace<T> {
    let n = nrn.n_filters();
    let (nb, width, nn) = (rows.len(), cols.len(), dims.neurons);
    let size = nb * dims.time * width;
    let mut out = Trace {
        rates: vec![T::ZERO; size],
        act_in: vec![T::ZERO; size],
        total: vec![T::ZERO; size],
        slope: vec![T::ZERO; size],
    };
    // filter states, filter-major per row so that the neuron loops vectorise: `[nb, n, width]`
    let mut h = vec![T::ZERO; nb * n * width];
    let (alpha_t, beta_t) = (
        transposed(nrn.alpha, nn, n, cols),
        transposed(nrn.beta, nn, n, cols),
    );
    let mut sum = vec![T::ZERO; width];
    // per-neuron activation constants of the task's neurons, and the row's scratch
    let kk = nrn.n_coeffs();
    let coeffs_t = transposed(nrn.coeffs, nn, kk, cols);
    let (thr, sig, gam) = (
        &nrn.threshold[cols.clone()],
        &nrn.max_current[cols.clone()],
        &nrn.max_rate[cols.clone()],
    );
    let (mut v_row, mut z_row, mut pw_row) = (
        vec![T::ZERO; width],
        vec![T::ZERO; width],
        vec![T::ZERO; width],
    );
    // r_{t−1} of every neuron, per row: `[nb, N]`
    let mut r_prev = vec![T::ZERO; nb * nn];
    let mut input = vec![T::ZERO; nb * width];
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
                T::ONE,
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
            sum.fill(T::ZERO);
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
                    for ((h, s), ((&a, &b), (&x, &r))) in
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
            if all_valid && vector_rows::<T>() {
                // the activation of the whole row, pass by pass so that each loop vectorises:
                // the same operations per neuron as `activation`
                let at = base..base + width;
                let u = &mut out.act_in[at.clone()];
                for (u, &s) in u.iter_mut().zip(&sum) {
                    *u = s / T::from_usize(n);
                }
                for (((v, &u), &b), &sigma) in v_row.iter_mut().zip(&*u).zip(thr).zip(sig) {
                    *v = (u - b) / sigma;
                }
                z_row.fill(T::ZERO);
                pw_row.fill(T::ONE);
                for k in 0..kk {
                    let ck = &coeffs_t[k * width..(k + 1) * width];
                    for (((z, pw), &c), &v) in
                        z_row.iter_mut().zip(pw_row.iter_mut()).zip(ck).zip(&v_row)
                    {
                        *z += c * c * *pw;
                        *pw *= v;
                    }
                }
                let (rates, slopes) = (&mut out.rates[at.clone()], &mut out.slope[at.clone()]);
                for (((r, sl), &z), &g) in
                    rates.iter_mut().zip(slopes.iter_mut()).zip(&z_row).zip(gam)
                {
                    // z > 0 exactly where tanh z > 0 (NaN: neither)
                    let on = z > T::ZERO;
                    let th = z.tanh();
                    *r = if on { g * th } else { T::ZERO };
                    *sl = if on { g * (T::ONE - th * th) } else { T::ZERO };
                }
                out.total[at].copy_from_slice(inp);
            } else {
                for (jl, j) in cols.clone().enumerate() {
                    if !valid(jl) {
                        continue;
                    }
                    let i_t = inp[jl];
                    let u = sum[jl] / T::from_usize(n);
                    let (rate, slope) = activation(nrn, j, u);
                    out.rates[base + jl] = rate;
                    out.slope[base + jl] = slope;
                    out.act_in[base + jl] = u;
                    out.total[base + jl] = i_t;
                }
            }
            for (jl, j) in cols.clone().enumerate() {
                r_prev[bl * nn + j] = out.rates[base + jl];
            }
        }
    }
    out
}

/// One task of [`backward`]: batch rows `rows`, neurons `cols`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_task<T: Real>(
    nrn: &HostNeurons<T>,
    dims: Dims,
    lengths: &[usize],
    recurrent: Option<&[T]>,
    trace: TraceView<'_, T>,
    grad_rates: &[T],
    rows: &Range<usize>,
    cols: &Range<usize>,
) -> HostGrads<T> {
    let (n, kk, nn) = (nrn.n_filters(), nrn.n_coeffs(), dims.neurons);
    let (nb, width) = (rows.len(), cols.len());
    let mut g = HostGrads {
        current: vec![T::ZERO; nb * dims.time * width],
        alpha: vec![T::ZERO; width * n],
        beta: vec![T::ZERO; width * n],
        coeffs: vec![T::ZERO; width * kk],
        threshold: vec![T::ZERO; width],
    };
    // adjoint filter states, filter-major per row: `[nb, n, width]`; ∂L/∂α, ∂L/∂β
    // filter-major too (`[n, width]`), transposed at the end
    let mut a = vec![T::ZERO; nb * n * width];
    let (alpha_t, beta_t) = (
        transposed(nrn.alpha, nn, n, cols),
        transposed(nrn.beta, nn, n, cols),
    );
    let (mut g_alpha, mut g_beta) = (vec![T::ZERO; n * width], vec![T::ZERO; n * width]);
    let (mut r_vec, mut share, mut jj) = (
        vec![T::ZERO; width],
        vec![T::ZERO; width],
        vec![T::ZERO; width],
    );
    let (mut i_vec, mut r_prev) = (vec![T::ZERO; width], vec![T::ZERO; width]);
    // ∂L/∂c coefficient-major (`[K, width]`, transposed at the end), the activation's
    // constants of the task's neurons and a row's scratch, for the vectorised row
    let mut g_coeffs = vec![T::ZERO; kk * width];
    let coeffs_t = transposed(nrn.coeffs, nn, kk, cols);
    let (thr, sig) = (&nrn.threshold[cols.clone()], &nrn.max_current[cols.clone()]);
    let (mut rd_row, mut v_row, mut pw_row, mut dz_row) = (
        vec![T::ZERO; width],
        vec![T::ZERO; width],
        vec![T::ZERO; width],
        vec![T::ZERO; width],
    );
    let every_col: Vec<usize> = (0..width).collect();
    // J_{t+1} of every neuron per row, and its recurrent share J_{t+1} Wᵀ (with W only)
    let mut j_next = vec![T::ZERO; nb * nn];
    let mut j_cur = vec![T::ZERO; nb * nn];
    let mut fed_back = vec![T::ZERO; nb * width];
    // Wᵀ of the task's columns, row-major `[N, width]`, laid out once so that the GEMM of every
    // step packs contiguous rows (the same products in the same order as reading W strided)
    let w_t: Option<Vec<T>> = recurrent.map(|w| {
        let mut w_t = vec![T::ZERO; nn * width];
        for (jl, j) in cols.clone().enumerate() {
            for m in 0..nn {
                w_t[m * width + jl] = w[j * nn + m];
            }
        }
        w_t
    });
    for t in (0..dims.time).rev() {
        if let Some(w_t) = &w_t {
            // fed_back[b, j] = Σ_m J_{t+1}[b, m] W[j, m]
            gemm(
                (nb, nn, width),
                (&j_next, nn, 1),
                (w_t, width, 1),
                T::ZERO,
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
                    for ((r, &b), &a) in r_vec.iter_mut().zip(bi).zip(ai) {
                        *r += b * a;
                    }
                } else {
                    for &jl in &valid_cols {
                        r_vec[jl] += bi[jl] * ai[jl];
                    }
                }
            }
            if all_valid && vector_rows::<T>() {
                // the same per neuron, pass by pass so that each loop vectorises; a silent
                // neuron (∂r/∂z = 0) or one without gradient adds exact zeros
                let at = row..row + width;
                for ((rd, &r), &sl) in rd_row.iter_mut().zip(&r_vec).zip(&trace.slope[at.clone()]) {
                    *rd = r * sl;
                }
                let u = &trace.act_in[at.clone()];
                for (((v, &u), &b), &sigma) in v_row.iter_mut().zip(u).zip(thr).zip(sig) {
                    *v = (u - b) / sigma;
                }
                pw_row.fill(T::ONE);
                dz_row.fill(T::ZERO);
                for k in 0..kk {
                    let ck = &coeffs_t[k * width..(k + 1) * width];
                    let gk = &mut g_coeffs[k * width..(k + 1) * width];
                    for (((g, &rd), &c), &pw) in gk.iter_mut().zip(&rd_row).zip(ck).zip(&pw_row) {
                        *g += rd * T::from_f64(2.0) * c * pw;
                    }
                    if k + 1 < kk {
                        let next = &coeffs_t[(k + 1) * width..(k + 2) * width];
                        let kp1 = T::from_usize(k + 1);
                        for ((dz, &c), &pw) in dz_row.iter_mut().zip(next).zip(&pw_row) {
                            *dz += kp1 * c * c * pw;
                        }
                    }
                    for (pw, &v) in pw_row.iter_mut().zip(&v_row) {
                        *pw *= v;
                    }
                }
                let row_e = rd_row.iter().zip(&dz_row).zip(sig);
                for ((th, sh), ((&rd, &dz), &sigma)) in
                    g.threshold.iter_mut().zip(share.iter_mut()).zip(row_e)
                {
                    let e = rd * dz / sigma;
                    *th -= e;
                    *sh = e / T::from_usize(n);
                }
                i_vec.copy_from_slice(&trace.total[at]);
                if t > 0 {
                    let prev = dims.at(b, t - 1, cols.start);
                    r_prev.copy_from_slice(&trace.rates[prev..prev + width]);
                } else {
                    r_prev.fill(T::ZERO);
                }
                jj.fill(T::ZERO);
            } else {
                for &jl in live {
                    let j = cols.start + jl;
                    let at = row + jl;
                    let r = r_vec[jl];
                    let mut e = T::ZERO;
                    let dr_dz = if r != T::ZERO {
                        trace.slope[at]
                    } else {
                        T::ZERO
                    };
                    if dr_dz != T::ZERO {
                        let v = scaled_input(nrn, j, trace.act_in[at]);
                        // ∂r/∂v = γ(1 − tanh²) Σ_k k c_k² v^{k−1};  ∂r/∂c_k = γ(1 − tanh²) 2 c_k v^k
                        let c = &nrn.coeffs[j * kk..(j + 1) * kk];
                        let (mut dz_dv, mut pw) = (T::ZERO, T::ONE);
                        for (k, &ck) in c.iter().enumerate() {
                            g_coeffs[k * width + jl] += r * dr_dz * T::from_f64(2.0) * ck * pw;
                            if k + 1 < kk {
                                dz_dv += T::from_usize(k + 1) * c[k + 1] * c[k + 1] * pw;
                            }
                            pw *= v;
                        }
                        e = r * dr_dz * dz_dv / nrn.max_current[j];
                        g.threshold[jl] -= e;
                    }
                    share[jl] = e / T::from_usize(n);
                    i_vec[jl] = trace.total[at];
                    r_prev[jl] = if t > 0 {
                        trace.rates[dims.at(b, t - 1, j)]
                    } else {
                        T::ZERO
                    };
                    jj[jl] = T::ZERO;
                }
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
                    for ((((a, ga), gb), jj), (((&s, &x), &rp), &al)) in outputs.zip(inputs) {
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
                let value = if all_valid || valid(jl) {
                    jj[jl]
                } else {
                    T::ZERO
                };
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
        for k in 0..kk {
            g.coeffs[jl * kk + k] = g_coeffs[k * width + jl];
        }
    }
    g
}

/// ∂L/∂W `[N, N]` of the recurrence I_t = P_t + r_{t−1} W: Σ_b Σ_{t ≥ 1} r_{b,t−1}ᵀ J_{b,t}
/// with J = ∂L/∂P, both `[B, T, N]`; read in place (one GEMM per sequence, no copies).
pub fn recurrent_weight_grad<T: Real>(dims: Dims, rates: &[T], grad_current: &[T]) -> Vec<T> {
    let (nn, time) = (dims.neurons, dims.time);
    assert!(rates.len() == dims.len() && grad_current.len() == dims.len());
    let mut dw = vec![T::ZERO; nn * nn];
    if time < 2 {
        return dw;
    }
    for b in 0..dims.batch {
        let first = b * time * nn;
        gemm(
            (nn, time - 1, nn),
            // A[i, t] = r[b, t, i]
            (&rates[first..], 1, nn),
            // B[t, j] = J[b, t + 1, j]
            (&grad_current[first + nn..], nn, 1),
            if b == 0 { T::ZERO } else { T::ONE },
            (&mut dw, nn),
        );
    }
    dw
}

/// C ← A B + β C for row-major C `[m, n]` (row stride `ldc`), with A `[m, k]` and B `[k, n]`
/// given as (slice, row stride, column stride).
fn gemm<T: Real>(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (&[T], usize, usize),
    (b, rsb, csb): (&[T], usize, usize),
    beta: T,
    (c, ldc): (&mut [T], usize),
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
        T::gemm_raw(
            (m, k, n),
            T::ONE,
            (a.as_ptr(), rsa as isize, csa as isize),
            (b.as_ptr(), rsb as isize, csb as isize),
            beta,
            (c.as_mut_ptr(), ldc as isize, 1),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// ∂L/∂W sums r_{b,t−1}ᵀ J_{b,t} within each sequence and over sequences, never across
    /// a sequence boundary; one bin gives no gradient.
    #[test]
    fn recurrent_weight_grad_sums_within_sequences() {
        let mut rng = StdRng::seed_from_u64(5);
        for (batch, time, nn) in [(3, 5, 4), (2, 1, 3), (1, 7, 6)] {
            let dims = Dims {
                batch,
                time,
                neurons: nn,
            };
            let r: Vec<f64> = (0..dims.len())
                .map(|_| rng.random_range(0.0..1.0))
                .collect();
            let j: Vec<f64> = (0..dims.len())
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let dw = recurrent_weight_grad(dims, &r, &j);
            for a in 0..nn {
                for c in 0..nn {
                    let mut want = 0.0;
                    for b in 0..batch {
                        for t in 1..time {
                            want += r[dims.at(b, t - 1, a)] * j[dims.at(b, t, c)];
                        }
                    }
                    assert!(
                        (dw[a * nn + c] - want).abs() < 1e-12,
                        "{batch} {time} {a} {c}"
                    );
                }
            }
        }
    }

    /// The vectorised rows (f32) give every rate and gradient of the neuron-by-neuron path,
    /// bit for bit, with a recurrent weight, degree 2 and neurons that are silent at times.
    #[test]
    fn vectorised_rows_equal_the_neuron_by_neuron_path() {
        let mut rng = StdRng::seed_from_u64(3);
        let (nb, time, nn, n, kk) = (3, 9, 13, 4, 3);
        let dims = Dims {
            batch: nb,
            time,
            neurons: nn,
        };
        let mut draw = |len: usize, lo: f32, hi: f32| -> Vec<f32> {
            (0..len).map(|_| rng.random_range(lo..hi)).collect()
        };
        let (alpha, beta, coeffs) = (
            draw(nn * n, -1.0, 2.0),
            draw(nn * n, -0.5, 0.5),
            draw(nn * kk, -1.0, 1.0),
        );
        let (threshold, max_current, max_rate) =
            (draw(nn, -0.5, 0.5), draw(nn, 0.5, 2.0), draw(nn, 0.1, 1.0));
        let decay = draw(n, 0.1, 0.99);
        let (current, w, grad_rates) = (
            draw(dims.len(), -1.5, 1.5),
            draw(nn * nn, -0.3, 0.3),
            draw(dims.len(), -1.0, 1.0),
        );
        let nrn = HostNeurons {
            alpha: &alpha,
            beta: &beta,
            decay: &decay,
            coeffs: &coeffs,
            threshold: &threshold,
            max_current: &max_current,
            max_rate: &max_rate,
        };
        let lengths = vec![time; nb * nn];
        let run = || {
            let trace = forward(&nrn, &current, dims, &lengths, Some(&w));
            let grads = backward(&nrn, dims, &lengths, Some(&w), &trace, &grad_rates);
            (trace, grads)
        };
        let (vector, vector_grads) = run();
        SCALAR_ROWS.with(|s| s.set(true));
        let (scalar, scalar_grads) = run();
        SCALAR_ROWS.with(|s| s.set(false));
        let silent = vector.rates.iter().filter(|&&r| r == 0.0).count();
        assert!(silent > 0 && silent < vector.rates.len(), "{silent} silent");
        assert_eq!(vector.rates, scalar.rates);
        assert_eq!(vector.slope, scalar.slope);
        assert_eq!(vector.act_in, scalar.act_in);
        assert_eq!(vector.total, scalar.total);
        assert_eq!(vector_grads.current, scalar_grads.current);
        assert_eq!(vector_grads.alpha, scalar_grads.alpha);
        assert_eq!(vector_grads.beta, scalar_grads.beta);
        assert_eq!(vector_grads.coeffs, scalar_grads.coeffs);
        assert_eq!(vector_grads.threshold, scalar_grads.threshold);
    }

    #[test]
    fn fast_tanh_is_within_5e7_of_tanh() {
        let (mut worst, mut at) = (0.0f64, 0.0);
        for k in -200_000..=200_000 {
            let x = k as f32 * 1e-4; // −20 … 20
            let err = (super::fast_tanh(x) as f64 - (x as f64).tanh()).abs();
            if err > worst {
                (worst, at) = (err, x);
            }
        }
        // f32 itself resolves 6e-8 near 1
        assert!(worst < 5e-7, "{worst} at {at}");
        assert_eq!(super::fast_tanh(0.0), 0.0);
        assert!(super::fast_tanh(1e-30) > 0.0 && super::fast_tanh(-3.0) < 0.0);
    }
}
