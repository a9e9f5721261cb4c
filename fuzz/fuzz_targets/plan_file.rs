//! Plan files (`rollout --plan`): a list of steps or a usage error naming the file, never a
//! panic; an accepted plan has at least one step, no empty value and no layer twice.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rollgate_cli::dispatch::plan_file::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(Path::new("plan.toml"), text) {
        Ok(steps) => {
            assert!(!steps.is_empty());
            let mut layers: Vec<&String> = steps.iter().map(|(l, _)| l).collect();
            layers.sort();
            layers.dedup();
            assert_eq!(layers.len(), steps.len(), "a layer twice: {steps:?}");
            assert!(steps.iter().all(|(_, v)| !v.trim().is_empty()));
        }
        Err(e) => assert!(e.to_string().contains("plan.toml"), "{e}"),
    }
});
