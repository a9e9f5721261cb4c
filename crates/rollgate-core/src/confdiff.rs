//! What `rollgate plan` shows of a `config` layer change: a unified diff of each file, with the
//! values of keys that look secret masked.
//!
//! A line is masked when it assigns a value to a key whose name contains one of
//! [`SECRET_WORDS`] (case-insensitive) in any of the usual spellings: `KEY=VALUE` (env files,
//! with or without `export`), `key: value` (YAML), `key = value` (TOML, INI) and
//! `"key": value` (JSON). Passwords in URLs and every value of [`crate::secrets`] are replaced
//! on every line as well. Pure: the caller reads the files.

use std::borrow::Cow;

/// Parts of a key name that mark its value as secret.
pub const SECRET_WORDS: [&str; 10] = [
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "AUTH",
    "PRIVATE",
    "CERT",
];

/// What replaces a masked value.
pub const MASK: &str = "****";

/// Whether a key name looks like it holds a secret.
pub fn secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    SECRET_WORDS.iter().any(|w| upper.contains(w))
}

/// One line with a secret-looking key's value masked, URL passwords and the installed secrets
/// replaced.
pub fn mask_line(line: &str) -> String {
    let masked = mask_assignment(line).unwrap_or(Cow::Borrowed(line));
    // Also replaces the installed secrets (`crate::secrets`).
    crate::redact::redact_text(&masked)
}

/// `Some` when the line assigns to a secret-looking key: the line with the value masked.
fn mask_assignment(line: &str) -> Option<Cow<'_, str>> {
    // The separator that comes first: `=` or `:` (a URL's `:` comes after the key's separator).
    let sep = line.find(['=', ':'])?;
    let key = line[..sep].trim();
    let key = key.strip_prefix("export ").unwrap_or(key).trim();
    let key = key.trim_matches(|c| c == '"' || c == '\'' || c == '-' || c == ' ');
    if key.is_empty()
        || key.starts_with('#')
        || key.starts_with("//")
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | ' '))
        || !secret_key(key)
    {
        return None;
    }
    let rest = &line[sep + 1..];
    let value = rest.trim();
    if value.is_empty() || matches!(value, "{" | "[" | "|" | ">") {
        return None;
    }
    let lead = &rest[..rest.len() - rest.trim_start().len()];
    let comma = if value.ends_with(',') { "," } else { "" };
    let quote = match value.chars().next() {
        Some(q @ ('"' | '\'')) => q.to_string(),
        _ => String::new(),
    };
    Some(Cow::Owned(format!(
        "{}{lead}{quote}{MASK}{quote}{comma}",
        &line[..=sep]
    )))
}

/// An `env` layer's `KEY=VALUE,…` with the values of secret-looking keys masked, for display.
pub fn mask_env_list(value: &str) -> String {
    value
        .split(',')
        .map(mask_line)
        .collect::<Vec<_>>()
        .join(",")
}

/// Above this many line pairs the diff is the whole old file removed and the new one added.
const MAX_CELLS: usize = 4_000_000;

/// A unified diff (`---`/`+++` headers, `@@` hunks, `context` lines around each change) of two
/// texts, every line masked with [`mask_line`]. Empty when they are equal.
pub fn unified_diff(
    old_name: &str,
    new_name: &str,
    old: &str,
    new: &str,
    context: usize,
) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = line_ops(&a, &b);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    // Group the ops into hunks: changes with up to `context` equal lines around them.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| !matches!(o, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(context);
        let mut end = changed[i];
        while i < changed.len() && changed[i] <= end + 2 * context + 1 {
            end = changed[i];
            i += 1;
        }
        let end = (end + context + 1).min(ops.len());
        let (mut a0, mut b0) = (0, 0);
        for o in &ops[..start] {
            match o {
                Op::Same(..) => {
                    a0 += 1;
                    b0 += 1;
                }
                Op::Del(_) => a0 += 1,
                Op::Add(_) => b0 += 1,
            }
        }
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let b_len = hunk.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            if a_len == 0 { a0 } else { a0 + 1 },
            if b_len == 0 { b0 } else { b0 + 1 }
        ));
        for o in hunk {
            let (sign, line) = match o {
                Op::Same(l) => (' ', *l),
                Op::Del(l) => ('-', *l),
                Op::Add(l) => ('+', *l),
            };
            out.push(sign);
            out.push_str(&mask_line(line));
            out.push('\n');
        }
    }
    out
}

#[derive(Debug)]
enum Op<'a> {
    Same(&'a str),
    Del(&'a str),
    Add(&'a str),
}

/// The longest common subsequence of lines, as edit operations.
fn line_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    if a.len().saturating_mul(b.len()) > MAX_CELLS {
        let mut ops: Vec<Op> = a.iter().map(|l| Op::Del(l)).collect();
        ops.extend(b.iter().map(|l| Op::Add(l)));
        return ops;
    }
    let (n, m) = (a.len(), b.len());
    // lcs[i][j]: LCS length of a[i..] and b[j..].
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            // Deletions before additions, as `diff -u` prints them.
            ops.push(Op::Del(a[i]));
            i += 1;
        } else {
            ops.push(Op::Add(b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secret_values_in_every_spelling() {
        let cases = [
            ("DB_PASSWORD=hunter2", "DB_PASSWORD=****"),
            ("export API_TOKEN=abc", "export API_TOKEN=****"),
            ("  secret_key: abc", "  secret_key: ****"),
            ("private_key = \"abc\"", "private_key = \"****\""),
            ("  \"authToken\": \"abc\",", "  \"authToken\": \"****\","),
            ("PORT=8080", "PORT=8080"),
            // Comments are not assignments, but the URL and `password=` redaction still applies.
            ("# PASSWORD=documented", "# PASSWORD=****"),
            ("# the token: see the docs", "# the token: see the docs"),
            ("keys:", "keys:"),
            (
                "DATABASE_URL=postgres://u:pw@h/db",
                "DATABASE_URL=postgres://u:****@h/db",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(mask_line(line), want, "{line}");
        }
    }

    #[test]
    fn masks_env_lists() {
        assert_eq!(
            mask_env_list("RUST_LOG=debug,API_TOKEN=abc,DB_PASSWORD=x"),
            "RUST_LOG=debug,API_TOKEN=****,DB_PASSWORD=****"
        );
    }

    #[test]
    fn diffs_lines_with_context_and_masks_them() {
        let old = "A=1\nB=2\nC=3\nD=4\nE=5\nF=6\nG=7\nH=8\nI=9\nJ=10\n";
        let new = "A=1\nB=2\nC=3\nD=4\nE=5\nF=6\nG=7\nH=8\nI=9\nJ=11\nTOKEN=new\n";
        let d = unified_diff("a/x.env", "b/x.env", old, new, 3);
        assert_eq!(
            d,
            "--- a/x.env\n+++ b/x.env\n@@ -7,4 +7,5 @@\n G=7\n H=8\n I=9\n-J=10\n+J=11\n+TOKEN=****\n"
        );
        assert_eq!(unified_diff("a", "b", old, old, 3), "");
        let d = unified_diff("a", "b", "", "X=1\n", 3);
        assert_eq!(d, "--- a\n+++ b\n@@ -0,0 +1,1 @@\n+X=1\n");
        // Two changes far apart are two hunks.
        let far_old: String = (0..30).map(|i| format!("L{i}\n")).collect();
        let far_new = far_old.replace("L2\n", "L2x\n").replace("L25\n", "L25x\n");
        let d = unified_diff("a", "b", &far_old, &far_new, 3);
        assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    }
}
