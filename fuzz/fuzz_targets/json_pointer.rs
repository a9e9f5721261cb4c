//! JSON pointer evaluation against a served document: readiness expectations (present,
//! equals, one of, type) and mark-price pointers with `{symbol}` substitution, with
//! fuzz-chosen pointers, expected values and documents. Never a panic; a failed expectation
//! names its pointer.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rollgate_core::config::{Expect, Expectation, JsonType, MarkPriceProbe};
use rollgate_fuzz::fields;
use rollgate_probe::http::{judge, parse_json};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 4);
    let Ok(doc) = parse_json("http://127.0.0.1/status", parts[3].as_bytes()) else {
        return;
    };
    let pointer = parts[0].clone();
    let want: Value = serde_json::from_str(&parts[1]).unwrap_or(Value::String(parts[1].clone()));
    let checks = [
        Expectation::Present(true),
        Expectation::Present(false),
        Expectation::Equals(want.clone()),
        Expectation::OneOf(vec![want.clone(), Value::Null]),
        Expectation::Type(JsonType::parse(&parts[1]).unwrap_or(JsonType::Number)),
    ];
    for check in checks {
        let expect = Expect {
            pointer: pointer.clone(),
            check,
        };
        if let Some(why) = judge(&doc, &expect) {
            assert!(why.contains(&pointer), "{why}");
        }
    }

    let probe = MarkPriceProbe {
        url: "http://127.0.0.1/prices".into(),
        symbols: parts[2].split(',').map(str::to_string).collect(),
        price_pointer: pointer.clone(),
        timestamp_pointer: format!("{pointer}/ts"),
        max_age: Duration::from_secs(30),
    };
    let (_, seen) = rollgate_probe::mark_price::judge(&doc, &probe, 1_700_000_000_000);
    assert!(seen.is_object());
});
