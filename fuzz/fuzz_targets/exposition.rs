//! Prometheus text exposition / OpenMetrics as a metrics endpoint serves it: names and label
//! keys, never a panic. Every name with labels is also a name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate_probe::alerts::parse_exposition;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let e = parse_exposition(&text);
    for name in e.labels.keys() {
        assert!(
            e.names.contains(name),
            "{name} has labels but is not a name"
        );
    }
    // A scrape parsed twice and merged is the same scrape.
    let mut twice = e.clone();
    twice.extend(parse_exposition(&text));
    assert_eq!(twice, e);
});
