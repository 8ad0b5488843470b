//! Backend messages as bytes, for the valid prefixes of the fuzz harness and
//! for its seed corpus.
//!
//! Each function returns one complete frame: a tag, a big-endian length that
//! counts itself, and the body.

/// One frame with `tag` around `body`.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len().saturating_add(4)).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len().saturating_add(5));
    out.push(tag);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

fn auth(code: u32, extra: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(extra);
    frame(b'R', &body)
}

/// AuthenticationOk.
pub fn auth_ok() -> Vec<u8> {
    auth(0, &[])
}

/// AuthenticationCleartextPassword.
pub fn auth_cleartext() -> Vec<u8> {
    auth(3, &[])
}

/// AuthenticationMD5Password with `salt`.
pub fn auth_md5(salt: [u8; 4]) -> Vec<u8> {
    auth(5, &salt)
}

/// AuthenticationSASL offering `mechanisms`.
pub fn auth_sasl(mechanisms: &[&str]) -> Vec<u8> {
    let mut extra = Vec::new();
    for m in mechanisms {
        cstr(&mut extra, m);
    }
    extra.push(0);
    auth(10, &extra)
}

/// AuthenticationSASLContinue carrying `data`.
pub fn auth_sasl_continue(data: &[u8]) -> Vec<u8> {
    auth(11, data)
}

/// AuthenticationSASLFinal carrying `data`.
pub fn auth_sasl_final(data: &[u8]) -> Vec<u8> {
    auth(12, data)
}

/// ParameterStatus `name` = `value`.
pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, value);
    frame(b'S', &body)
}

/// BackendKeyData.
pub fn backend_key_data(pid: i32, secret: i32) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    body.extend_from_slice(&secret.to_be_bytes());
    frame(b'K', &body)
}

/// ReadyForQuery with transaction status `status` (`I`, `T` or `E`).
pub fn ready_for_query(status: u8) -> Vec<u8> {
    frame(b'Z', &[status])
}

/// NotificationResponse.
pub fn notification(pid: i32, channel: &str, payload: &str) -> Vec<u8> {
    let mut body = pid.to_be_bytes().to_vec();
    cstr(&mut body, channel);
    cstr(&mut body, payload);
    frame(b'A', &body)
}

/// CommandComplete with its command tag, for example `LISTEN`.
pub fn command_complete(tag: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, tag);
    frame(b'C', &body)
}

/// EmptyQueryResponse.
pub fn empty_query_response() -> Vec<u8> {
    frame(b'I', &[])
}

/// ParseComplete.
pub fn parse_complete() -> Vec<u8> {
    frame(b'1', &[])
}

/// BindComplete.
pub fn bind_complete() -> Vec<u8> {
    frame(b'2', &[])
}

/// RowDescription of text columns named `names`.
pub fn row_description(names: &[&str]) -> Vec<u8> {
    let count = u16::try_from(names.len()).unwrap_or(u16::MAX);
    let mut body = count.to_be_bytes().to_vec();
    for name in names {
        cstr(&mut body, name);
        body.extend_from_slice(&0u32.to_be_bytes()); // table oid
        body.extend_from_slice(&0u16.to_be_bytes()); // column number
        body.extend_from_slice(&25u32.to_be_bytes()); // text
        body.extend_from_slice(&(-1i16).to_be_bytes()); // variable size
        body.extend_from_slice(&(-1i32).to_be_bytes()); // type modifier
        body.extend_from_slice(&0u16.to_be_bytes()); // text format
    }
    frame(b'T', &body)
}

/// DataRow; `None` is SQL NULL.
pub fn data_row(values: &[Option<&str>]) -> Vec<u8> {
    let count = u16::try_from(values.len()).unwrap_or(u16::MAX);
    let mut body = count.to_be_bytes().to_vec();
    for value in values {
        match value {
            Some(v) => {
                let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
                body.extend_from_slice(&len.to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    frame(b'D', &body)
}

fn fields(tag: u8, severity: &str, code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', severity),
        (b'V', severity),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        cstr(&mut body, value);
    }
    body.push(0);
    frame(tag, &body)
}

/// ErrorResponse.
pub fn error_response(severity: &str, code: &str, message: &str) -> Vec<u8> {
    fields(b'E', severity, code, message)
}

/// NoticeResponse.
pub fn notice_response(message: &str) -> Vec<u8> {
    fields(b'N', "WARNING", "01000", message)
}

/// The usual messages after AuthenticationOk up to the first ReadyForQuery.
pub fn startup_tail() -> Vec<u8> {
    [
        parameter_status("server_version", "15.4"),
        parameter_status("client_encoding", "UTF8"),
        parameter_status("in_hot_standby", "off"),
        backend_key_data(4242, 17),
        ready_for_query(b'I'),
    ]
    .concat()
}
