use std::io;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;

/// A name a client could present: a forged second line, a terminal colour, C1 and DEL.
const HOSTILE: &str = "ann\n2026-01-01T00:00:00.000000Z  INFO regate: forged\r\x1b[31mred\x1b[0m\u{85}\u{7f}\u{2028}\t";

/// Log lines written into memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .expect("UTF-8 lines")
    }
}

/// What the log of `format` holds after three events carrying `name` every way a call site
/// can log it: display, debug and string fields, the message, an error, a span's field.
fn logged(format: Format, name: &str) -> String {
    let captured = Captured::default();
    let sink = captured.clone();
    let logs = subscriber(format, move || sink.clone(), false);
    tracing::subscriber::with_default(logs, || {
        tracing::info!(user = %name, debug = ?name, plain = name, "console: signed in {name}");
        let error = io::Error::other(name.to_string());
        tracing::warn!(error = &error as &dyn std::error::Error, "failed");
        let span = tracing::info_span!("request", path = %name);
        let _entered = span.enter();
        tracing::info!(%name, "inside");
    });
    captured.text()
}

#[test]
fn escaping_writes_controls_as_debug_does_and_leaves_the_rest() {
    for (text, escaped) in [
        ("plain: ä ✓ \"q\" \\", "plain: ä ✓ \"q\" \\"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("\x1b[31mred", "\\u{1b}[31mred"),
        ("\u{0}\u{7f}\u{85}\u{9f}", "\\u{0}\\u{7f}\\u{85}\\u{9f}"),
        ("\u{2028}\u{2029}", "\\u{2028}\\u{2029}"),
    ] {
        let mut out = String::new();
        write_escaped(&mut out, text).expect("write");
        assert_eq!(out, escaped, "{text:?}");
    }
}

#[test]
fn text_lines_carry_no_control_character_from_a_value() {
    let text = logged(Format::Text, HOSTILE);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per event:\n{text}");
    for line in &lines {
        assert!(!line.chars().any(must_escape), "a raw control in {line:?}");
        // tracing writes ESC as `\x1b` in messages and errors; other values as `{:?}` does.
        assert!(
            line.contains("\\u{1b}[31mred") || line.contains("\\x1b[31mred"),
            "{line}"
        );
    }
    assert!(lines[0].contains("user=ann\\n2026"), "{}", lines[0]);
    assert!(lines[2].contains("request{path=ann\\n"), "{}", lines[2]);
}

#[test]
fn json_lines_carry_every_value_escaped_by_serde() {
    let text = logged(Format::Json, HOSTILE);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "one line per event:\n{text}");
    assert!(!text.contains('\x1b') && !text.contains('\r'));
    let first: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON line");
    assert_eq!(first["user"], HOSTILE);
    assert_eq!(first["plain"], HOSTILE);
    assert_eq!(first["message"], format!("console: signed in {HOSTILE}"));
    let last: serde_json::Value = serde_json::from_str(lines[2]).expect("a JSON line");
    assert_eq!(last["span"]["path"], HOSTILE);
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn quoted_writes_what_debug_writes(text in any::<String>(), ascii in "[ -~]{0,40}") {
        for text in [text, ascii] {
            let mut line = String::new();
            super::quoted(&mut line, &text);
            prop_assert_eq!(line, format!("{text:?}"));
        }
    }

    /// Whatever a value holds, its text line is one line without a raw control character.
    #[test]
    fn any_value_makes_one_clean_line_per_event(name in any::<String>()) {
        let text = logged(Format::Text, &name);
        prop_assert_eq!(text.matches('\n').count(), 3);
        prop_assert!(!text.lines().any(|line| line.chars().any(must_escape)), "{:?}", text);
    }
}
