//! The few SQL statements a LISTEN/NOTIFY client sends, lexed and parsed as
//! PostgreSQL does: unquoted identifiers fold to lower case, quoted ones keep
//! their case with `""` for a quote, string literals use `''`, identifiers
//! longer than 63 bytes are truncated with a NOTICE.

use super::error::SqlError;

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
pub(crate) const MAX_IDENTIFIER_LEN: usize = 63;

/// One parsed statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Statement {
    Listen(String),
    Unlisten(String),
    UnlistenAll,
    Notify {
        channel: String,
        payload: String,
    },
    PgNotify {
        channel: Arg,
        payload: Arg,
    },
    ListeningChannels,
    BackendPid,
    SelectInt(i32),
    Show(Setting),
    /// `SET name = value` of a session timeout (the only settings the
    /// simulated server knows).
    SetTimeout {
        name: String,
        value: String,
    },
}

/// An argument of `pg_notify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    Text(String),
    Null,
    /// `$n`, numbered from 1.
    Param(usize),
}

/// A setting `SHOW` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setting {
    TransactionReadOnly,
    InHotStandby,
    ServerVersion,
}

/// A query string's statements, plus the NOTICEs its parsing raised.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) statements: Vec<Statement>,
    pub(crate) notices: Vec<String>,
    /// The highest `$n` used, which is the number of parameters.
    pub(crate) params: usize,
}

/// Parses a whole query string; one syntax error anywhere rejects all of it,
/// as PostgreSQL parses a simple query before executing any statement.
pub(crate) fn parse(sql: &str) -> Result<Parsed, SqlError> {
    let mut parsed = Parsed::default();
    let tokens = lex(sql, &mut parsed.notices)?;
    for token in &tokens {
        if let Tok::Param(n) = token.tok {
            parsed.params = parsed.params.max(n);
        }
    }
    let mut begin = 0;
    while begin < tokens.len() {
        let end = tokens[begin..]
            .iter()
            .position(|t| t.tok == Tok::Sym(";"))
            .map_or(tokens.len(), |n| begin + n);
        if end > begin {
            let mut parser = Parser {
                sql,
                tokens: &tokens[begin..end],
                at: 0,
                next_after: tokens.get(end),
            };
            parsed.statements.push(parser.statement()?);
        }
        begin = end + 1;
    }
    Ok(parsed)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An unquoted identifier or keyword, folded to lower case.
    Word(String),
    Quoted(String),
    Str(String),
    Param(usize),
    Int(String),
    Sym(&'static str),
    Other,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    start: usize,
    end: usize,
}

fn lex(sql: &str, notices: &mut Vec<String>) -> Result<Vec<Token>, SqlError> {
    let b = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0c => {
                i += 1;
                continue;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_comment(b, i)
                    .ok_or_else(|| near("unterminated /* comment", &sql[start..]))?;
                continue;
            }
            b'"' => {
                let (text, end) = quoted(sql, i, b'"')
                    .ok_or_else(|| near("unterminated quoted identifier", &sql[start..]))?;
                if text.is_empty() {
                    return Err(near("zero-length delimited identifier", "\"\""));
                }
                i = end;
                Tok::Quoted(truncate_identifier(text, notices))
            }
            b'\'' => {
                let (text, end) = quoted(sql, i, b'\'')
                    .ok_or_else(|| near("unterminated quoted string", &sql[start..]))?;
                i = end;
                Tok::Str(text)
            }
            b'$' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                match sql[start + 1..i].parse::<usize>() {
                    Ok(n) if (1..=65_535).contains(&n) => Tok::Param(n),
                    _ => return Err(near("syntax error", &sql[start..i])),
                }
            }
            b'0'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                Tok::Int(sql[start..i].to_owned())
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                while b.get(i).is_some_and(|&c| {
                    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
                }) {
                    i += 1;
                }
                Tok::Word(truncate_identifier(
                    sql[start..i].to_ascii_lowercase(),
                    notices,
                ))
            }
            b':' if b.get(i + 1) == Some(&b':') => {
                i += 2;
                Tok::Sym("::")
            }
            b'(' | b')' | b',' | b';' | b'*' | b'=' => {
                i += 1;
                Tok::Sym(match c {
                    b'(' => "(",
                    b')' => ")",
                    b',' => ",",
                    b';' => ";",
                    b'=' => "=",
                    _ => "*",
                })
            }
            _ => {
                i += sql[i..].chars().next().map_or(1, char::len_utf8);
                Tok::Other
            }
        };
        tokens.push(Token { tok, start, end: i });
    }
    Ok(tokens)
}

