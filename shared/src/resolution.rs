//! "The same value at the point's resolution": the one rule the edge (did the PLC take the
//! write?) and the cloud (did the device apply the desired setting?) both use, so a value
//! can never count as applied on one side and fail verification on the other.

/// Relative tolerance for a point without a usable resolution: two numbers match when they
/// differ by less than this fraction of the larger magnitude (absolutely, below 1.0).
///
/// An f32 register holds about 7 significant digits (relative step 2⁻²⁴ ≈ 6·10⁻⁸), so 7.3
/// written to one reads back as 7.300000190734863; one millionth leaves room for that and
/// for the point's scale and offset arithmetic.
pub const DEFAULT_RELATIVE_TOLERANCE: f64 = 1e-6;

/// A resolution that can be used as a step: finite and positive.
pub fn usable_resolution(resolution: Option<f64>) -> Option<f64> {
    resolution.filter(|r| r.is_finite() && *r > 0.0)
}

/// Do `a` and `b` hold the same value at `resolution`?
///
/// With a usable resolution (finite, positive) they match when `|a − b| < resolution / 2`
/// (resolution 0.1: 7.04 matches 7.0, 7.06 does not). Without one they match within
/// [`DEFAULT_RELATIVE_TOLERANCE`] of the larger magnitude (or of 1.0). Never float `==`.
///
/// ```
/// use shiki_shared::resolution::same_number;
///
/// assert!(same_number(7.04, 7.0, Some(0.1)));
/// assert!(!same_number(7.06, 7.0, Some(0.1)));
/// // An f32 register without a resolution: 7.3 reads back as 7.300000190734863.
/// assert!(same_number(7.3, f64::from(7.3_f32), None));
/// assert!(!same_number(7.3, 7.31, None));
/// ```
pub fn same_number(a: f64, b: f64, resolution: Option<f64>) -> bool {
    let diff = (a - b).abs();
    match usable_resolution(resolution) {
        Some(r) => diff < r / 2.0,
        None => diff < DEFAULT_RELATIVE_TOLERANCE * a.abs().max(b.abs()).max(1.0),
    }
}

/// Decimal digits a step needs (0.1 → 1, 0.25 → 2, 5 → 0), at most 9.
pub fn decimals(resolution: f64) -> u32 {
    let mut scaled = resolution.abs();
    for d in 0..9 {
        if (scaled - scaled.round()).abs() < 1e-9 * scaled.max(1.0) {
            return d;
        }
        scaled *= 10.0;
    }
    9
}

/// `value` at its point's resolution: the nearest multiple of `resolution`, written with
/// no more decimals than the step has, so that it prints as a person would write it
/// (scale 0.1 and raw 244 give 24.4, not `24.400000000000002`). Without a usable
/// resolution, or for a value that is not finite, `value` is returned unchanged.
///
/// ```
/// use shiki_shared::resolution::round_to;
///
/// assert_eq!(round_to(244.0 * 0.1, Some(0.1)).to_string(), "24.4");
/// assert_eq!(round_to(20.26, Some(0.5)), 20.5);
/// assert_eq!(round_to(7.3, None), 7.3);
/// ```
pub fn round_to(value: f64, resolution: Option<f64>) -> f64 {
    let Some(r) = usable_resolution(resolution) else {
        return value;
    };
    if !value.is_finite() {
        return value;
    }
    let steps = (value / r).round();
    let rounded = steps * r;
    if !rounded.is_finite() {
        // A step so small that `value / r` overflows (a subnormal resolution): there is no
        // coarser grid to snap to, and the value must not become infinite.
        return value;
    }
    let digits = decimals(r) as usize;
    // The shortest decimal text of the multiple, read back: drops the float noise of
    // `steps * r` (74 × 0.1 = 7.4000000000000004).
    format!("{rounded:.digits$}").parse().unwrap_or(rounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_step_either_way_matches_and_more_does_not() {
        assert!(same_number(20.0, 20.24, Some(0.5)));
        assert!(same_number(20.0, 19.76, Some(0.5)));
        assert!(!same_number(20.0, 20.25, Some(0.5)));
        assert!(!same_number(20.0, 19.75, Some(0.5)));
    }

    #[test]
    fn an_unusable_resolution_falls_back_to_the_relative_tolerance() {
        for r in [
            None,
            Some(0.0),
            Some(-1.0),
            Some(f64::NAN),
            Some(f64::INFINITY),
        ] {
            assert!(same_number(0.1 + 0.2, 0.3, r), "{r:?}");
            assert!(!same_number(1.0, 1.001, r), "{r:?}");
        }
    }

    #[test]
    fn every_f32_round_trip_matches_without_a_resolution() {
        for v in [7.3, -12.7, 0.1, 1234.567, 99_999.99, 1e-3, 5.5e6] {
            let read_back = f64::from(v as f32);
            assert!(same_number(v, read_back, None), "{v} vs {read_back}");
        }
    }

    #[test]
    fn small_values_compare_absolutely() {
        assert!(same_number(0.0, 5e-7, None));
        assert!(!same_number(0.0, 2e-6, None));
    }

    #[test]
    fn rounding_gives_the_shortest_text_of_the_step() {
        for (v, r, text) in [
            (244.0 * 0.1, 0.1, "24.4"),
            (74.0 * 0.1, 0.1, "7.4"),
            (-12.34, 0.1, "-12.3"),
            (1234.5678, 0.01, "1234.57"),
            (18.6, 1.0, "19"),
            (20.26, 0.5, "20.5"),
            (20.24, 0.25, "20.25"),
            (0.0, 0.1, "0"),
        ] {
            assert_eq!(round_to(v, Some(r)).to_string(), text, "{v} at {r}");
            assert!(same_number(round_to(v, Some(r)), v, Some(r)));
        }
        assert_eq!(round_to(7.300000190734863, None), 7.300000190734863);
        assert!(round_to(f64::NAN, Some(0.1)).is_nan());
    }

    /// Found by the `register_map` fuzz target: with a subnormal resolution `value / r`
    /// overflows, and rounding made a finite reading infinite (which JSON cannot carry).
    #[test]
    fn a_subnormal_resolution_never_makes_a_finite_value_infinite() {
        for (v, r) in [
            (-7.343562278240081e211, 2.9839e-319),
            (1.0, 1e-310),
            (f64::MAX, 0.5),
        ] {
            let rounded = round_to(v, Some(r));
            assert!(rounded.is_finite(), "{v} at {r} rounds to {rounded}");
            assert!(
                same_number(rounded, v, None),
                "{v} at {r} rounds to {rounded}"
            );
        }
    }
}
