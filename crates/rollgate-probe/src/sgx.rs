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
    // `None`: the build flags cannot say (unreadable file, unset or malformed SGX_DEBUG).
    let build_debug = files
        .build
        .as_ref()
        .ok()
        .and_then(|b| b.get("SGX_DEBUG"))
        .and_then(|v| flag(v));
    let debug_build = build_debug == Some("1");
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
    } else if build_debug.is_none() && sgx.attestation == Attestation::Dcap {
        problems.push(format!(
            "DCAP attestation, but the build flags {} do not say whether the enclave is a debug build",
            sgx.build_flags.display()
        ));
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
                "REPORT_TYPE={}, attestation {att}, {}",
                sgx.report_type,
                match build_debug {
                    Some("1") => "debug build",
                    Some(_) => "non-debug build",
                    None => "build type unknown (see sgx-flags)",
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::vocab::CheckStatus;
    use std::os::unix::fs::PermissionsExt;

    fn sgx(attestation: Attestation, report_type: &str) -> Sgx {
        Sgx {
            build_flags: "/b.env".into(),
            runtime_env: "/r.env".into(),
            report_type: report_type.into(),
            devices: vec![],
            attestation,
        }
    }

    fn files(build: &str, runtime: &str) -> SgxFiles {
        SgxFiles {
            build: Ok(crate::envfile::parse_env(build)),
            runtime: Ok(crate::envfile::parse_env(runtime)),
        }
    }

    #[test]
    fn flags_table() {
        let s = sgx(Attestation::SelfReport, "SELF");
        let cases = [
            (
                "SGX_DEBUG=0\nSGX_PRERELEASE=1",
                "SGX_DEBUG=false\nSGX_PRERELEASE=\"1\"",
                None,
            ),
            (
                "SGX_DEBUG=0\nSGX_PRERELEASE=1",
                "SGX_DEBUG=1\nSGX_PRERELEASE=1",
                Some("SGX_DEBUG: built with 0, runtime sets 1"),
            ),
            (
                "SGX_DEBUG=0\nSGX_PRERELEASE=1",
                "SGX_DEBUG=0",
                Some("SGX_PRERELEASE is not set in the runtime env /r.env"),
            ),
            (
                "SGX_PRERELEASE=1",
                "SGX_DEBUG=0\nSGX_PRERELEASE=1",
                Some("SGX_DEBUG is not set in the build flags /b.env"),
            ),
            (
                "SGX_DEBUG=maybe\nSGX_PRERELEASE=1",
                "SGX_DEBUG=0\nSGX_PRERELEASE=1",
                Some("build SGX_DEBUG=maybe is not 0 or 1"),
            ),
        ];
        for (b, r, want) in cases {
            let o = check_flags(&s, &files(b, r));
            match want {
                None => assert_eq!(o.status, CheckStatus::Pass, "{b} / {r}: {}", o.detail),
                Some(w) => {
                    assert_eq!(o.status, CheckStatus::Fail, "{b} / {r}");
                    assert!(o.detail.contains(w), "{}", o.detail);
                }
            }
        }
        let unreadable = SgxFiles {
            build: Err("build flags /b.env: missing".into()),
            runtime: Ok(Default::default()),
        };
        assert!(
            check_flags(&s, &unreadable)
                .detail
                .contains("cannot read build flags /b.env")
        );
    }

    #[test]
    fn attestation_rules() {
        let ok = files("SGX_DEBUG=0\nSGX_PRERELEASE=1", "REPORT_TYPE=SELF");
        let debug = files("SGX_DEBUG=1\nSGX_PRERELEASE=0", "");
        let self_report = sgx(Attestation::SelfReport, "SELF");
        let dcap = sgx(Attestation::Dcap, "DCAP");
        assert_eq!(
            check_attestation(&self_report, Mode::LocalnetLoopback, &ok).status,
            CheckStatus::Pass
        );
        // Debug builds are fine with SELF reports, never with DCAP.
        assert_eq!(
            check_attestation(&self_report, Mode::LocalnetLoopback, &debug).status,
            CheckStatus::Pass
        );
        let o = check_attestation(&dcap, Mode::Host, &debug);
        assert!(
            o.detail.contains("must never be used with DCAP"),
            "{}",
            o.detail
        );
        let unknown = SgxFiles {
            build: Err("x".into()),
            runtime: Ok(Default::default()),
        };
        let o = check_attestation(&dcap, Mode::Host, &unknown);
        assert!(o.detail.contains("do not say whether"), "{}", o.detail);
        let o = check_attestation(&self_report, Mode::LocalnetLoopback, &unknown);
        assert_eq!(o.status, CheckStatus::Pass);
        assert!(o.detail.contains("build type unknown"), "{}", o.detail);
        let o = check_attestation(&dcap, Mode::LocalnetCompose, &ok);
        assert!(
            o.detail
                .contains("localnet attestation uses REPORT_TYPE=SELF"),
            "{}",
            o.detail
        );
        assert!(
            o.detail
                .contains("runtime env sets REPORT_TYPE=SELF, configured DCAP"),
            "{}",
            o.detail
        );
    }

    #[test]
    fn devices() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("sgx_enclave");
        let wide = dir.path().join("sgx_provision");
        for (p, mode) in [(&good, 0o660), (&wide, 0o666)] {
            std::fs::write(p, b"").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        // Root may give the file a non-root group, as a real node's udev rule does.
        let _ = std::os::unix::fs::chown(&good, None, Some(1));
        let gid = std::fs::metadata(&good).unwrap().gid();
        let groups = format!("sgx:x:{gid}:\n");
        let o = check_devices_with(std::slice::from_ref(&good), &groups);
        if gid == 0 {
            assert!(o.detail.contains("root-group only"), "{}", o.detail);
        } else {
            assert_eq!(o.status, CheckStatus::Pass, "{}", o.detail);
            assert_eq!(o.observed[0]["group"], "sgx");
        }
        let o = check_devices_with(&[wide, dir.path().join("sgx_vepc")], &groups);
        assert_eq!(o.status, CheckStatus::Fail);
        assert!(
            o.detail.contains("has mode 0666, expected 0660"),
            "{}",
            o.detail
        );
        assert!(
            o.detail
                .contains("sgx_vepc is missing (no SGX driver on this machine?)"),
            "{}",
            o.detail
        );
        assert_eq!(check_devices_with(&[], "").status, CheckStatus::Skip);
    }
}
