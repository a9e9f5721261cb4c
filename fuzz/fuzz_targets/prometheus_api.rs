//! What the operator's Prometheus answers: `/api/v1/query` (every result type, `NaN`/`Inf`
//! strings, API errors), `/api/v1/rules`, `/api/v1/alerts`, and the analysis judgement of the
//! samples. Never a panic; every error names the endpoint; the verdict of a measurement
//! follows the samples.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate_core::analysis::{Comparison, MeasurementVerdict, Sampled, judge};
use rollgate_core::config::NoDataPolicy;
use rollgate_probe::http::Fetched;
use rollgate_probe::prometheus::{parse_alerts, parse_answer, parse_rules};

const EP: &str = "http://127.0.0.1:9090/api/v1/query";

fuzz_target!(|data: &[u8]| {
    let fields = rollgate_fuzz::fields(data, 3);
    let (success, status, body) = (&fields[0], &fields[1], fields[2].as_bytes());
    let status = 100 + u16::from(status.bytes().next().unwrap_or(100)) % 500;
    let fetched = Fetched {
        status,
        body: body.to_vec(),
    };
    match parse_answer(EP, &fetched) {
        Ok(samples) => {
            if let Ok(c) = success.parse::<Comparison>() {
                let sampled = Sampled::Values(samples.clone());
                let j = judge(&c, NoDataPolicy::Inconclusive, &sampled);
                let numbers: Vec<f64> = samples.iter().map(|s| s.value).filter(|v| !v.is_nan()).collect();
                match j.verdict {
                    MeasurementVerdict::Inconclusive => assert!(numbers.is_empty() && j.no_data),
                    MeasurementVerdict::Successful => assert!(numbers.iter().all(|v| c.holds(*v))),
                    MeasurementVerdict::Failed => assert!(numbers.iter().any(|v| !c.holds(*v))),
                }
            }
        }
        Err(e) => assert!(e.to_string().starts_with(EP), "{e}"),
    }
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = parse_rules(EP, &doc);
        let _ = parse_alerts(EP, &doc);
    }
});
