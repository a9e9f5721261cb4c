//! What every page shares: escaping, the inline stylesheet and the page frame. Pages are plain
//! server-rendered HTML with no external asset (no script, font or stylesheet is fetched), so
//! a report file can be mailed or archived and still open the same.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Escape text for HTML and SVG (element content and quoted attribute values).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode one path segment (rollout ids are plain, but ids come from a file).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A timestamp of the journal (RFC 3339, UTC, with or without fractional seconds).
pub fn parse_ts(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s)
        .ok()
        .or_else(|| humantime::parse_rfc3339_weak(s).ok())
}

/// Seconds since the Unix epoch.
pub fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A duration for people: `850 ms`, `12.4 s`, `3 min 05 s`, `2 h 10 min`.
pub fn human_secs(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        if secs < 10.0 {
            format!("{secs:.1} s")
        } else {
            format!("{secs:.0} s")
        }
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else if secs < 86400.0 * 2.0 {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    } else {
        format!("{:.1} days", secs / 86400.0)
    }
}

/// How long ago `ts` was, for people ("3 min 05 s ago"); the timestamp itself when unparsable.
pub fn ago(ts: &str, now: SystemTime) -> String {
    match parse_ts(ts).and_then(|t| now.duration_since(t).ok()) {
        Some(d) => format!("{} ago", human_secs(d.as_secs_f64())),
        None => ts.to_string(),
    }
}

/// Between two journal timestamps, when both parse.
pub fn between(from: &str, to: &str) -> Option<Duration> {
    parse_ts(to)?.duration_since(parse_ts(from)?).ok()
}

/// Colors shared by the pages and the chart (and named once, so they stay consistent).
pub mod color {
    pub const PASS: &str = "#2e7d32";
    pub const FAIL: &str = "#c62828";
    pub const WAIT: &str = "#f9a825";
    pub const INCONCLUSIVE: &str = "#8d6e63";
    pub const NEUTRAL: &str = "#78909c";
    pub const ROLLBACK: &str = "#ef6c00";
    pub const INK: &str = "#1f2933";
    pub const MUTED: &str = "#5f6b7a";
    pub const GRID: &str = "#e3e7ec";
}

/// The outcome's CSS class and words.
pub fn outcome_badge(outcome: Option<&str>) -> String {
    let (class, text) = match outcome {
        Some("promoted") => ("pass", "promoted"),
        Some("rolled_back") => ("fail", "rolled back"),
        Some("rollback_failed") => ("fail strong", "ROLLBACK FAILED"),
        Some("refused") => ("neutral", "refused"),
        Some(other) => ("neutral", other),
        None => ("wait", "unfinished"),
    };
    format!(
        r#"<span class="badge {class}" data-outcome="{}">{}</span>"#,
        esc(outcome.unwrap_or("unfinished")),
        esc(text)
    )
}

pub fn verdict_badge(verdict: &str) -> String {
    let class = match verdict {
        "pass" => "pass",
        "fail" => "fail",
        _ => "wait",
    };
    format!(r#"<span class="badge {class}">{}</span>"#, esc(verdict))
}

const CSS: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1f2933; background: #f5f7fa; }
header.top { background: #1f2933; color: #fff; padding: 10px 24px; display: flex; gap: 16px; align-items: baseline; }
header.top .brand { font-weight: 700; letter-spacing: .02em; }
header.top a { color: #cfd8e3; text-decoration: none; }
header.top .meta { color: #9aa5b1; font-size: 12px; margin-left: auto; }
main { padding: 18px 24px 40px; max-width: 1240px; margin: 0 auto; }
h1 { font-size: 22px; margin: 4px 0 12px; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
h2 { font-size: 16px; margin: 24px 0 8px; }
section.card { background: #fff; border: 1px solid #dde3ea; border-radius: 6px; padding: 14px 18px; margin: 12px 0; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; background: #78909c; white-space: nowrap; }
h1 .badge { font-size: 15px; padding: 3px 12px; }
.badge.pass { background: #2e7d32; } .badge.fail { background: #c62828; } .badge.wait { background: #f9a825; color: #1f2933; }
.badge.neutral { background: #78909c; } .badge.strong { outline: 2px solid #7f0000; }
.banner { border-radius: 6px; padding: 10px 16px; margin: 12px 0; font-weight: 500; }
.banner.fail { background: #fdecea; border: 1px solid #f5c2c0; color: #7f1d1d; }
.banner.pass { background: #e8f5e9; border: 1px solid #b7dfb9; color: #1b5e20; }
.banner.wait { background: #fff8e1; border: 1px solid #ffe082; color: #5d4300; }
.banner.neutral { background: #eceff1; border: 1px solid #cfd8dc; }
.banner .why { font-weight: 400; display: block; margin-top: 4px; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0; }
dl.kv dt { color: #5f6b7a; } dl.kv dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e6eaef; vertical-align: top; }
th { font-size: 12px; color: #5f6b7a; font-weight: 600; background: #f8fafc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fff5f5; }
code, pre { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: #f3f5f8; padding: 8px; border-radius: 4px; overflow-x: auto; max-height: 320px; margin: 4px 0; white-space: pre-wrap; word-break: break-all; }
details > summary { cursor: pointer; color: #3b5b87; }
.muted { color: #5f6b7a; }
.chart { overflow-x: auto; }
.chart svg { display: block; max-width: 100%; height: auto; }
a { color: #2756a0; }
footer { color: #8a96a3; font-size: 12px; margin-top: 28px; }
"#;

/// A whole page: `<head>` with the inline stylesheet, a top bar, and `body`.
pub fn page(title: &str, top_meta: &str, body: &str, refresh_s: Option<u32>) -> String {
    let refresh = refresh_s
        .map(|s| format!(r#"<meta http-equiv="refresh" content="{s}">"#))
        .unwrap_or_default();
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rollgate {version}">
{refresh}<title>{title}</title>
<style>{CSS}</style>
</head>
<body>
<header class="top"><span class="brand">rollgate</span><span class="meta">{top_meta}</span></header>
<main>
{body}
<footer>rollgate {version}</footer>
</main>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
        title = esc(title),
        top_meta = top_meta,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn parses_journal_timestamps() {
        let a = parse_ts("2026-11-28T04:22:10Z").unwrap();
        let b = parse_ts("2026-11-28T04:22:11.500Z").unwrap();
        assert_eq!(b.duration_since(a).unwrap(), Duration::from_millis(1500));
        assert!(parse_ts("yesterday").is_none());
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_secs(0.25), "250 ms");
        assert_eq!(human_secs(4.25), "4.2 s");
        assert_eq!(human_secs(42.0), "42 s");
        assert_eq!(human_secs(185.0), "3 min 05 s");
        assert_eq!(human_secs(7800.0), "2 h 10 min");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            path_segment("r-20261128T042210Z-9c1d"),
            "r-20261128T042210Z-9c1d"
        );
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }
}
