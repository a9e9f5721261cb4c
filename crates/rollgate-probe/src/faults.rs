//! Faults the operator reports in its status document: a value at a configured pointer is a
//! fault, reported as `pointer=value`, unless it is `null`, `false`, `""`, `[]` or `{}`. The baseline records the faults present
//! when it was frozen; a later gate fails on any not in that list.

use crate::errors::ProbeError;
use crate::http::HttpClient;

/// `pointer=value` for every configured pointer whose value is a fault: present and not null,
/// `false`, `""`, `[]` or `{}`. One function for the baseline and the gates
/// ([`rollgate_core::facts::faults_in`]), so both read the same document the same way.
pub use rollgate_core::facts::faults_in;

/// Read the status document at `url` and list its faults.
pub async fn read_faults(
    http: &HttpClient,
    url: &str,
    pointers: &[String],
) -> Result<Vec<String>, ProbeError> {
    let doc = http.get_json(url).await?;
    Ok(faults_in(&doc, pointers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_present_values_are_faults() {
        let doc = json!({"attestation": {"fault": {"stage": "Identity"}}, "registration": {"fault": null}, "x": ""});
        let ptrs: Vec<String> = ["/attestation/fault", "/registration/fault", "/x", "/absent"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            faults_in(&doc, &ptrs),
            vec![r#"/attestation/fault={"stage":"Identity"}"#.to_string()]
        );
    }
}
