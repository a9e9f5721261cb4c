//! Faults the operator reports in its status document: a non-null value at a configured
//! pointer is a fault, reported as `pointer=value`. The baseline records the faults present
//! when it was frozen; a later gate fails on any not in that list.

use serde_json::Value;

use crate::errors::ProbeError;
use crate::http::HttpClient;

/// `pointer=value` for every configured pointer whose value is present and not null (nor
/// `false` or an empty string/array/object, which status documents use for "no fault").
pub fn faults_in(doc: &Value, pointers: &[String]) -> Vec<String> {
    pointers
        .iter()
        .filter_map(|p| {
            let v = doc.pointer(p)?;
            let empty = match v {
                Value::Null | Value::Bool(false) => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Number(_) | Value::Bool(true) => false,
            };
            (!empty).then(|| format!("{p}={v}"))
        })
        .collect()
}

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
