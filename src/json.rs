//! JSON written straight into a `String`, byte for byte as serde_json writes it (compact,
//! fields in call order), for the lines gsup writes on its way out: the log lines and the
//! shutdown report (issue 14: serde's per-field work was a third of the report's cost,
//! and the report is most of gsup's work between the child's exit and its own).

use std::fmt::Write as _;

/// `text` as a JSON string, escaped as serde_json escapes (`\"`, `\\`, the short forms of
/// \b \f \n \r \t, `\u00xx` for the other control characters).
pub fn push_str(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    let bytes = text.as_bytes();
    let mut start = 0;
    // Byte by byte: every byte to escape is ASCII, and no byte of a multi-byte UTF-8
    // character is below 0x80, so each cut falls between characters.
    for (at, &byte) in bytes.iter().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&text[start..at]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escape);
        }
        start = at + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// `value` as serde_json spells it: `1.0`, `0.25`, `null` for NaN and the infinities.
pub fn push_f64(out: &mut String, value: f64) {
    match serde_json::Number::from_f64(value) {
        Some(number) => {
            let _ = write!(out, "{number}");
        }
        None => out.push_str("null"),
    }
}

/// One JSON object being written: `field` by `field`, then `end`.
pub struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    pub fn begin(out: &'a mut String) -> Self {
        out.push('{');
        Object { out, empty: true }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if !std::mem::take(&mut self.empty) {
            self.out.push(',');
        }
        // Keys are gsup's own field names: nothing to escape.
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
        self.out
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        push_str(self.key(key), value);
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.str(key, value),
            None => self.raw(key, "null"),
        }
    }

    pub fn f64(&mut self, key: &str, value: f64) -> &mut Self {
        push_f64(self.key(key), value);
        self
    }

    pub fn opt_f64(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        match value {
            Some(value) => self.f64(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// An integer or a bool: `Display` is JSON's spelling for both.
    pub fn display(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.key(key), "{value}");
        self
    }

    pub fn opt_display(&mut self, key: &str, value: Option<impl std::fmt::Display>) -> &mut Self {
        match value {
            Some(value) => self.display(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// `json`, already JSON, as the value of `key`.
    pub fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    /// The value of `key` written by `write` into the line itself (an array, an object).
    pub fn with(&mut self, key: &str, write: impl FnOnce(&mut String)) -> &mut Self {
        write(self.key(key));
        self
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Strings and numbers come out as serde_json writes them.
        #[test]
        fn matches_serde_json(text in any::<String>(), number in any::<f64>(), small in -1e9f64..1e9) {
            let mut out = String::new();
            push_str(&mut out, &text);
            prop_assert_eq!(&out, &serde_json::to_string(&text).expect("a string serializes"));
            for value in [number, small, small.trunc()] {
                let mut out = String::new();
                push_f64(&mut out, value);
                prop_assert_eq!(out, serde_json::to_string(&value).expect("an f64 serializes"));
            }
        }
    }

    #[test]
    fn objects_are_compact_and_in_order() {
        let mut out = String::new();
        let mut object = Object::begin(&mut out);
        object
            .str("a", "x\"y")
            .opt_str("b", None)
            .f64("c", 1.0)
            .opt_f64("d", Some(0.25))
            .display("e", -3)
            .display("f", true)
            .opt_display("g", None::<u64>)
            .with("h", |out| out.push_str("[]"));
        object.end();
        assert_eq!(
            out,
            r#"{"a":"x\"y","b":null,"c":1.0,"d":0.25,"e":-3,"f":true,"g":null,"h":[]}"#
        );
    }
}
