//! What a user gets from the repository and from crates.io: license texts and metadata on every
//! publishable crate, CI running the README's test command, the re-exports the API needs.

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn publishable_crates_ship_license_texts_and_complete_metadata() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(root().join("Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");

    let mut checked = Vec::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name");
        // `publish = false` is an empty list of registries.
        if package["publish"].as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        assert_eq!(package["license"], "MIT OR Apache-2.0", "{name}: license");
        for field in ["description", "repository"] {
            assert!(package[field].is_string(), "{name}: no {field}");
        }
        let dir = Path::new(package["manifest_path"].as_str().expect("path"))
            .parent()
            .expect("manifest in a folder");
        // The texts the license names, inside the crate's folder so they go into its package.
        for (file, start) in [
            ("LICENSE-MIT", "MIT License"),
            ("LICENSE-APACHE", "Apache License"),
        ] {
            let text = std::fs::read_to_string(dir.join(file))
                .unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
            assert!(text.trim_start().starts_with(start), "{name}: {file}");
        }
        checked.push(name.to_owned());
    }
    checked.sort();
    assert_eq!(checked, ["networkio", "networkio-chaos", "networkio-cli"]);
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = read("README.md");
    let command = readme
        .lines()
        .filter_map(|l| l.split('#').next())
        .map(str::trim)
        .find(|l| l.starts_with("cargo test"))
        .expect("the README gives the test command");
    let ci = read(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run must run `{command}` as the README says"
    );
}

#[test]
fn raw_messages_are_named_through_the_crate() {
    // Users name what `read_all_bytes` returns without depending on `bytes` themselves.
    let raw: networkio::Bytes = networkio::Bytes::from_static(b"raw");
    let read: fn(&networkio::Peer) -> Vec<networkio::Bytes> = networkio::Peer::read_all_bytes;
    let _ = read;
    assert_eq!(&raw[..], b"raw");
}
