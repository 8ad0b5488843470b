//! The ways a connection or one of its commands can fail.

use std::fmt;

use super::Phase;

/// An error or notice reported by the server (ErrorResponse or NoticeResponse).
///
/// Commands that the server refuses complete with one of these; a FATAL or
/// PANIC one ends the connection as [`ConnectionError::Server`]. Its
/// `Display` reads like psql's: `FATAL 28P01: password authentication failed
/// for user "x"`.
///
/// The report is boxed behind accessors (as tokio-postgres's `DbError`): it
/// holds up to seven texts, and every `Result` that may carry it
/// ([`NotifyError`](crate::bus::NotifyError), [`BusError`](crate::bus::BusError),
/// a command's result) stays one pointer wide on the error side.
///
/// ```
/// use pgnotify_core::protocol::ServerError;
///
/// let e = ServerError::new("ERROR", "25006", "cannot execute LISTEN during recovery")
///     .with_hint("connect to the primary");
/// assert_eq!(e.code(), "25006");
/// assert_eq!(e.hint(), Some("connect to the primary"));
/// assert_eq!(
///     e.to_string(),
///     "ERROR 25006: cannot execute LISTEN during recovery (hint: connect to the primary)"
/// );
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ServerError(Box<Report>);

/// The fields of a [`ServerError`], as the server sent them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) severity: String,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) detail: Option<String>,
    pub(crate) hint: Option<String>,
    pub(crate) position: Option<String>,
    pub(crate) r#where: Option<String>,
}

impl ServerError {
    /// Builds an error from its severity, SQLSTATE and message, with no other fields.
    pub fn new(
        severity: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self(Box::new(Report {
            severity: severity.into(),
            code: code.into(),
            message: message.into(),
            ..Report::default()
        }))
    }

    /// The error with its detail (the server's `D` field) set to `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// The error with its hint (the server's `H` field) set to `hint`.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    pub(crate) fn from_report(report: Report) -> Self {
        Self(Box::new(report))
    }

    /// The severity, not localised when the server sends it so (ERROR, FATAL,
    /// PANIC, WARNING, NOTICE, DEBUG, INFO, LOG).
    pub fn severity(&self) -> &str {
        &self.0.severity
    }

    /// The SQLSTATE code, for example `28P01` or `57P01`.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The primary, human-readable message.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// An optional second message with more detail.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// An optional suggestion of what to do about it.
    pub fn hint(&self) -> Option<&str> {
        self.0.hint.as_deref()
    }

    /// The 1-based character position in the query string the error points at.
    pub fn position(&self) -> Option<&str> {
        self.0.position.as_deref()
    }

    /// The context (call stack) the error happened in (the server's `W` field).
    pub fn where_(&self) -> Option<&str> {
        self.0.r#where.as_deref()
    }

    /// Whether the server ends the session after this error (FATAL or PANIC).
    pub fn is_fatal(&self) -> bool {
        matches!(self.severity(), "FATAL" | "PANIC")
    }
}

impl fmt::Debug for ServerError {
    /// The fields, as a struct named `ServerError` (the box is not shown).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &*self.0;
        f.debug_struct("ServerError")
            .field("severity", &r.severity)
            .field("code", &r.code)
            .field("message", &r.message)
            .field("detail", &r.detail)
            .field("hint", &r.hint)
            .field("position", &r.position)
            .field("where", &r.r#where)
            .finish()
    }
}

/// Shows server text on one line, and inert: control characters (newlines,
/// escape sequences) and the Unicode controls that reorder text appear as
/// escapes, so a server cannot forge log lines or drive a terminal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OneLine<'a>(pub(crate) &'a str);

impl OneLine<'_> {
    fn is_inert(c: char) -> bool {
        !(c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
    }
}

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(|c| !Self::is_inert(c)) {
            f.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write!(f, "{}", c.escape_default())?;
            rest = rest
                .get(at.saturating_add(c.len_utf8())..)
                .unwrap_or_default();
        }
        f.write_str(rest)
    }
}

