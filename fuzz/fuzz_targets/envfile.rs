//! `KEY=VALUE` environment files (Compose `.env`, SGX build-flag files): never a panic; keys
//! are non-empty and hold no whitespace; a plain `KEY=value` line reads back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate_fuzz::{fields, without};
use rollgate_probe::envfile::parse_env;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for key in parse_env(&text).keys() {
        assert!(
            !key.is_empty() && !key.contains(char::is_whitespace),
            "{key:?}"
        );
    }

    let parts = fields(data, 2);
    let key = without(&parts[0], &['=', '#'], true);
    let value = without(&parts[1], &['"', '\'', '#', '\r', '\n'], false);
    let value = value.trim();
    if key.is_empty() || key == "export" {
        return;
    }
    let env = parse_env(&format!("# comment\n{key}={value}\n"));
    assert_eq!(
        env.get(&key).map(String::as_str),
        Some(value),
        "{key}={value}"
    );
});
