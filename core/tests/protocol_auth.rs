//! Authentication: every method the server may ask for, scripted byte by byte.

mod protocol_common;

use pgnotify_core::protocol::{AuthError, ConnectionError, ProtocolError, WireEvent};
use protocol_common::*;

fn failed_with(outcome: &Outcome) -> &ConnectionError {
    match outcome.last() {
        WireEvent::Failed(e) => e,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[test]
fn trust_sends_only_the_startup_message() {
    let out = run_all(params(), &[trust_startup()]);
    assert_eq!(out.tags(), "_");
    assert_eq!(out.main_events(), vec![WireEvent::Ready]);
}

#[test]
fn cleartext_password_is_sent_as_is() {
    let script = [
        server(auth(3, &[])),
        server(cat(&[auth_ok(), startup_tail()])),
    ];
    let out = run_all(params_with_password(), &script);
    let msgs = out.messages();
    assert_eq!(out.tags(), "_p");
    assert_eq!(msgs[1].1, b"s3cret\0");
    assert_eq!(out.main_events(), vec![WireEvent::Ready]);
}

#[test]
fn md5_sends_the_salted_double_hash() {
    let script = [
        server(auth(5, &[1, 2, 3, 4])),
        server(cat(&[auth_ok(), startup_tail()])),
    ];
    let out = run_all(params_with_password(), &script);
    let msgs = out.messages();
    assert_eq!(out.tags(), "_p");
    // md5(md5(password || user) || salt), as computed by Python's hashlib.
    assert_eq!(msgs[1].1, b"md5b79948bbeb35dee03ab8fe15a839030b\0");
    assert_eq!(out.main_events(), vec![WireEvent::Ready]);
}

fn scram_script(
    offered: &[&str],
    binding: Option<Vec<u8>>,
    expected_cb: &'static [u8],
) -> Vec<Step> {
    let mut steps = Vec::new();
    if binding.is_some() {
        steps.push(server(b"S"));
        steps.push(Step::TlsEstablished(binding));
    }
    steps.push(server(auth_sasl(offered)));
    steps.push(reply(scram_continue));
    steps.push(reply(move |sent| scram_final(sent, expected_cb)));
    steps.push(server(cat(&[auth_ok(), startup_tail()])));
    steps
}

#[test]
fn scram_sha_256_completes_and_verifies_the_server() {
    let out = run_all_with(
        params_with_password(),
        &scram_script(&["SCRAM-SHA-256"], None, b""),
        Compare::Framing,
    );
    let (mechanism, first) = sasl_initial(&out.sent);
    assert_eq!(mechanism, "SCRAM-SHA-256");
    assert!(first.starts_with("n,,n=,r="), "client-first: {first}");
    assert_eq!(out.tags(), "_pp");
    assert_eq!(out.main_events(), vec![WireEvent::Ready]);
}

fn tls_params() -> pgnotify_core::protocol::StartupParams {
    let mut p = params_with_password();
    p.tls = pgnotify_core::protocol::TlsNegotiation::Require;
    p
}

#[test]
fn scram_plus_binds_the_tls_channel_when_both_sides_can() {
    const CB: &[u8] = b"certificate-hash-32-bytes-long!!";
    let out = run_all_with(
        tls_params(),
        &scram_script(
            &["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
            Some(CB.to_vec()),
            CB,
        ),
        Compare::Framing,
    );
    let (mechanism, first) = sasl_initial(&out.sent);
    assert_eq!(mechanism, "SCRAM-SHA-256-PLUS");
    assert!(
        first.starts_with("p=tls-server-end-point,,"),
        "client-first: {first}"
    );
    assert_eq!(
        out.main_events(),
        vec![WireEvent::StartTls, WireEvent::Ready]
    );
}

#[test]
fn scram_without_plus_on_tls_says_the_client_could_bind() {
    let out = run_all_with(
        tls_params(),
        &scram_script(&["SCRAM-SHA-256"], Some(b"hash".to_vec()), b""),
        Compare::Framing,
    );
    let (mechanism, first) = sasl_initial(&out.sent);
    assert_eq!(mechanism, "SCRAM-SHA-256");
    // 'y': the client supports channel binding but the server did not offer
    // it; a server that does support it then detects a downgrade.
    assert!(first.starts_with("y,,"), "client-first: {first}");
}

#[test]
fn scram_plus_offered_without_binding_data_falls_back_to_plain_scram() {
    let out = run_all_with(
        params_with_password(),
        &scram_script(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], None, b""),
        Compare::Framing,
    );
    let (mechanism, first) = sasl_initial(&out.sent);
    assert_eq!(mechanism, "SCRAM-SHA-256");
    assert!(first.starts_with("n,,"));
}

#[test]
fn scram_with_a_wrong_server_signature_fails() {
    let script = [
        server(auth_sasl(&["SCRAM-SHA-256"])),
        reply(scram_continue),
        server(auth(12, b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
    ];
    let out = run_all_with(params_with_password(), &script, Compare::Framing);
    assert!(matches!(
        failed_with(&out),
        ConnectionError::Auth(AuthError::Scram(_))
    ));
}

#[test]
fn scram_with_a_foreign_nonce_fails() {
    let script = [
        server(auth_sasl(&["SCRAM-SHA-256"])),
        server(auth(11, b"r=notmynonce,s=c2FsdA==,i=4096")),
    ];
    let out = run_all_with(params_with_password(), &script, Compare::Framing);
    assert!(matches!(
        failed_with(&out),
        ConnectionError::Auth(AuthError::Scram(_))
    ));
}

#[test]
fn authentication_ok_before_scram_finishes_is_refused() {
    let script = [
        server(auth_sasl(&["SCRAM-SHA-256"])),
        reply(scram_continue),
        server(cat(&[auth_ok(), startup_tail()])),
    ];
    let out = run_all_with(params_with_password(), &script, Compare::Framing);
    assert_eq!(
        failed_with(&out),
        &ConnectionError::Auth(AuthError::IncompleteScram)
    );
}

#[test]
fn only_unknown_sasl_mechanisms_is_an_error_naming_them() {
    let out = run_all(
        params_with_password(),
        &[server(auth_sasl(&["OAUTHBEARER"]))],
    );
    assert_eq!(
        failed_with(&out),
        &ConnectionError::Auth(AuthError::NoSupportedSaslMechanism {
            offered: vec!["OAUTHBEARER".into()]
        })
    );
}

#[test]
fn gss_sspi_kerberos_and_scm_are_unsupported() {
    for (code, method) in [
        (7, "GSSAPI"),
        (9, "SSPI"),
        (2, "Kerberos V5"),
        (6, "SCM credentials"),
    ] {
        let out = run_all(params_with_password(), &[server(auth(code, &[]))]);
        assert_eq!(
            failed_with(&out),
            &ConnectionError::Auth(AuthError::Unsupported { method }),
            "auth code {code}"
        );
        assert!(failed_with(&out).to_string().contains("not supported"));
    }
}

#[test]
fn a_password_request_without_a_password_is_password_required() {
    for request in [
        auth(3, &[]),
        auth(5, &[9, 9, 9, 9]),
        auth_sasl(&["SCRAM-SHA-256"]),
    ] {
        let out = run_all(params(), &[server(request)]);
        assert_eq!(
            failed_with(&out),
            &ConnectionError::Auth(AuthError::PasswordRequired)
        );
        assert_eq!(out.tags(), "_", "nothing sent after the startup message");
    }
}

#[test]
fn wrong_password_reports_the_servers_28p01() {
    let script = [
        server(auth(3, &[])),
        server(error(
            "FATAL",
            "28P01",
            "password authentication failed for user \"alice\"",
        )),
    ];
    let out = run_all(params_with_password(), &script);
    let e = failed_with(&out);
    let ConnectionError::Server(server_error) = e else {
        panic!("{e:?}")
    };
    assert_eq!(server_error.code(), "28P01");
    assert!(server_error.is_fatal());
    assert!(!e.is_transient());
    assert_eq!(
        server_error.to_string(),
        "FATAL 28P01: password authentication failed for user \"alice\""
    );
}

#[test]
fn authentication_ok_twice_is_a_protocol_error() {
    let out = run_all(params(), &[server(cat(&[auth_ok(), auth_ok()]))]);
    assert!(matches!(
        failed_with(&out),
        ConnectionError::Protocol(ProtocolError::Unexpected { tag: b'R', .. })
    ));
}

#[test]
fn sasl_continue_without_sasl_is_a_protocol_error() {
    let out = run_all(params_with_password(), &[server(auth(11, b"r=x"))]);
    assert!(matches!(
        failed_with(&out),
        ConnectionError::Protocol(ProtocolError::Unexpected { tag: b'R', .. })
    ));
}

#[test]
fn password_with_nul_is_refused_before_sending() {
    let mut p = params();
    p.password = Some("a\0b".into());
    let out = run_all(p, &[server(auth(3, &[]))]);
    assert_eq!(
        failed_with(&out),
        &ConnectionError::Auth(AuthError::PasswordContainsNul)
    );
    assert_eq!(out.tags(), "_");
}
