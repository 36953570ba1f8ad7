//! Turns overlapping (addresses x port range) rectangles of one protocol into disjoint
//! boxes, the form a concatenated interval set (pipapo) accepts: the kernel refuses
//! elements that overlap.
//!
//! Port space is cut at every rectangle edge; each elementary port segment gets the union
//! of the address intervals of the rectangles covering it; neighbouring segments with the
//! same addresses are joined again.

use crate::addr::Intervals;

/// One output box: address intervals and an inclusive port range.
pub type Box = (Intervals, u16, u16);

/// The disjoint boxes of `rects` outside `minus`, or `None` once their address ranges
/// would be more than `limit` (the caller then takes another form: see `np_elements`).
pub fn disjoint(
    rects: &[(&Intervals, u16, u16)],
    minus: &Intervals,
    limit: usize,
) -> Option<Vec<Box>> {
    let mut cuts: Vec<u32> = Vec::with_capacity(rects.len() * 2);
    for &(_, lo, hi) in rects {
        cuts.push(lo as u32);
        cuts.push(hi as u32 + 1);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut out: Vec<Box> = Vec::new();
    let mut ranges_out = 0usize;
    for w in cuts.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let mut ranges = Vec::new();
        for &(addrs, rlo, rhi) in rects {
            if rlo as u32 <= lo && hi <= rhi as u32 {
                ranges.extend_from_slice(addrs.ranges());
            }
        }
        let union = Intervals::from_ranges(ranges).subtract(minus);
        if union.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.2 as u32 + 1 == lo && last.0 == union => last.2 = hi as u16,
            _ => {
                ranges_out += union.ranges().len();
                if ranges_out > limit {
                    return None;
                }
                out.push((union, lo as u16, hi as u16))
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(r: &[(u128, u128)]) -> Intervals {
        Intervals::from_ranges(r.to_vec())
    }

    #[test]
    fn overlapping_rectangles_become_disjoint() {
        let a = iv(&[(10, 20)]);
        let b = iv(&[(15, 30)]);
        let out = disjoint(&[(&a, 80, 80), (&b, 80, 90)], &Intervals::new(), usize::MAX).unwrap();
        assert_eq!(
            out,
            vec![(iv(&[(10, 30)]), 80, 80), (iv(&[(15, 30)]), 81, 90)]
        );
    }

    #[test]
    fn equal_neighbours_join_and_minus_is_removed() {
        let a = iv(&[(1, 5)]);
        let out = disjoint(
            &[(&a, 1, 10), (&a, 11, 20), (&a, 0, 65535)],
            &iv(&[(5, 5)]),
            usize::MAX,
        )
        .unwrap();
        assert_eq!(out, vec![(iv(&[(1, 4)]), 0, 65535)]);
    }

    #[test]
    fn gives_up_past_the_limit() {
        let a = iv(&[(1, 1), (3, 3), (5, 5)]);
        let rects: Vec<_> = (0..10u16).map(|p| (&a, 2 * p, 2 * p)).collect();
        assert_eq!(disjoint(&rects, &Intervals::new(), 30).unwrap().len(), 10);
        assert_eq!(disjoint(&rects, &Intervals::new(), 29), None);
    }
}
