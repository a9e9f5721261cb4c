//! Status documents (any JSON a node serves) through fault extraction and progression
//! extraction: the fault list, the counter reading and the comparison of two readings.
//! Asserts the comparison is a consistent order: never "increased" both ways, and
//! antisymmetric where both readings are counters.
#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use rollgate_core::facts::{compare_counters, counter, faults_in, increased, no_fault, numeric};
use rollgate_fuzz::fields;
use rollgate_probe::alerts::check_fields;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 3);
    let pointers: Vec<String> = parts[0].split('\n').map(str::to_string).collect();
    let Ok(first) = serde_json::from_str::<Value>(&parts[1]) else {
        return;
    };
    let now = serde_json::from_str::<Value>(&parts[2]).unwrap_or(Value::Null);

    let faults = faults_in(&first, &pointers);
    for f in &faults {
        assert!(
            pointers.iter().any(|p| f.starts_with(&format!("{p}="))),
            "{f}"
        );
    }
    let _ = check_fields(&pointers, &first, &now);

    for p in &pointers {
        let (Some(a), Some(b)) = (first.pointer(p), now.pointer(p)) else {
            continue;
        };
        let _ = no_fault(a);
        let _ = (counter(a), numeric(a), numeric(b));
        assert!(
            !(increased(a, b) && increased(b, a)),
            "{a} and {b} both increased"
        );
        if let (Some(x), Some(y)) = (compare_counters(a, b), compare_counters(b, a)) {
            assert_eq!(x, y.reverse(), "{a} vs {b}");
        }
        if counter(a).is_some() {
            assert_eq!(compare_counters(a, a), Some(Ordering::Equal), "{a}");
        }
    }
    // The documents themselves, whole, as a counter pair.
    let _ = increased(&first, &now);
});
