//! Small statistics for noisy measurements: medians, spreads and ratios.

use std::time::Duration;

/// The median of `values` (the mean of the two middle ones for an even count); `None`
/// when empty. NaNs sort last.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// [`median`] of durations, in milliseconds.
pub fn median_ms(values: &[Duration]) -> Option<f64> {
    let ms: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    median(&ms)
}

/// Smallest and largest value (`None` when empty).
pub fn range(values: &[f64]) -> Option<(f64, f64)> {
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    Some((min, max))
}

/// `a / b` with three decimals, or `n/a` when `b` is not positive.
pub fn ratio_text(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() {
        format!("{:.3}", a / b)
    } else {
        "n/a".into()
    }
}

/// Bytes as MiB with two decimals (keeps the sign).
pub fn mib(bytes: f64) -> String {
    format!("{:.2}", bytes / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[1.0, f64::NAN, 2.0]), Some(2.0));
        let d = [
            Duration::from_millis(30),
            Duration::from_millis(10),
            Duration::from_millis(20),
        ];
        assert_eq!(median_ms(&d), Some(20.0));
    }

    #[test]
    fn ranges_and_ratios() {
        assert_eq!(range(&[2.0, -1.0, 5.0]), Some((-1.0, 5.0)));
        assert_eq!(range(&[]), None);
        assert_eq!(ratio_text(1.0, 3.0), "0.333");
        assert_eq!(ratio_text(1.0, 0.0), "n/a");
        assert_eq!(mib(3.0 * 1024.0 * 1024.0), "3.00");
        assert_eq!(mib(-512.0 * 1024.0), "-0.50");
    }
}
