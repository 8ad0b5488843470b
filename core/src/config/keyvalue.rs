//! libpq's `key=value` connection strings: reading them, and quoting values
//! to write them.

use super::error::ConfigError;

/// libpq's separators: C `isspace` in the "C" locale.
pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
}

/// Splits a `key=value` string into its pairs, in order.
///
/// Follows libpq: whitespace may surround `=`; a value is either a run of
/// non-space characters or a single-quoted string; inside both, a backslash
/// takes the next character literally (`\'`, `\\`, `\ `). As in libpq, the
/// whitespace after `=` is skipped, so `host= port=1` sets `host` to
/// `port=1`; write `host=''` for an empty value.
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut cursor = Cursor { text, pos: 0 };
    let mut pairs = Vec::new();
    loop {
        cursor.skip_spaces();
        if cursor.at_end() {
            return Ok(pairs);
        }
        let key_start = cursor.pos;
        while cursor.peek().is_some_and(|c| !is_space(c) && c != '=') {
            cursor.bump();
        }
        let key = &text[key_start..cursor.pos];
        cursor.skip_spaces();
        if cursor.peek() != Some('=') {
            return Err(ConfigError::syntax(
                cursor.pos,
                "expected \"=\" after a parameter name",
            ));
        }
        if key.is_empty() {
            return Err(ConfigError::syntax(
                key_start,
                "expected a parameter name before \"=\"",
            ));
        }
        cursor.bump();
        cursor.skip_spaces();
        let value = cursor.value()?;
        pairs.push((key.to_owned(), value));
    }
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.bump();
        }
    }

    fn value(&mut self) -> Result<String, ConfigError> {
        let mut value = String::new();
        if self.peek() == Some('\'') {
            let quote = self.pos;
            self.bump();
            loop {
                match self.bump() {
                    None => {
                        return Err(ConfigError::syntax(quote, "unterminated quoted value"));
                    }
                    Some('\'') => return Ok(value),
                    Some('\\') => match self.bump() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(ConfigError::syntax(quote, "unterminated quoted value"));
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        }
        while let Some(c) = self.peek().filter(|&c| !is_space(c)) {
            self.bump();
            if c == '\\' {
                // A trailing backslash stands for nothing, as in libpq.
                if let Some(escaped) = self.bump() {
                    value.push(escaped);
                }
            } else {
                value.push(c);
            }
        }
        Ok(value)
    }
}

/// Appends ` key=value` (or `key=value` at the start), quoting the value
/// when it is empty or holds a space, a quote or a backslash.
pub(crate) fn push_pair(out: &mut String, key: &str, value: &str) {
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(key);
    out.push('=');
    let needs_quotes =
        value.is_empty() || value.chars().any(|c| is_space(c) || c == '\'' || c == '\\');
    if !needs_quotes {
        out.push_str(value);
        return;
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn spaces_around_equals_are_allowed() {
        assert_eq!(
            pairs("  host = a\tport=1 "),
            [pair("host", "a"), pair("port", "1")]
        );
    }

    #[test]
    fn quoted_values_keep_spaces_and_unescape() {
        assert_eq!(
            pairs(r"password='it\'s a \\secret' user=x"),
            [pair("password", r"it's a \secret"), pair("user", "x")]
        );
        assert_eq!(pairs("application_name=''"), [pair("application_name", "")]);
    }

    #[test]
    fn backslash_escapes_work_unquoted() {
        assert_eq!(pairs(r"user=a\ b\\c"), [pair("user", r"a b\c")]);
    }

    #[test]
    fn whitespace_after_equals_is_skipped_as_in_libpq() {
        assert_eq!(pairs("host= port=1"), [pair("host", "port=1")]);
    }

    #[test]
    fn syntax_errors_report_their_position() {
        assert_eq!(
            parse("host=a port"),
            Err(ConfigError::syntax(
                11,
                "expected \"=\" after a parameter name"
            ))
        );
        assert_eq!(
            parse("password='abc"),
            Err(ConfigError::syntax(9, "unterminated quoted value"))
        );
        assert_eq!(
            parse(" =x"),
            Err(ConfigError::syntax(
                1,
                "expected a parameter name before \"=\""
            ))
        );
    }

    #[test]
    fn quoting_round_trips_awkward_values() {
        for value in [
            "",
            "plain",
            "a b",
            r"it's",
            r"back\slash",
            "tab\there",
            "ünïcode",
            "a=b",
        ] {
            let mut out = String::new();
            push_pair(&mut out, "user", value);
            assert_eq!(pairs(&out), [pair("user", value)], "rendered as {out}");
        }
    }
}
