//! libpq's connection URLs: `postgres[ql]://[user[:password]@][host[:port][,...]][/dbname][?k=v&...]`.

use super::error::ConfigError;

const SCHEMES: [&str; 2] = ["postgresql://", "postgres://"];

/// The length of the `postgres://` or `postgresql://` prefix of `text`, if it
/// has one (schemes are case-insensitive).
pub(crate) fn scheme_len(text: &str) -> Option<usize> {
    SCHEMES.iter().find_map(|scheme| {
        let prefix = text.get(..scheme.len())?;
        prefix.eq_ignore_ascii_case(scheme).then_some(scheme.len())
    })
}

/// Splits a connection URL into libpq parameters, in the order libpq would
/// store them: user, password, host, port, dbname, then the query
/// parameters, which override the earlier ones.
///
/// Every component is percent-decoded. Several hosts are separated by
/// commas, each with an optional port; IPv6 addresses are bracketed. As in
/// libpq, the port list is stored whenever there are several hosts, so
/// `h1:5433,h2` gives `h2` the default port rather than `PGPORT`. `base` is
/// the offset of `text` in the string the user wrote, for error positions.
pub(crate) fn parse(text: &str, base: usize) -> Result<Vec<(String, String)>, ConfigError> {
    let start = scheme_len(text).unwrap_or(0);
    let rest = &text[start..];
    let at = |offset: usize| base + start + offset;

    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut pairs = Vec::new();

    // The last '@' ends the user info, so an unencoded '@' in a password
    // stays in the password instead of leaking into the host name.
    let hosts_start = match authority.rfind('@') {
        Some(sep) => {
            let userinfo = &authority[..sep];
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            push_decoded(&mut pairs, "user", user, at(0))?;
            if let Some(password) = password {
                push_decoded(&mut pairs, "password", password, at(user.len() + 1))?;
            }
            sep + 1
        }
        None => 0,
    };
    parse_hosts(&authority[hosts_start..], at(hosts_start), &mut pairs)?;

    let mut tail = &rest[authority_end..];
    let mut tail_at = at(authority_end);
    if let Some(path) = tail.strip_prefix('/') {
        let path_end = path.find('?').unwrap_or(path.len());
        push_decoded(&mut pairs, "dbname", &path[..path_end], tail_at + 1)?;
        tail = &path[path_end..];
        tail_at += 1 + path_end;
    }
    if let Some(query) = tail.strip_prefix('?') {
        parse_query(query, tail_at + 1, &mut pairs)?;
    }
    Ok(pairs)
}

fn parse_hosts(
    list: &str,
    base: usize,
    pairs: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    let mut offset = base;
    for entry in list.split(',') {
        let (host, port) = split_host_port(entry, offset)?;
        let host = decode(host, offset)?;
        if host.contains(',') {
            return Err(ConfigError::invalid(
                "host",
                &host,
                "a host cannot contain a comma, which separates hosts",
            ));
        }
        hosts.push(host);
        ports.push(decode(port.unwrap_or(""), offset)?);
        offset += entry.len() + 1;
    }
    let hosts = hosts.join(",");
    let ports = ports.join(",");
    if !hosts.is_empty() {
        pairs.push(("host".to_owned(), hosts));
    }
    if !ports.is_empty() {
        pairs.push(("port".to_owned(), ports));
    }
    Ok(())
}

/// Splits `host:port` or `[v6addr]:port`.
fn split_host_port(entry: &str, at: usize) -> Result<(&str, Option<&str>), ConfigError> {
    if let Some(bracketed) = entry.strip_prefix('[') {
        let close = bracketed
            .find(']')
            .ok_or_else(|| ConfigError::syntax(at, "missing \"]\" after an IPv6 address"))?;
        if close == 0 {
            return Err(ConfigError::syntax(at, "empty IPv6 address in brackets"));
        }
        let host = &bracketed[..close];
        let after = &bracketed[close + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(ConfigError::syntax(
                at + close + 2,
                "expected \":\" or \",\" after an IPv6 address",
            )),
        };
    }
    Ok(match entry.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (entry, None),
    })
}

