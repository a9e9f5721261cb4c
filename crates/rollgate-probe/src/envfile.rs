//! `KEY=VALUE` environment files, as Docker Compose `.env` files and build-flag files write
//! them: blank lines and `#` comments ignored, an optional `export ` prefix, values optionally
//! in single or double quotes, and ` #` starting a comment after an unquoted value.

use std::collections::BTreeMap;
use std::path::Path;

/// Parse env-file text. Lines without `=` are ignored (they are not assignments).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        out.insert(key.to_string(), unquote(value.trim()));
    }
    out
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q)
            && let Some(end) = rest.find(q)
        {
            return rest[..end].to_string();
        }
    }
    match v.find(" #") {
        Some(i) => v[..i].trim_end().to_string(),
        None => v.to_string(),
    }
}

/// Read and parse an env file.
pub fn read_env_file(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    Ok(parse_env(&std::fs::read_to_string(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let env = parse_env(
            "# build flags\n\nSGX_DEBUG=1\nexport SGX_PRERELEASE=\"0\"\n  REPORT_TYPE = 'SELF'  \nA=b # note\nB=\"x # y\"\nnot an assignment\nC=\n",
        );
        assert_eq!(env["SGX_DEBUG"], "1");
        assert_eq!(env["SGX_PRERELEASE"], "0");
        assert_eq!(env["REPORT_TYPE"], "SELF");
        assert_eq!(env["A"], "b");
        assert_eq!(env["B"], "x # y");
        assert_eq!(env["C"], "");
        assert_eq!(env.len(), 6);
    }
}
