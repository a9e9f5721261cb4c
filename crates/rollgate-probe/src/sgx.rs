//! SGX environment checks: build flags vs runtime flags, debug builds never with DCAP, the
//! report type, and the SGX device nodes' modes and groups.
//!
//! `SGX_DEBUG` and `SGX_PRERELEASE` must be set in both files and agree; an unset flag is
//! ambiguous and fails, because the enclave's identity depends on it.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rollgate_core::baseline::SgxRecord;
use rollgate_core::config::{Attestation, Sgx};
use rollgate_core::vocab::Mode;
use serde_json::{Value, json};

use crate::envfile::read_env_file;
use crate::metadata::{GROUP, name_of};
use crate::outcome::Outcome;

/// The flags compared between build and runtime.
pub const FLAGS: [&str; 2] = ["SGX_DEBUG", "SGX_PRERELEASE"];

/// A flag value normalised to `"1"` or `"0"`.
pub fn flag(v: &str) -> Option<&'static str> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some("1"),
        "0" | "false" | "no" | "off" => Some("0"),
        _ => None,
    }
}

/// The two flag files, read.
#[derive(Debug, Clone)]
pub struct SgxFiles {
    pub build: Result<BTreeMap<String, String>, String>,
    pub runtime: Result<BTreeMap<String, String>, String>,
}

/// Read both env files; an unreadable file is an error string naming it.
pub fn read_files(sgx: &Sgx) -> SgxFiles {
    let read =
        |p: &Path, what: &str| read_env_file(p).map_err(|e| format!("{what} {}: {e}", p.display()));
    SgxFiles {
        build: read(&sgx.build_flags, "build flags"),
        runtime: read(&sgx.runtime_env, "runtime env"),
    }
}

/// The baseline's SGX record (raw values as written, only the SGX and report keys).
pub fn record(sgx: &Sgx, files: &SgxFiles) -> SgxRecord {
    let pick = |m: &Result<BTreeMap<String, String>, String>| -> BTreeMap<String, String> {
        m.as_ref()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("SGX_") || *k == "REPORT_TYPE")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    };
    SgxRecord {
        build: pick(&files.build),
        runtime: pick(&files.runtime),
        report_type: sgx.report_type.clone(),
    }
}

/// Build flags vs runtime flags.
pub fn check_flags(sgx: &Sgx, files: &SgxFiles) -> Outcome {
    let rec = record(sgx, files);
    let observed = json!({"build": rec.build, "runtime": rec.runtime});
    let (build, runtime) = match (&files.build, &files.runtime) {
        (Ok(b), Ok(r)) => (b, r),
        (Err(e), _) | (_, Err(e)) => return Outcome::fail(format!("cannot read {e}"), observed),
    };
    let mut problems = Vec::new();
    let mut agreed = Vec::new();
    for key in FLAGS {
        let b = build.get(key).map(|v| (v, flag(v)));
        let r = runtime.get(key).map(|v| (v, flag(v)));
        match (b, r) {
            (None, _) => problems.push(format!(
                "{key} is not set in the build flags {}",
                sgx.build_flags.display()
            )),
            (_, None) => problems.push(format!(
                "{key} is not set in the runtime env {}",
                sgx.runtime_env.display()
            )),
            (Some((raw, None)), _) => problems.push(format!("build {key}={raw} is not 0 or 1")),
            (_, Some((raw, None))) => problems.push(format!("runtime {key}={raw} is not 0 or 1")),
            (Some((_, Some(bv))), Some((_, Some(rv)))) if bv != rv => {
                problems.push(format!("{key}: built with {bv}, runtime sets {rv}"))
            }
            (Some((_, Some(bv))), Some(_)) => agreed.push(format!("{key}={bv}")),
        }
    }
    if problems.is_empty() {
        Outcome::pass(
            format!("build and runtime agree: {}", agreed.join(", ")),
            observed,
        )
    } else {
        Outcome::fail(
            format!("SGX flags misaligned: {}", problems.join("; ")),
            observed,
        )
    }
}

/// A debug build never with DCAP; `REPORT_TYPE=SELF` in localnet; the runtime's `REPORT_TYPE`
/// (when set) equal to the configured one.
pub fn check_attestation(sgx: &Sgx, mode: Mode, files: &SgxFiles) -> Outcome {
    let debug_build = files
        .build
        .as_ref()
        .ok()
        .and_then(|b| b.get("SGX_DEBUG"))
        .and_then(|v| flag(v))
        == Some("1");
    let runtime_report = files
        .runtime
        .as_ref()
        .ok()
        .and_then(|r| r.get("REPORT_TYPE"))
        .cloned();
    let observed = json!({"report_type": sgx.report_type, "attestation": sgx.attestation,
                          "debug_build": debug_build, "runtime_report_type": runtime_report});
    let mut problems = Vec::new();
    if debug_build && sgx.attestation == Attestation::Dcap {
        problems.push(
            "a debug enclave build (SGX_DEBUG=1) must never be used with DCAP attestation"
                .to_string(),
        );
    }
    if mode != Mode::Host && !sgx.report_type.eq_ignore_ascii_case("SELF") {
        problems.push(format!(
            "localnet attestation uses REPORT_TYPE=SELF, configured {}",
            sgx.report_type
        ));
    }
    if let Some(r) = &runtime_report
        && !r.eq_ignore_ascii_case(&sgx.report_type)
    {
        problems.push(format!(
            "runtime env sets REPORT_TYPE={r}, configured {}",
            sgx.report_type
        ));
    }
    if problems.is_empty() {
        let att = match sgx.attestation {
            Attestation::SelfReport => "self",
            Attestation::Dcap => "dcap",
        };
        Outcome::pass(
            format!(
                "REPORT_TYPE={}, attestation {att}, {} build",
                sgx.report_type,
                if debug_build { "debug" } else { "non-debug" }
            ),
            observed,
        )
    } else {
        Outcome::fail(problems.join("; "), observed)
    }
}

/// Every configured SGX device exists with mode 0660 and a non-root group.
pub fn check_devices_with(devices: &[std::path::PathBuf], group_db: &str) -> Outcome {
    if devices.is_empty() {
        return Outcome::skip("no SGX devices configured");
    }
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for dev in devices {
        let shown = dev.display();
        match std::fs::metadata(dev) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!(
                    "{shown} is missing (no SGX driver on this machine?)"
                ));
                seen.push(json!({"path": shown.to_string(), "present": false}));
            }
            Err(e) => problems.push(format!("{shown}: {e}")),
            Ok(m) => {
                let mode = m.mode() & 0o7777;
                let gid = m.gid();
                let group = name_of(group_db, gid).unwrap_or_else(|| format!("gid {gid}"));
                if mode & 0o777 != 0o660 {
                    problems.push(format!("{shown} has mode {mode:04o}, expected 0660"));
                }
                if gid == 0 {
                    problems.push(format!(
                        "{shown} is root-group only, expected an access group"
                    ));
                }
                seen.push(json!({"path": shown.to_string(), "present": true, "mode": format!("{mode:04o}"),
                                 "gid": gid, "group": group, "char_device": m.file_type().is_char_device()}));
            }
        }
    }
    let observed = Value::Array(seen);
    if problems.is_empty() {
        Outcome::pass(
            format!("{} device(s) 0660 with access groups", devices.len()),
            observed,
        )
    } else {
        Outcome::fail(problems.join("; "), observed)
    }
}

/// As [`check_devices_with`], with the system's `/etc/group`.
pub fn check_devices(devices: &[std::path::PathBuf]) -> Outcome {
    check_devices_with(devices, &std::fs::read_to_string(GROUP).unwrap_or_default())
}
