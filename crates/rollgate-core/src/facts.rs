//! One meaning per fact: how a status document's fault pointers and progression counters are
//! read, shared by the baseline (probe crate) and the gates (runner, engine) so that the two can
//! never disagree about the same document.
//!
//! - **Faults**: a value at a fault pointer is a fault unless it is absent, `null`, `false`, `""`,
//!   `[]` or `{}` (what status documents use for "no fault").
//! - **Counters**: numbers, decimal strings and `0x` hex strings of any length are compared
//!   exactly as unsigned integers (a 256-bit block number or a counter past 2^64 still
//!   "increases" by one); only fractional or negative values fall back to `f64`.
//! - **Rates** use [`numeric`], an `f64` reading of the same forms: a rate is approximate anyway.

use std::cmp::Ordering;

use serde_json::Value;

/// Longest digit string read as an exact counter; longer values are not counters (bounds the
/// work done on a hostile document).
const MAX_DIGITS: usize = 512;

/// `pointer=value` for every pointer whose value is a fault, in the order of `pointers`.
pub fn faults_in(doc: &Value, pointers: &[String]) -> Vec<String> {
    pointers
        .iter()
        .filter_map(|p| {
            let v = doc.pointer(p)?;
            (!no_fault(v)).then(|| format!("{p}={v}"))
        })
        .collect()
}

/// Whether a value at a fault pointer means "no fault".
pub fn no_fault(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) | Value::Bool(true) => false,
    }
}

/// A counter reading: an exact unsigned integer, or an approximate one (fractional, negative).
#[derive(Debug, Clone, PartialEq)]
pub enum Counter {
    /// Little-endian base-2^32 limbs without high zero limbs (zero is the empty vector).
    Exact(Vec<u32>),
    Approx(f64),
}

impl Counter {
    /// The value as `f64` (approximate for exact values above 2^53).
    pub fn to_f64(&self) -> f64 {
        match self {
            Counter::Exact(limbs) => limbs
                .iter()
                .rev()
                .fold(0.0, |acc, l| acc * 4_294_967_296.0 + *l as f64),
            Counter::Approx(f) => *f,
        }
    }

    /// Exact when both are exact, by `f64` otherwise; `None` only for NaN (never produced).
    pub fn compare(&self, other: &Counter) -> Option<Ordering> {
        match (self, other) {
            (Counter::Exact(a), Counter::Exact(b)) => Some(
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.iter().rev().cmp(b.iter().rev())),
            ),
            _ => self.to_f64().partial_cmp(&other.to_f64()),
        }
    }
}

/// Read a counter: a JSON number, a decimal string or a `0x` hex string (any length up to 512
/// digits, surrounding whitespace ignored). Anything else is not a counter.
pub fn counter(v: &Value) -> Option<Counter> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) => Some(exact_u64(u)),
            None => n.as_f64().filter(|f| f.is_finite()).map(Counter::Approx),
        },
        Value::String(s) => {
            let s = s.trim();
            if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                parse_digits(hex, 16)
            } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                parse_digits(s, 10)
            } else {
                s.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Counter::Approx)
            }
        }
        _ => None,
    }
}

fn exact_u64(u: u64) -> Counter {
    let mut limbs = vec![u as u32, (u >> 32) as u32];
    trim(&mut limbs);
    Counter::Exact(limbs)
}

fn trim(limbs: &mut Vec<u32>) {
    while limbs.last() == Some(&0) {
        limbs.pop();
    }
}