/// The end of a (nested) block comment starting at `i`, if it is closed.
fn skip_comment(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The unescaped text of a literal delimited by `quote` at `start`, and the
/// index after its closing quote; a doubled quote stands for one.
fn quoted(sql: &str, start: usize, quote: u8) -> Option<(String, usize)> {
    let b = sql.as_bytes();
    let mut text = String::new();
    let mut i = start + 1;
    let mut run = i;
    loop {
        let at = i + b.get(i..)?.iter().position(|&c| c == quote)?;
        text.push_str(&sql[run..at]);
        if b.get(at + 1) == Some(&quote) {
            text.push(quote as char);
            i = at + 2;
            run = i;
        } else {
            return Some((text, at + 1));
        }
    }
}

/// Cuts an identifier to 63 bytes on a character boundary, with the NOTICE
/// PostgreSQL raises.
fn truncate_identifier(mut ident: String, notices: &mut Vec<String>) -> String {
    if ident.len() > MAX_IDENTIFIER_LEN {
        let mut cut = MAX_IDENTIFIER_LEN;
        while !ident.is_char_boundary(cut) {
            cut -= 1;
        }
        let kept = ident[..cut].to_owned();
        notices.push(format!(
            "identifier \"{ident}\" will be truncated to \"{kept}\""
        ));
        ident.truncate(cut);
    }
    ident
}

fn near(what: &str, text: &str) -> SqlError {
    SqlError::syntax(format!("{what} at or near \"{text}\""))
}

struct Parser<'a> {
    sql: &'a str,
    tokens: &'a [Token],
    at: usize,
    /// The token after this statement (its `;`), for "at or near" messages.
    next_after: Option<&'a Token>,
}

