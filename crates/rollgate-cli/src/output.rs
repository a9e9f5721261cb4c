//! Output: human text on a terminal, one JSON document with `--format json`; logs on stderr.

use std::io::{IsTerminal, Write};

use serde::Serialize;

/// `println!` for everything the CLI prints: the configuration's secrets are replaced first
/// ([`rollgate_core::secrets`]), whatever the text was built from.
#[macro_export]
macro_rules! outln {
    () => { println!() };
    ($($arg:tt)*) => { println!("{}", rollgate_core::secrets::scrub(&format!($($arg)*))) };
}

/// `print!` with the configuration's secrets replaced (see [`outln!`]).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { print!("{}", rollgate_core::secrets::scrub(&format!($($arg)*))) };
}

/// `eprintln!` with the configuration's secrets replaced (see [`outln!`]).
#[macro_export]
macro_rules! errln {
    () => { eprintln!() };
    ($($arg:tt)*) => { eprintln!("{}", rollgate_core::secrets::scrub(&format!($($arg)*))) };
}

/// The log writer: stderr, with the configuration's secrets replaced in every line.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubbedStderr;

impl Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The fmt subscriber writes one whole event per call, so a secret is never split.
        let text = String::from_utf8_lossy(buf);
        std::io::stderr()
            .lock()
            .write_all(rollgate_core::secrets::scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The output format chosen by `--format`/`--json`, or by whether stdout is a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// How a subcommand should print.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    pub color: bool,
    /// Whether stdout is a terminal (live progress is shown only then, and only in human format).
    pub interactive: bool,
}

impl Output {
    pub fn detect(format: Option<Format>, no_color: bool) -> Output {
        let tty = std::io::stdout().is_terminal();
        let format = format.unwrap_or(if tty { Format::Human } else { Format::Json });
        let color = tty && !no_color && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Output {
            format,
            color,
            interactive: tty && format == Format::Human,
        }
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Print exactly one JSON document on stdout, the configuration's secrets replaced.
    pub fn json<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", rollgate_core::secrets::scrub_json_text(&text))?;
        Ok(())
    }

    /// Paint `text` with an ANSI color when color is on.
    pub fn paint(&self, text: &str, color: Color) -> String {
        if !self.color {
            return text.to_string();
        }
        let code = match color {
            Color::Green => "32",
            Color::Red => "31",
            Color::Yellow => "33",
            Color::Dim => "2",
            Color::Bold => "1",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    /// A status word (`pass`, `fail`, `promoted`, ...) colored by its meaning.
    pub fn status(&self, word: &str) -> String {
        let color = match word {
            "pass" | "promoted" | "ok" | "green" => Color::Green,
            "fail" | "rolled_back" | "rollback_failed" | "refused" | "interrupted" => Color::Red,
            "warn" | "inconclusive" | "skip" => Color::Yellow,
            _ => Color::Bold,
        };
        self.paint(word, color)
    }

    /// A table with a header row, for human output.
    pub fn table(&self, header: &[&str], rows: Vec<Vec<String>>) -> String {
        let mut t = comfy_table::Table::new();
        t.load_style(comfy_table::presets::NOTHING);
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        if !self.interactive {
            t.set_width(200);
        }
        t.set_header(header.iter().map(|h| h.to_uppercase()));
        for r in rows {
            t.add_row(r);
        }
        t.to_string()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Color {
    Green,
    Red,
    Yellow,
    Dim,
    Bold,
}
