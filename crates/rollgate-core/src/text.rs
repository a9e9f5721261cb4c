//! Cutting text for storage and display without splitting a character.
//!
//! `String::truncate(n)` and `&s[..n]` panic when byte `n` falls inside a multi-byte character,
//! and what is cut here comes from outside (log lines, status documents, error messages of
//! remote services): every cut in rollgate goes through these two functions.

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary (a byte
/// budget: stored lines, details).
pub fn truncate_chars(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` shown in at most `max` characters: when it is longer, its first `max - 1` characters
/// and `…`.
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_budget_keeps_whole_characters() {
        let s = format!("{}é", "a".repeat(299));
        assert_eq!(truncate_chars(&s, 300), "a".repeat(299));
        assert_eq!(truncate_chars("ééé", 1), "");
        assert_eq!(truncate_chars("ééé", 3), "é");
        assert_eq!(truncate_chars("abc", 300), "abc");
        assert_eq!(truncate_chars("日本", 0), "");
        // Every cut of every string is a prefix on a boundary, within the budget.
        let mixed = "aé日😀b".repeat(5);
        for max in 0..=mixed.len() + 1 {
            let t = truncate_chars(&mixed, max);
            assert!(t.len() <= max && mixed.starts_with(t), "{max}");
        }
    }

    #[test]
    fn shortened_text_counts_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "ab…");
        assert_eq!(shorten("日本語テキスト", 4), "日本語…");
        assert_eq!(shorten("😀😀", 2), "😀😀");
        assert_eq!(shorten("😀😀😀", 1), "…");
        assert_eq!(shorten("", 0), "");
        let s = "é".repeat(500);
        assert_eq!(shorten(&s, 160).chars().count(), 160);
    }
}