fn parse_query(
    query: &str,
    base: usize,
    pairs: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    let mut offset = base;
    for param in query.split('&') {
        let here = offset;
        offset += param.len() + 1;
        if param.is_empty() {
            continue;
        }
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| ConfigError::syntax(here, "expected \"=\" in a query parameter"))?;
        if value.contains('=') {
            return Err(ConfigError::syntax(
                here,
                "extra \"=\" in a query parameter (percent-encode it as %3D)",
            ));
        }
        let key = decode(key, here)?;
        let value = decode(value, here + key.len() + 1)?;
        if key == "ssl" {
            // JDBC's spelling, accepted by libpq too.
            if value != "true" {
                return Err(ConfigError::invalid(
                    "ssl",
                    &value,
                    "only ssl=true (meaning sslmode=require) is accepted",
                ));
            }
            pairs.push(("sslmode".to_owned(), "require".to_owned()));
        } else {
            pairs.push((key, value));
        }
    }
    Ok(())
}

fn push_decoded(
    pairs: &mut Vec<(String, String)>,
    name: &str,
    raw: &str,
    at: usize,
) -> Result<(), ConfigError> {
    let value = decode(raw, at)?;
    if !value.is_empty() {
        pairs.push((name.to_owned(), value));
    }
    Ok(())
}

/// Percent-decodes `raw`, which starts at byte `at` of the connection string.
fn decode(raw: &str, at: usize) -> Result<String, ConfigError> {
    if !raw.contains('%') {
        return Ok(raw.to_owned());
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let byte = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .filter(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .ok_or_else(|| {
                ConfigError::syntax(
                    at + i,
                    "invalid percent-encoding (expected % and two hex digits)",
                )
            })?;
        if byte == 0 {
            return Err(ConfigError::syntax(
                at + i,
                "%00 (a NUL byte) is not allowed",
            ));
        }
        out.push(byte);
        i += 3;
    }
    String::from_utf8(out)
        .map_err(|_| ConfigError::syntax(at, "percent-decoded text is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text, 0).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn every_component_is_split_and_decoded() {
        assert_eq!(
            pairs("postgres://us%40er:p%3Ass@h%2Dx:5433/d%20b?application_name=a%26b"),
            [
                pair("user", "us@er"),
                pair("password", "p:ss"),
                pair("host", "h-x"),
                pair("port", "5433"),
                pair("dbname", "d b"),
                pair("application_name", "a&b"),
            ]
        );
    }

    #[test]
    fn several_hosts_keep_a_port_slot_each() {
        assert_eq!(
            pairs("postgresql://[::1]:1,h2,[fe80::2]"),
            [pair("host", "::1,h2,fe80::2"), pair("port", "1,,")]
        );
    }

    #[test]
    fn a_single_host_without_port_stores_no_port() {
        assert_eq!(pairs("postgresql://h"), [pair("host", "h")]);
        assert_eq!(pairs("postgresql://"), []);
    }

    #[test]
    fn the_last_at_sign_ends_the_user_info() {
        assert_eq!(
            pairs("postgres://u:p@ss@h"),
            [
                pair("user", "u"),
                pair("password", "p@ss"),
                pair("host", "h")
            ]
        );
    }

    #[test]
    fn malformed_urls_report_positions() {
        assert_eq!(
            parse("postgres://h/db?x", 0),
            Err(ConfigError::syntax(
                16,
                "expected \"=\" in a query parameter"
            ))
        );
        assert_eq!(
            parse("postgres://%zz@h", 0),
            Err(ConfigError::syntax(
                11,
                "invalid percent-encoding (expected % and two hex digits)"
            ))
        );
        assert!(matches!(
            parse("postgres://[::1", 0),
            Err(ConfigError::Syntax { position: 11, .. })
        ));
        assert!(matches!(
            parse("postgres://[::1]x", 0),
            Err(ConfigError::Syntax { position: 16, .. })
        ));
    }
}
