//! Answering the server's authentication requests: cleartext, MD5,
//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS.

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramSha256,
};
use postgres_protocol::message::frontend;

use super::Phase;
use super::backend::AuthRequest;
use super::error::{AuthError, ConnectionError, ProtocolError};

/// What the client knows to authenticate with.
pub(crate) struct Credentials<'a> {
    pub(crate) user: &'a str,
    pub(crate) password: Option<&'a str>,
    /// The `tls-server-end-point` hash of the server's certificate, when the
    /// connection is TLS and the driver could compute it.
    pub(crate) channel_binding: Option<&'a [u8]>,
}

/// Where the exchange stands.
#[derive(Default)]
enum State {
    /// Nothing answered yet.
    #[default]
    Start,
    /// A cleartext or MD5 password was sent; AuthenticationOk or an error is next.
    PasswordSent,
    /// SASLInitialResponse sent; AuthenticationSASLContinue is next.
    ScramContinue(Box<ScramSha256>),
    /// SASLResponse sent; AuthenticationSASLFinal is next.
    ScramFinal(Box<ScramSha256>),
    /// The server proved it knows the password; AuthenticationOk is next.
    ScramVerified,
}

/// The outcome of one authentication request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// An answer was queued (or none was needed); more requests follow.
    Continue,
    /// AuthenticationOk: the login is accepted.
    Authenticated,
}

/// The client side of the authentication exchange.
#[derive(Default)]
pub(crate) struct Authenticator {
    state: State,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Start => "Start",
            State::PasswordSent => "PasswordSent",
            State::ScramContinue(_) => "ScramContinue",
            State::ScramFinal(_) => "ScramFinal",
            State::ScramVerified => "ScramVerified",
        };
        f.debug_struct("Authenticator")
            .field("state", &state)
            .finish()
    }
}

fn out_of_order() -> ConnectionError {
    ProtocolError::Unexpected {
        tag: b'R',
        phase: Phase::Authenticating,
    }
    .into()
}

impl Authenticator {
    /// Answers one request, appending the reply to `out`.
    pub(crate) fn handle(
        &mut self,
        request: AuthRequest<'_>,
        creds: &Credentials<'_>,
        out: &mut BytesMut,
    ) -> Result<Step, ConnectionError> {
        match (std::mem::take(&mut self.state), request) {
            (State::Start | State::PasswordSent | State::ScramVerified, AuthRequest::Ok) => {
                Ok(Step::Authenticated)
            }
            (State::ScramContinue(_) | State::ScramFinal(_), AuthRequest::Ok) => {
                Err(AuthError::IncompleteScram.into())
            }
            (_, AuthRequest::Unsupported(method)) => Err(AuthError::Unsupported { method }.into()),
            (State::Start, AuthRequest::Cleartext) => {
                let password = creds.password.ok_or(AuthError::PasswordRequired)?;
                self.send_password(password.as_bytes(), out)
            }
            (State::Start, AuthRequest::Md5 { salt }) => {
                let password = creds.password.ok_or(AuthError::PasswordRequired)?;
                let hash = md5_hash(creds.user.as_bytes(), password.as_bytes(), salt);
                self.send_password(hash.as_bytes(), out)
            }
            (State::Start, AuthRequest::Sasl { mechanisms }) => {
                self.start_scram(&mechanisms, creds, out)
            }
            (State::ScramContinue(mut scram), AuthRequest::SaslContinue(data)) => {
                scram
                    .update(data)
                    .map_err(|e| AuthError::Scram(e.to_string()))?;
                push_checked(out, scram_error("client-final message"), |out| {
                    frontend::sasl_response(scram.message(), out)
                })?;
                self.state = State::ScramFinal(scram);
                Ok(Step::Continue)
            }
            (State::ScramFinal(mut scram), AuthRequest::SaslFinal(data)) => {
                scram
                    .finish(data)
                    .map_err(|e| AuthError::Scram(e.to_string()))?;
                self.state = State::ScramVerified;
                Ok(Step::Continue)
            }
            _ => Err(out_of_order()),
        }
    }

    fn send_password(
        &mut self,
        password: &[u8],
        out: &mut BytesMut,
    ) -> Result<Step, ConnectionError> {
        push_checked(out, AuthError::PasswordContainsNul, |out| {
            frontend::password_message(password, out)
        })?;
        self.state = State::PasswordSent;
        Ok(Step::Continue)
    }

    /// Picks the mechanism as libpq and tokio-postgres do: SCRAM-SHA-256-PLUS
    /// when both sides can bind the channel; otherwise SCRAM-SHA-256, telling
    /// the server whether the client could have bound it (`y`) or not (`n`),
    /// so that a man in the middle stripping `-PLUS` from the list is caught.
    fn start_scram(
        &mut self,
        mechanisms: &[&str],
        creds: &Credentials<'_>,
        out: &mut BytesMut,
    ) -> Result<Step, ConnectionError> {
        let plus = mechanisms.contains(&SCRAM_SHA_256_PLUS);
        let plain = mechanisms.contains(&SCRAM_SHA_256);
        let (binding, mechanism) = match (creds.channel_binding, plus, plain) {
            (Some(data), true, _) => (
                ChannelBinding::tls_server_end_point(data.to_vec()),
                SCRAM_SHA_256_PLUS,
            ),
            (None, true, _) | (None, false, true) => (ChannelBinding::unsupported(), SCRAM_SHA_256),
            (Some(_), false, true) => (ChannelBinding::unrequested(), SCRAM_SHA_256),
            (_, false, false) => {
                return Err(AuthError::NoSupportedSaslMechanism {
                    offered: mechanisms.iter().map(|m| (*m).to_owned()).collect(),
                }
                .into());
            }
        };
        let password = creds.password.ok_or(AuthError::PasswordRequired)?;
        let scram = ScramSha256::new(password.as_bytes(), binding);
        push_checked(out, scram_error("client-first message"), |out| {
            frontend::sasl_initial_response(mechanism, scram.message(), out)
        })?;
        self.state = State::ScramContinue(Box::new(scram));
        Ok(Step::Continue)
    }
}

/// Runs a postgres-protocol builder, removing its partial output on failure.
fn push_checked(
    out: &mut BytesMut,
    error: AuthError,
    build: impl FnOnce(&mut BytesMut) -> std::io::Result<()>,
) -> Result<(), ConnectionError> {
    let start = out.len();
    build(out).map_err(|_| {
        out.truncate(start);
        ConnectionError::Auth(error)
    })
}

fn scram_error(what: &str) -> AuthError {
    AuthError::Scram(format!("the {what} could not be encoded"))
}