fn parse_digits(digits: &str, radix: u32) -> Option<Counter> {
    if digits.is_empty() || digits.len() > MAX_DIGITS {
        return None;
    }
    let mut limbs: Vec<u32> = Vec::new();
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        let mut carry = d as u64;
        for l in limbs.iter_mut() {
            let x = *l as u64 * radix as u64 + carry;
            *l = x as u32;
            carry = x >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    trim(&mut limbs);
    Some(Counter::Exact(limbs))
}

/// How two counter readings compare; `None` when either is not a counter.
pub fn compare_counters(a: &Value, b: &Value) -> Option<Ordering> {
    counter(a)?.compare(&counter(b)?)
}

/// Whether the counter went up from `first` to `now` (exactly, for integers of any size).
pub fn increased(first: &Value, now: &Value) -> bool {
    compare_counters(first, now) == Some(Ordering::Less)
}

/// An `f64` reading of a counter, for rates and plots: numbers, decimal strings and `0x` hex
/// strings (approximate above 2^53, `None` beyond `f64`'s range; use [`increased`] to compare).
pub fn numeric(v: &Value) -> Option<f64> {
    counter(v).map(|c| c.to_f64()).filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn no_fault_values_are_not_faults() {
        let doc = json!({
            "f": false, "s": "", "a": [], "o": {}, "n": null,
            "t": true, "z": 0, "x": "rejected", "obj": {"stage": "Identity"}, "arr": [1]
        });
        let ptrs: Vec<String> = [
            "/f", "/s", "/a", "/o", "/n", "/absent", "/t", "/z", "/x", "/obj", "/arr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            faults_in(&doc, &ptrs),
            vec![
                "/t=true".to_string(),
                "/z=0".into(),
                "/x=\"rejected\"".into(),
                r#"/obj={"stage":"Identity"}"#.into(),
                "/arr=[1]".into(),
            ]
        );
    }

    #[test]
    fn hex_counters_of_any_length_compare_exactly() {
        // 20 hex digits: above 2^64.
        assert!(increased(
            &json!("0xffffffffffffffffffff"),
            &json!("0x100000000000000000000")
        ));
        assert!(increased(
            &json!("0x1234567890abcdef0000"),
            &json!("0x1234567890abcdef0001")
        ));
        assert!(!increased(
            &json!("0x1234567890abcdef0001"),
            &json!("0x1234567890abcdef0001")
        ));
        // 64 hex digits (a 256-bit value), differing in the last digit only.
        let a = format!("0x{}", "f".repeat(63) + "e");
        let b = format!("0x{}", "f".repeat(64));
        assert!(increased(&json!(a), &json!(b)));
        assert!(!increased(&json!(b), &json!(a)));
        // Leading zeros do not count.
        assert!(!increased(
            &json!("0x00000000000000000000ff"),
            &json!("0xff")
        ));
    }

    #[test]
    fn decimal_counters_past_u64_compare_exactly() {
        assert!(increased(
            &json!("18446744073709551616"),
            &json!("18446744073709551617")
        ));
        assert_eq!(
            compare_counters(
                &json!("18446744073709551617"),
                &json!("18446744073709551616")
            ),
            Some(Ordering::Greater)
        );
        // Mixed forms of one value are equal; a JSON number and a string compare exactly.
        assert_eq!(
            compare_counters(&json!("0x10"), &json!(16)),
            Some(Ordering::Equal)
        );
        assert!(increased(&json!(u64::MAX), &json!("18446744073709551616")));
        assert!(increased(&json!(1.5), &json!("2")));
        assert!(increased(&json!(-1), &json!(0)));
    }

    #[test]
    fn what_is_not_a_counter() {
        for v in [
            json!("abc"),
            json!("0x"),
            json!("0xzz"),
            json!(null),
            json!({}),
            json!(true),
        ] {
            assert_eq!(counter(&v), None, "{v}");
            assert!(!increased(&json!(1), &v));
        }
        assert_eq!(counter(&json!(format!("0x{}", "1".repeat(600)))), None);
        // Exact, but too large for a rate.
        let huge = json!(format!("0x{}", "f".repeat(300)));
        assert_eq!(numeric(&huge), None);
        assert!(increased(&json!(1.5), &huge));
        assert_eq!(numeric(&json!("0x1f")), Some(31.0));
        assert_eq!(numeric(&json!(" 12 ")), Some(12.0));
        assert_eq!(numeric(&json!("1.5")), Some(1.5));
        assert_eq!(numeric(&json!("0x1_0")), None);
    }
}
