//! Samples, medians, p90s and pairwise ratios.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Median (mean of the two middle values for an even count).
pub fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Nearest-rank percentile (p in 0..=100).
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// A distribution-free ~95% confidence interval of the median: the order statistics at ranks
/// (n ∓ 1.96·√n) / 2 (normal approximation of the binomial; needs at least 10 samples).
pub fn median_ci95(xs: &[f64]) -> Option<(f64, f64)> {
    let n = xs.len();
    if n < 10 {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let half = 1.96 * (n as f64).sqrt();
    let lo = (((n as f64 - half) / 2.0).floor() as usize).max(1);
    let hi = (((n as f64 + half) / 2.0).ceil() as usize + 1).min(n);
    Some((v[lo - 1], v[hi - 1]))
}

fn pairwise(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Option<Vec<f64>> {
    (a.len() == b.len() && !a.is_empty()).then(|| a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect())
}

/// Median of a[i] / b[i]: each pair was measured back to back in the same round, so slow
/// phases of the machine hit both sides of a ratio.
pub fn pairwise_ratio(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    median(&r)
}

/// Median of a[i] - b[i].
pub fn pairwise_diff(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    median(&d)
}

/// Samples of one metric, per case, in round order (index i of every case is round i).
#[derive(Default, Debug)]
pub struct Series {
    pub by_case: BTreeMap<String, Vec<f64>>,
    /// Cases in the order they were added (for tables).
    pub order: Vec<String>,
}

impl Series {
    pub fn push(&mut self, case: &str, value: f64) {
        if !self.by_case.contains_key(case) {
            self.order.push(case.to_owned());
        }
        self.by_case.entry(case.to_owned()).or_default().push(value);
    }

    /// Tables list cases in this order (those without samples are left out).
    pub fn reorder(&mut self, names: &[String]) {
        self.order = names
            .iter()
            .filter(|n| self.by_case.contains_key(*n))
            .cloned()
            .collect();
    }

    pub fn get(&self, case: &str) -> Option<&[f64]> {
        self.by_case.get(case).map(Vec::as_slice)
    }

    pub fn median(&self, case: &str) -> Option<f64> {
        self.get(case).and_then(median)
    }

    pub fn p90(&self, case: &str) -> Option<f64> {
        self.get(case).and_then(|v| percentile(v, 90.0))
    }

    pub fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        pairwise_ratio(self.get(a)?, self.get(b)?)
    }

    pub fn diff(&self, a: &str, b: &str) -> Option<f64> {
        pairwise_diff(self.get(a)?, self.get(b)?)
    }

    pub fn median_ci(&self, case: &str) -> Option<(f64, f64)> {
        median_ci95(self.get(case)?)
    }

    pub fn ratio_ci(&self, a: &str, b: &str) -> Option<(f64, f64)> {
        median_ci95(&pairwise(self.get(a)?, self.get(b)?, |x, y| x / y)?)
    }

    pub fn diff_ci(&self, a: &str, b: &str) -> Option<(f64, f64)> {
        median_ci95(&pairwise(self.get(a)?, self.get(b)?, |x, y| x - y)?)
    }

    /// `{case: {"median": …, "p90": …}}`, values rounded to µs.
    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for case in &self.order {
            map.insert(
                case.clone(),
                json!({"median": round3(self.median(case)), "p90": round3(self.p90(case))}),
            );
        }
        Value::Object(map)
    }
}

pub fn round3(x: Option<f64>) -> Value {
    match x {
        Some(v) if v.is_finite() => json!((v * 1000.0).round() / 1000.0),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 90.0), Some(90.0));
        assert_eq!(percentile(&[5.0], 90.0), Some(5.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratios_are_pairwise() {
        // Round 2 was slow for both: the pairwise median is not fooled.
        let a = [10.0, 30.0, 10.0];
        let b = [20.0, 60.0, 20.0];
        assert_eq!(pairwise_ratio(&a, &b), Some(0.5));
        assert_eq!(pairwise_diff(&a, &b), Some(-10.0));
        assert_eq!(pairwise_ratio(&a, &b[..2]), None);
    }

    #[test]
    fn median_ci_brackets_the_median() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let (lo, hi) = median_ci95(&xs).unwrap();
        assert!(lo < 50.5 && hi > 50.5, "{lo} {hi}");
        assert!(
            (38.0..=42.0).contains(&lo) && (59.0..=63.0).contains(&hi),
            "{lo} {hi}"
        );
        assert_eq!(median_ci95(&xs[..5]), None);
    }
}