impl fmt::Display for ServerError {
    /// One line, with the server's texts escaped (`OneLine`); the fields
    /// keep them as sent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            OneLine(self.severity()),
            OneLine(self.code()),
            OneLine(self.message())
        )?;
        if let Some(detail) = self.detail() {
            write!(f, " (detail: {})", OneLine(detail))?;
        }
        if let Some(hint) = self.hint() {
            write!(f, " (hint: {})", OneLine(hint))?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// Why a connection ended. It is terminal: after
/// [`WireEvent::Failed`](super::WireEvent::Failed) the connection
/// produces nothing more and the caller replaces it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The server sent bytes that break the protocol.
    Protocol(ProtocolError),
    /// The server reported a FATAL or PANIC error, or refused the startup
    /// (for example `28P01` bad password, `3D000` unknown database, `57P01`
    /// terminated by an administrator).
    Server(ServerError),
    /// Authentication could not be carried out on the client's side.
    Auth(AuthError),
    /// TLS was required but the server does not accept it.
    TlsRefused,
    /// The server answered the SSL request with an error instead of yes or
    /// no. A server out of connections or memory does that, and so can a
    /// man in the middle: nothing sent before TLS is trusted, so the text
    /// is neither read nor shown. Transient: the attempt is retried.
    SslRequestFailed,
    /// A startup parameter contains a NUL byte and cannot be sent.
    InvalidStartupParameter {
        /// Which parameter (`user`, `database`, `application_name`).
        name: &'static str,
    },
    /// Startup finished without BackendKeyData, so the server's process id
    /// (which the bus needs for its ping channel) is unknown. Raised by the
    /// bus, not by the connection: libpq accepts such servers.
    MissingBackendKey,
    /// The driver called a method in a phase where it makes no sense (for
    /// example [`handle_tls_established`](super::Connection::handle_tls_established)
    /// without a preceding `StartTls`).
    OutOfOrderCall {
        /// The method.
        call: &'static str,
        /// The phase the connection was in.
        phase: Phase,
    },
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Server(e) => write!(f, "the server ended the connection: {e}"),
            Self::Auth(e) => write!(f, "authentication failed: {e}"),
            Self::TlsRefused => f.write_str(
                "the server refused TLS, and the connection requires it (sslmode=require)",
            ),
            Self::SslRequestFailed => f.write_str(
                "the server refused or broke the SSL request (it answered with an error, whose \
                 text is not shown because nothing sent before TLS can be trusted)",
            ),
            Self::InvalidStartupParameter { name } => {
                write!(f, "the startup parameter {name} contains a NUL byte")
            }
            Self::MissingBackendKey => f.write_str(
                "the server did not report its process id (no BackendKeyData at startup)",
            ),
            Self::OutOfOrderCall { call, phase } => {
                write!(
                    f,
                    "{call} was called while the connection was in phase {phase:?}"
                )
            }
        }
    }
}