impl Parser<'_> {
    fn statement(&mut self) -> Result<Statement, SqlError> {
        let statement = match self.word().as_deref() {
            Some("listen") => Statement::Listen(self.identifier()?),
            Some("unlisten") => {
                if self.eat(&Tok::Sym("*")) {
                    Statement::UnlistenAll
                } else {
                    Statement::Unlisten(self.identifier()?)
                }
            }
            Some("notify") => {
                let channel = self.identifier()?;
                let payload = if self.eat(&Tok::Sym(",")) {
                    self.string()?
                } else {
                    String::new()
                };
                Statement::Notify { channel, payload }
            }
            Some("select") => self.select()?,
            Some("show") => self.show()?,
            Some("set") => self.set()?,
            _ => {
                self.at = 0;
                return Err(self.unexpected());
            }
        };
        match self.tokens.get(self.at) {
            None => Ok(statement),
            Some(_) => Err(self.unexpected()),
        }
    }

    fn select(&mut self) -> Result<Statement, SqlError> {
        if let Some(Tok::Int(digits)) = self.peek() {
            let value = digits.parse().map_err(|_| {
                SqlError::error(
                    "22003",
                    format!("value \"{digits}\" is out of range for type integer"),
                )
            })?;
            self.at += 1;
            return Ok(Statement::SelectInt(value));
        }
        match self.identifier()?.as_str() {
            "pg_notify" => {
                self.expect(&Tok::Sym("("))?;
                let channel = self.arg()?;
                self.expect(&Tok::Sym(","))?;
                let payload = self.arg()?;
                self.expect(&Tok::Sym(")"))?;
                Ok(Statement::PgNotify { channel, payload })
            }
            "pg_listening_channels" => {
                self.expect(&Tok::Sym("("))?;
                self.expect(&Tok::Sym(")"))?;
                Ok(Statement::ListeningChannels)
            }
            "pg_backend_pid" => {
                self.expect(&Tok::Sym("("))?;
                self.expect(&Tok::Sym(")"))?;
                Ok(Statement::BackendPid)
            }
            other => Err(SqlError::error(
                "42703",
                format!("column \"{other}\" does not exist"),
            )),
        }
    }

    fn set(&mut self) -> Result<Statement, SqlError> {
        let name = self.identifier()?;
        if !self.eat(&Tok::Sym("=")) && self.word().as_deref() != Some("to") {
            return Err(self.unexpected());
        }
        let value = match self.peek() {
            Some(Tok::Int(v) | Tok::Str(v) | Tok::Word(v)) => v.clone(),
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        match name.as_str() {
            "statement_timeout"
            | "idle_in_transaction_session_timeout"
            | "idle_session_timeout"
            | "transaction_timeout" => Ok(Statement::SetTimeout { name, value }),
            _ => Err(SqlError::error(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }

    fn show(&mut self) -> Result<Statement, SqlError> {
        let name = self.identifier()?;
        match name.as_str() {
            "transaction_read_only" => Ok(Statement::Show(Setting::TransactionReadOnly)),
            "in_hot_standby" => Ok(Statement::Show(Setting::InHotStandby)),
            "server_version" => Ok(Statement::Show(Setting::ServerVersion)),
            _ => Err(SqlError::error(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }

    fn arg(&mut self) -> Result<Arg, SqlError> {
        let arg = match self.peek() {
            Some(Tok::Str(s)) => Arg::Text(s.clone()),
            Some(Tok::Param(n)) => Arg::Param(*n),
            Some(Tok::Word(w)) if w == "null" => Arg::Null,
            _ => return Err(self.unexpected()),
        };
        self.at += 1;
        if self.eat(&Tok::Sym("::")) {
            let ty = self.identifier()?;
            if !matches!(ty.as_str(), "text" | "varchar" | "name" | "unknown") {
                return Err(SqlError::error(
                    "42883",
                    format!("function pg_notify({ty}) does not exist"),
                ));
            }
        }
        Ok(arg)
    }

    fn identifier(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Word(w) | Tok::Quoted(w)) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn string(&mut self) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn word(&mut self) -> Option<String> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let w = w.clone();
                self.at += 1;
                Some(w)
            }
            _ => None,
        }
    }

    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.at).map(|t| &t.tok)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        let hit = self.peek() == Some(tok);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), SqlError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// A syntax error at the current token, like PostgreSQL's.
    fn unexpected(&self) -> SqlError {
        match self.tokens.get(self.at).or(self.next_after) {
            Some(t) => near("syntax error", &self.sql[t.start..t.end]),
            None => SqlError::syntax("syntax error at end of input"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(sql: &str) -> Vec<Statement> {
        parse(sql).expect("parses").statements
    }

    #[test]
    fn unquoted_identifiers_fold_and_quoted_keep_case() {
        assert_eq!(
            statements(r#"LISTEN Foo; listen "Foo"; LISTEN "a""b""#),
            [
                Statement::Listen("foo".into()),
                Statement::Listen("Foo".into()),
                Statement::Listen("a\"b".into()),
            ]
        );
    }

    #[test]
    fn notify_payload_unescapes_doubled_quotes() {
        assert_eq!(
            statements("NOTIFY c, 'it''s'"),
            [Statement::Notify {
                channel: "c".into(),
                payload: "it's".into()
            }]
        );
    }

    #[test]
    fn pg_notify_takes_literals_params_and_null() {
        assert_eq!(
            statements("select PG_NOTIFY($1::text, NULL)"),
            [Statement::PgNotify {
                channel: Arg::Param(1),
                payload: Arg::Null
            }]
        );
        assert_eq!(parse("SELECT pg_notify($1, $2)").map(|p| p.params), Ok(2));
    }

    #[test]
    fn long_identifiers_are_truncated_with_a_notice() {
        let long = "x".repeat(70);
        let parsed = parse(&format!("LISTEN \"{long}\"")).expect("parses");
        assert_eq!(parsed.statements, [Statement::Listen("x".repeat(63))]);
        assert_eq!(parsed.notices.len(), 1);
    }

    #[test]
    fn comments_and_empty_statements_are_skipped() {
        assert_eq!(
            statements("-- hi\n;; /* a /* nested */ b */ UNLISTEN * ;"),
            [Statement::UnlistenAll]
        );
    }

    #[test]
    fn syntax_errors_name_the_offending_token() {
        assert_eq!(
            parse("LISTEN a b").unwrap_err().message,
            "syntax error at or near \"b\""
        );
        assert_eq!(
            parse("LISTEN").unwrap_err().message,
            "syntax error at end of input"
        );
        assert_eq!(
            parse("LISTEN ;").unwrap_err().message,
            "syntax error at or near \";\""
        );
        assert_eq!(parse("VACUUM").unwrap_err().code, "42601");
        assert_eq!(
            parse("LISTEN 'x").unwrap_err().message,
            "unterminated quoted string at or near \"'x\""
        );
        assert_eq!(parse("LISTEN \"\"").unwrap_err().code, "42601");
    }
}
