//! The `conninfo` target: arbitrary connection strings through
//! [`Config::parse`], checking that whatever is accepted prints back and parses
//! again to the same configuration, and that nothing printable shows the
//! password.

use pgnotify_core::Config;

/// A password no accepted input can contain, to tell what the printed forms
/// depend on.
const OTHER_PASSWORD: &str = "\u{1F511}pgnotify-fuzz-other-password";

/// Runs one `conninfo` input (the bytes as UTF-8, invalid sequences replaced).
///
/// Panics if an accepted string's [`Config::to_conninfo`] does not parse back
/// to an equal `Config`, if rendering is not a fixed point, if `Display` or
/// `Debug` change with the password (they must never show it), or if the
/// parser panics.
pub fn conninfo(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = Config::parse(&text) else {
        return;
    };

    let rendered = config.to_conninfo();
    let reparsed = Config::parse(&rendered)
        .unwrap_or_else(|e| panic!("to_conninfo gave {rendered:?}, which fails to parse: {e}"));
    assert_eq!(reparsed, config, "to_conninfo gave {rendered:?}");
    assert_eq!(
        reparsed.to_conninfo(),
        rendered,
        "rendering is not a fixed point"
    );

    let shown = (config.to_string(), format!("{config:?}"));
    if let Some(password) = config.password() {
        let marker = if password == OTHER_PASSWORD {
            "another password"
        } else {
            OTHER_PASSWORD
        };
        let other = config
            .to_builder()
            .password(marker)
            .build()
            .unwrap_or_else(|e| panic!("a valid config with another password is invalid: {e}"));
        let shown_other = (other.to_string(), format!("{other:?}"));
        assert_eq!(
            shown, shown_other,
            "Display or Debug depends on the password"
        );
        if !text.contains(marker) {
            assert!(
                !shown.0.contains(marker) && !shown.1.contains(marker),
                "Display or Debug shows the password"
            );
        }
    }
}
