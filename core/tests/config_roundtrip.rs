//! Parse → print → parse gives an equal `Config`, for generated strings and
//! generated configurations (a deterministic stand-in for the fuzz target).

use std::time::Duration;

use pgnotify_core::OverflowPolicy;
use pgnotify_core::config::{
    Config, HostSpec, Keepalive, SslMode, SslRootCert, TargetSessionAttrs,
};

/// xorshift64*: a fixed seed gives the same cases on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// Like [`text`](Self::text), but empty one time in four.
    fn text_or_empty(&mut self) -> String {
        if self.chance(4) {
            String::new()
        } else {
            self.text()
        }
    }

    /// Text full of what needs quoting or escaping.
    fn text(&mut self) -> String {
        const PIECES: [&str; 14] = [
            "a",
            "Z",
            "0",
            " ",
            "'",
            "\\",
            "=",
            "@",
            ":",
            "/",
            "%",
            "é",
            "\t",
            "\u{1F600}",
        ];
        (0..1 + self.below(8))
            .map(|_| *self.pick(&PIECES))
            .collect()
    }
}

fn random_config(rng: &mut Rng) -> Config {
    let mut b = Config::builder();
    for _ in 0..rng.below(4) {
        let port = 1 + rng.below(65535) as u16;
        let host = match rng.below(4) {
            0 => HostSpec::unix(format!("/{}", rng.text().replace(',', "")), port),
            1 => HostSpec::Tcp {
                host: "db.example".into(),
                port,
                hostaddr: Some(*rng.pick(&["10.1.2.3".parse().unwrap(), "::1".parse().unwrap()])),
            },
            _ => HostSpec::tcp(rng.pick(&["h", "::1", "a b", "x'y"]).to_string(), port),
        };
        b = b.host(host);
    }
    if rng.chance(2) {
        b = b.user(rng.text());
    }
    if rng.chance(2) {
        b = b.password(rng.text_or_empty());
    }
    if rng.chance(2) {
        b = b.dbname(rng.text());
    }
    if rng.chance(2) {
        b = b.application_name(rng.text_or_empty());
    }
    if rng.chance(3) {
        b = b.ssl_root_cert(SslRootCert::System);
    } else {
        b = b.ssl_mode(*rng.pick(&SslMode::ALL));
        if rng.chance(2) {
            b = b.ssl_root_cert(SslRootCert::File(format!("/certs/{}", rng.text()).into()));
        }
    }
    if rng.chance(2) {
        b = b.connect_timeout(Duration::from_secs(rng.below(100) as u64));
    }
    b = b.keepalive(
        Keepalive::new()
            .enabled(rng.chance(2))
            .idle(Duration::from_secs(rng.below(100) as u64))
            .count(rng.below(10) as u32)
            .user_timeout(Duration::from_millis(rng.below(5000) as u64)),
    );
    b = b
        .target_session_attrs(*rng.pick(&[TargetSessionAttrs::Any, TargetSessionAttrs::ReadWrite]));
    let durations = [
        Duration::from_nanos(1 + rng.below(1_000_000) as u64),
        Duration::from_millis(1 + rng.below(100_000) as u64),
        Duration::from_secs(1 + rng.below(3600) as u64),
    ];
    b = b
        .ping_interval(*rng.pick(&durations))
        .ping_timeout(*rng.pick(&durations))
        .backoff_min(Duration::from_nanos(1))
        .backoff_max(*rng.pick(&durations))
        .backoff_reset_after(*rng.pick(&durations))
        .publish_timeout(*rng.pick(&durations))
        .listen_check_every(rng.below(5) as u32)
        .queue_capacity(1 + rng.below(5000))
        .overflow_policy(*rng.pick(&OverflowPolicy::ALL))
        .max_frame_len(16384 + rng.below(1 << 24));
    if rng.chance(2) {
        b = b.seed(rng.next());
    }
    b.build()
        .expect("the generator builds only valid configurations")
}

#[test]
fn generated_configs_round_trip_through_to_conninfo() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in 0..2000 {
        let config = random_config(&mut rng);
        let printed = config.to_conninfo();
        match Config::parse(&printed) {
            Ok(reparsed) => assert!(
                reparsed == config,
                "case {case}: {printed:?} parses to a different config:\n{reparsed:#?}\nexpected\n{config:#?}"
            ),
            Err(e) => panic!("case {case}: {printed:?} does not parse: {e}"),
        }
    }
}

#[test]
fn generated_strings_never_panic_and_accepted_ones_round_trip() {
    const TOKENS: [&str; 28] = [
        "postgres://",
        "host",
        "port",
        "user",
        "password",
        "dbname",
        "sslmode",
        "hostaddr",
        "=",
        "=",
        " ",
        "'",
        "\\",
        ",",
        ":",
        "@",
        "/",
        "?",
        "&",
        "[",
        "]",
        "%2F",
        "%",
        "5432",
        "::1",
        "verify-full",
        "h",
        "ping_interval",
    ];
    let mut rng = Rng(42);
    let mut accepted = 0;
    for case in 0..20_000 {
        let input: String = (0..rng.below(12)).map(|_| *rng.pick(&TOKENS)).collect();
        let Ok(config) = Config::parse(&input) else {
            continue;
        };
        accepted += 1;
        let printed = config.to_conninfo();
        let reparsed = Config::parse(&printed)
            .unwrap_or_else(|e| panic!("case {case}: {input:?} printed as {printed:?} fails: {e}"));
        assert!(
            reparsed == config,
            "case {case}: {input:?} printed as {printed:?} differs"
        );
    }
    assert!(
        accepted > 100,
        "the generator should produce some valid strings, got {accepted}"
    );
}
