//! Explained variance ratio (spec §3).

/// Population variance.
fn var(x: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = x.clone().count() as f64;
    let mean = x.clone().sum::<f64>() / n;
    x.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
}

/// EV(x, y) = (Var x + Var y − Var(x − y)) / (Var x + Var y); NaN when both are constant.
pub fn explained_variance(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let vx = var(x.iter().copied());
    let vy = var(y.iter().copied());
    let vd = var(x.iter().zip(y).map(|(a, b)| a - b));
    if vx + vy == 0.0 {
        f64::NAN
    } else {
        (vx + vy - vd) / (vx + vy)
    }
}

/// EVR = mean_j EV(R_j, P) / mean_j EV(R_j, mean_k R_k) for repeats R and prediction P.
/// Traces are cut to the shortest.
pub fn explained_variance_ratio(repeats: &[&[f64]], prediction: &[f64]) -> f64 {
    if repeats.is_empty() {
        return f64::NAN;
    }
    let n = repeats
        .iter()
        .map(|r| r.len())
        .min()
        .unwrap()
        .min(prediction.len());
    let psth: Vec<f64> = (0..n)
        .map(|t| repeats.iter().map(|r| r[t]).sum::<f64>() / repeats.len() as f64)
        .collect();
    let m = repeats.len() as f64;
    let ev_model = repeats
        .iter()
        .map(|r| explained_variance(&r[..n], &prediction[..n]))
        .sum::<f64>()
        / m;
    let ev_data = repeats
        .iter()
        .map(|r| explained_variance(&r[..n], &psth))
        .sum::<f64>()
        / m;
    ev_model / ev_data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ev_matches_a_hand_computation() {
        // x = [0, 2], y = [1, 1]: Var x = 1, Var y = 0, Var(x − y) = 1 → EV = 0
        assert_eq!(explained_variance(&[0.0, 2.0], &[1.0, 1.0]), 0.0);
        // identical → 1
        assert_eq!(explained_variance(&[0.0, 2.0, 1.0], &[0.0, 2.0, 1.0]), 1.0);
        // x = [1, 3], y = [2, 2]+[−1, 1]·2: EV = 2 Cov / (Var x + Var y) = 2·2/(1+4) = 0.8
        assert!((explained_variance(&[1.0, 3.0], &[0.0, 4.0]) - 0.8).abs() < 1e-12);
        assert!(explained_variance(&[1.0, 1.0], &[2.0, 2.0]).is_nan());
    }

    #[test]
    fn evr_of_the_psth_itself_exceeds_one_and_of_noise_is_small() {
        let r1 = [0.0, 1.0, 0.0, 2.0, 0.0, 1.0];
        let r2 = [0.0, 2.0, 0.0, 1.0, 1.0, 1.0];
        let psth: Vec<f64> = r1.iter().zip(&r2).map(|(a, b)| (a + b) / 2.0).collect();
        assert!((explained_variance_ratio(&[&r1, &r2], &psth) - 1.0).abs() < 1e-12);
        let flat_ish = [0.5, 0.4, 0.6, 0.5, 0.5, 0.4];
        assert!(explained_variance_ratio(&[&r1, &r2], &flat_ish) < 0.3);
    }
}
