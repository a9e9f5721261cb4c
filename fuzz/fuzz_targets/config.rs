//! Configuration text through the raw parse and the resolve step (`${VAR}` expansion,
//! durations, sizes, cross-references, mode detection): an error or a config, never a panic.
//! Errors must name the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rollgate_core::config::{MapEnv, expand, load_str};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = MapEnv::new([
        (
            "DATABASE_URL",
            "postgres://app:a/b?c#d@127.0.0.1:5433/node0",
        ),
        ("ROLLGATE_SERVE_TOKEN", "tok-tok-tok"),
        ("EMPTY", ""),
    ]);
    let path = Path::new("/etc/rollgate/fuzz.toml");
    if let Err(e) = load_str(path, text, &env) {
        let shown = e.to_string();
        assert!(
            shown.contains("fuzz.toml"),
            "error without the file: {shown}"
        );
    }
    let _ = expand(text, &env);
});
