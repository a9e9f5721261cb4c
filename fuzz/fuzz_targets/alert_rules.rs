//! Prometheus rule files through the PromQL contract extraction (metric names, `__name__`
//! regexes, required label keys), then the comparison against an exposition: an error naming
//! the file or a contract, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate_fuzz::fields;
use rollgate_probe::alerts::{
    expr_metrics, missing_labels, missing_metrics, parse_exposition, parse_rules,
};

fuzz_target!(|data: &[u8]| {
    let parts = fields(data, 2);
    let (rules_text, exposition) = (&parts[0], &parts[1]);
    let _ = expr_metrics(rules_text);
    match parse_rules(rules_text, "rules.yml") {
        Ok(rules) => {
            let exported = parse_exposition(exposition);
            let _ = missing_metrics(&rules, &exported.names);
            let _ = missing_labels(&rules, &exported.labels);
        }
        Err(e) => assert!(e.to_string().contains("rules.yml"), "{e}"),
    }
});
