//! Encoding of backend (server-to-client) protocol messages.

use super::error::SqlError;

/// A column of a RowDescription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    pub(crate) name: &'static str,
    pub(crate) type_oid: u32,
    pub(crate) type_len: i16,
}

pub(crate) const TEXT_OID: u32 = 25;
pub(crate) const INT4_OID: u32 = 23;
pub(crate) const VOID_OID: u32 = 2278;

/// Appends one message: tag, length, then whatever `body` writes.
fn message(buf: &mut Vec<u8>, tag: u8, body: impl FnOnce(&mut Vec<u8>)) {
    buf.push(tag);
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    body(buf);
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn cstr(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
}

pub(crate) fn auth_request(buf: &mut Vec<u8>, code: i32, extra: &[u8]) {
    message(buf, b'R', |b| {
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(extra);
    });
}

pub(crate) fn parameter_status(buf: &mut Vec<u8>, name: &str, value: &str) {
    message(buf, b'S', |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

pub(crate) fn backend_key_data(buf: &mut Vec<u8>, pid: i32, secret: i32) {
    message(buf, b'K', |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&secret.to_be_bytes());
    });
}

pub(crate) fn negotiate_protocol_version(buf: &mut Vec<u8>, minor: i32, unknown: &[String]) {
    message(buf, b'v', |b| {
        b.extend_from_slice(&minor.to_be_bytes());
        b.extend_from_slice(&(unknown.len() as i32).to_be_bytes());
        for option in unknown {
            cstr(b, option);
        }
    });
}

pub(crate) fn ready_for_query(buf: &mut Vec<u8>) {
    // The simulation has no explicit transaction blocks: always idle.
    message(buf, b'Z', |b| b.push(b'I'));
}

pub(crate) fn command_complete(buf: &mut Vec<u8>, tag: &str) {
    message(buf, b'C', |b| cstr(b, tag));
}

pub(crate) fn empty_query(buf: &mut Vec<u8>) {
    message(buf, b'I', |_| {});
}

pub(crate) fn row_description(buf: &mut Vec<u8>, columns: &[Column]) {
    message(buf, b'T', |b| {
        b.extend_from_slice(&(columns.len() as i16).to_be_bytes());
        for column in columns {
            cstr(b, column.name);
            b.extend_from_slice(&0u32.to_be_bytes()); // table oid
            b.extend_from_slice(&0i16.to_be_bytes()); // attribute number
            b.extend_from_slice(&column.type_oid.to_be_bytes());
            b.extend_from_slice(&column.type_len.to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
            b.extend_from_slice(&0i16.to_be_bytes()); // text format
        }
    });
}

pub(crate) fn data_row(buf: &mut Vec<u8>, values: &[Option<String>]) {
    message(buf, b'D', |b| {
        b.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for value in values {
            match value {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    });
}

pub(crate) fn parse_complete(buf: &mut Vec<u8>) {
    message(buf, b'1', |_| {});
}

pub(crate) fn bind_complete(buf: &mut Vec<u8>) {
    message(buf, b'2', |_| {});
}

pub(crate) fn close_complete(buf: &mut Vec<u8>) {
    message(buf, b'3', |_| {});
}

pub(crate) fn no_data(buf: &mut Vec<u8>) {
    message(buf, b'n', |_| {});
}

pub(crate) fn parameter_description(buf: &mut Vec<u8>, oids: &[u32]) {
    message(buf, b't', |b| {
        b.extend_from_slice(&(oids.len() as i16).to_be_bytes());
        for oid in oids {
            b.extend_from_slice(&oid.to_be_bytes());
        }
    });
}

pub(crate) fn notification(buf: &mut Vec<u8>, pid: i32, channel: &str, payload: &str) {
    message(buf, b'A', |b| {
        b.extend_from_slice(&pid.to_be_bytes());
        cstr(b, channel);
        cstr(b, payload);
    });
}

pub(crate) fn error(buf: &mut Vec<u8>, error: &SqlError) {
    message(buf, b'E', |b| {
        fields(b, error.severity.as_str(), &error.code, &error.message);
    });
}

pub(crate) fn notice(buf: &mut Vec<u8>, code: &str, text: &str) {
    message(buf, b'N', |b| fields(b, "NOTICE", code, text));
}

fn fields(b: &mut Vec<u8>, severity: &str, code: &str, text: &str) {
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', text),
    ] {
        b.push(field);
        cstr(b, value);
    }
    b.push(0);
}
