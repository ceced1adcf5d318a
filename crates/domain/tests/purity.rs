//! Architecture invariant: the domain is pure. Reads crates/domain/Cargo.toml and
//! fails if an async runtime, IO, network, storage or randomness dependency appears.

const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-stream",
    "tokio-util",
    "futures",
    "futures-util",
    "async-std",
    "async-trait",
    "smol",
    "mio",
    "sled",
    "tonic",
    "prost",
    "hyper",
    "reqwest",
    "axum",
    "tower",
    "http",
    "async-nats",
    "nats",
    "rand",
    "rand_core",
    "getrandom",
    "fastrand",
    "chrono",
    "time",
    "tempfile",
    "libc",
    "tokio-postgres",
    "postgres",
    "sqlx",
    "rusqlite",
    "tracing-subscriber",
];

fn manifest() -> toml::Table {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("manifest is readable");
    text.parse().expect("manifest is valid toml")
}

/// The crate names a dependency table brings in (`package = "..."` renames included).
fn names(table: Option<&toml::Value>) -> Vec<String> {
    let Some(table) = table.and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    table
        .iter()
        .flat_map(|(key, value)| {
            let package = value
                .get("package")
                .and_then(toml::Value::as_str)
                .map(str::to_string);
            [Some(key.clone()), package].into_iter().flatten()
        })
        .collect()
}

#[test]
fn the_domain_has_no_io_async_clock_or_randomness_dependency() {
    let manifest = manifest();
    let mut found = Vec::new();
    // Dev-dependencies are exempt: proptest needs randomness to generate cases.
    for section in ["dependencies", "build-dependencies"] {
        found.extend(names(manifest.get(section)));
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for target in targets.values() {
            for section in ["dependencies", "build-dependencies"] {
                found.extend(names(target.get(section)));
            }
        }
    }
    assert!(
        !found.is_empty(),
        "the manifest lists no dependencies; did the file move?"
    );
    let bad: Vec<_> = found
        .iter()
        .filter(|name| FORBIDDEN.contains(&name.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "crates/domain must stay pure, but depends on {bad:?}"
    );
}

#[test]
fn uuid_is_used_without_random_generators() {
    // uuid's v4 and v7 features pull in getrandom (and a clock for v7).
    let manifest = manifest();
    let uuid = manifest["dependencies"]
        .get("uuid")
        .expect("uuid is a dependency");
    assert_ne!(
        uuid.get("workspace").and_then(toml::Value::as_bool),
        Some(true),
        "the workspace uuid enables v4/v7"
    );
    let features: Vec<&str> = uuid
        .get("features")
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default();
    for generator in ["v1", "v4", "v6", "v7", "fast-rng", "rng"] {
        assert!(
            !features.contains(&generator),
            "uuid feature {generator} brings randomness or a clock"
        );
    }
    assert_eq!(
        uuid.get("default-features").and_then(toml::Value::as_bool),
        Some(false)
    );
}

#[test]
fn the_sources_do_not_reach_for_the_clock_or_the_filesystem() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("source is readable");
        for banned in [
            "SystemTime",
            "Instant::now",
            "std::fs",
            "std::net",
            "std::thread",
            "std::env",
            "async fn",
        ] {
            assert!(!text.contains(banned), "{} uses {banned}", path.display());
        }
        assert!(
            text.starts_with("//!"),
            "{} must start with a //! line",
            path.display()
        );
    }
}
