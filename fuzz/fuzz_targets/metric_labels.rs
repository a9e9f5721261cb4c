//! The label parser of a sample line (`name{key="value",...} 1`). Two halves: raw input must not
//! panic, and a label set built from fuzz-chosen keys and (escaped) values must give back
//! exactly those keys, whatever the values hold (commas, braces, quotes, backslashes, UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate_fuzz::{fields, without};
use rollgate_probe::alerts::label_keys;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let _ = label_keys(&raw);

    let parts = fields(data, 6);
    let mut text = String::new();
    let mut want = Vec::new();
    for pair in parts.chunks(2) {
        let key = without(&pair[0], &['=', ',', '"', '{', '}'], true);
        if key.is_empty() {
            continue;
        }
        let value = pair[1]
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        text.push_str(&format!("{key}=\"{value}\","));
        want.push(key);
    }
    text.push_str("} 1");
    assert_eq!(label_keys(&text), want, "{text}");
});
