//! Helpers shared by the fuzz targets: splitting one input into the several fields a target
//! builds its structured input from.

/// Split `data` at NUL bytes into exactly `n` fields (missing ones are empty; the last field
/// keeps any further NULs), each read as UTF-8 with invalid bytes replaced.
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    let mut out: Vec<String> = data
        .splitn(n, |b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    out.resize(n, String::new());
    out
}

/// Remove every character of `banned` (and, if `no_space`, whitespace) from `s`.
pub fn without(s: &str, banned: &[char], no_space: bool) -> String {
    s.chars()
        .filter(|c| !banned.contains(c) && !(no_space && c.is_whitespace()))
        .collect()
}

/// Take a field prefixed by its 16-bit big-endian length from `data` (binary fields, such as
/// DER, hold NULs); a short input gives what there is.
pub fn take_prefixed(data: &[u8]) -> (&[u8], &[u8]) {
    let [a, b, rest @ ..] = data else {
        return (data, &[]);
    };
    let n = (usize::from(*a) << 8 | usize::from(*b)).min(rest.len());
    rest.split_at(n)
}