impl ConnectionError {
    /// Whether connecting again may succeed without a change of
    /// configuration.
    ///
    /// Not transient: wrong credentials or missing authorization (SQLSTATE
    /// class 28), an unknown database (`3D000`), no CONNECT privilege
    /// (`42501`), an authentication method or TLS requirement the two sides
    /// cannot agree on, bad startup parameters. Transient: everything else,
    /// including protocol errors (a proxy or network fault can cause them)
    /// and server shutdowns (`57P01`, `57P03`, `53300` too many connections).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Protocol(_) | Self::MissingBackendKey | Self::SslRequestFailed => true,
            Self::Server(e) => {
                let code = e.code();
                !(code.starts_with("28") || code == "3D000" || code == "42501")
            }
            Self::Auth(_)
            | Self::TlsRefused
            | Self::InvalidStartupParameter { .. }
            | Self::OutOfOrderCall { .. } => false,
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Protocol(e) => Some(e),
            Self::Server(e) => Some(e),
            Self::Auth(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ProtocolError> for ConnectionError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<AuthError> for ConnectionError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

/// A violation of the wire protocol by the server (or by whatever sits
/// between it and the client).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame header announced more bytes than the configured cap.
    FrameTooLarge {
        /// The message tag.
        tag: u8,
        /// The announced length (including the four length bytes).
        len: u32,
        /// The cap ([`StartupParams::max_frame_len`](super::StartupParams::max_frame_len)).
        max: usize,
    },
    /// A frame header announced fewer than the four bytes of the length
    /// itself, or a negative length.
    BadLength {
        /// The message tag.
        tag: u8,
        /// The announced length, as the signed 32-bit value the protocol uses.
        len: i32,
    },
    /// A message tag the protocol does not define.
    UnknownMessage {
        /// The tag.
        tag: u8,
    },
    /// A message that is valid in general but not at this point.
    Unexpected {
        /// The message tag.
        tag: u8,
        /// The phase the connection was in.
        phase: Phase,
    },
    /// Text that must be UTF-8 was not.
    InvalidUtf8 {
        /// Which text.
        what: &'static str,
    },
    /// A message whose body does not match its type.
    Malformed {
        /// The message tag.
        tag: u8,
        /// What is wrong with it.
        what: &'static str,
    },
    /// Bytes arrived after the one-byte answer to SSLRequest and before TLS
    /// was set up. Accepting them would let a man in the middle inject
    /// plaintext that looks as if it came over TLS (CVE-2021-23222).
    DataAfterSslResponse,
    /// The answer to SSLRequest was neither `S`, `N` nor an ErrorResponse.
    BadSslResponse {
        /// The byte received.
        byte: u8,
    },
}

/// Formats a message tag as a character when printable, as a number otherwise.
struct Tag(u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { tag, len, max } => write!(
                f,
                "message {} announced {len} bytes, more than the limit of {max}",
                Tag(*tag)
            ),
            Self::BadLength { tag, len } => write!(
                f,
                "message {} announced a length of {len}, less than the minimum of 4",
                Tag(*tag)
            ),
            Self::UnknownMessage { tag } => write!(f, "unknown message type {}", Tag(*tag)),
            Self::Unexpected { tag, phase } => write!(
                f,
                "message {} was not expected in phase {phase:?}",
                Tag(*tag)
            ),
            Self::InvalidUtf8 { what } => write!(f, "the {what} is not valid UTF-8"),
            Self::Malformed { tag, what } => {
                write!(f, "malformed message {}: {what}", Tag(*tag))
            }
            Self::DataAfterSslResponse => f.write_str(
                "the server sent data after its answer to SSLRequest, before TLS was set up \
                 (possible man-in-the-middle injection)",
            ),
            Self::BadSslResponse { byte } => write!(
                f,
                "the server answered SSLRequest with {}, not 'S', 'N' or an error",
                Tag(*byte)
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why authentication could not be carried out on the client's side.
///
/// A wrong password is not one of these: the server reports it as
/// [`ConnectionError::Server`] with SQLSTATE `28P01`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The server asked for a method pgnotify does not implement.
    Unsupported {
        /// The method (`GSSAPI`, `SSPI`, `Kerberos V5`, `SCM credentials`).
        method: &'static str,
    },
    /// The server offered only SASL mechanisms pgnotify does not implement.
    NoSupportedSaslMechanism {
        /// The mechanisms the server offered.
        offered: Vec<String>,
    },
    /// The server asked for a password and none is configured.
    PasswordRequired,
    /// The configured password contains a NUL byte, which the password
    /// message cannot carry.
    PasswordContainsNul,
    /// The SCRAM exchange failed (bad nonce, bad server signature, ...).
    Scram(String),
    /// The server declared authentication complete before the SCRAM exchange
    /// proved that it knows the password; accepting that would let an
    /// impostor skip authentication.
    IncompleteScram,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported { method } => {
                write!(
                    f,
                    "the server asks for {method} authentication, which is not supported"
                )
            }
            Self::NoSupportedSaslMechanism { offered } => write!(
                f,
                "the server offers only SASL mechanisms that are not supported: {}",
                offered.join(", ")
            ),
            Self::PasswordRequired => {
                f.write_str("the server asks for a password and none is configured")
            }
            Self::PasswordContainsNul => {
                f.write_str("the password contains a NUL byte and cannot be sent")
            }
            Self::Scram(reason) => write!(f, "SCRAM exchange failed: {reason}"),
            Self::IncompleteScram => {
                f.write_str("the server accepted the login before completing the SCRAM exchange")
            }
        }
    }
}

impl std::error::Error for AuthError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_shown_on_one_line_and_inert() {
        let e = ServerError::new("FATAL", "28P01", "bad\nFATAL: forged\x1b[31m\u{202e}txt")
            .with_detail("tab\there");
        assert_eq!(
            e.to_string(),
            r"FATAL 28P01: bad\nFATAL: forged\u{1b}[31m\u{202e}txt (detail: tab\there)"
        );
        assert_eq!(
            ServerError::new("ERROR", "42000", "d\u{e9}j\u{e0} vu \u{2014} ok").to_string(),
            "ERROR 42000: d\u{e9}j\u{e0} vu \u{2014} ok",
            "printable Unicode is kept"
        );
    }
}
