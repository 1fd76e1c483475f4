//! Tells the test suite which of its optional prerequisites this machine lacks, so
//! that a test which cannot run here is reported by `cargo test` as ignored, with
//! its reason, and never counted as passed.
//!
//! - `presenced_without_redis`: no `redis-server` on the `PATH` (the cluster tests).
//! - `presenced_without_node`: no `node` (the polling client's test).
//! - `presenced_without_browser`: no `node`, `/usr/bin/chromium` or
//!   `tests/browser/node_modules` (the roster page's test in headless Chromium).
//! - `presenced_without_curl_jq`: no `curl`, `jq` or `openssl` (the check that the
//!   docs' shell blocks run as pasted; two of them make a token with `openssl rand`).
//!
//! `PRESENCED_REQUIRE_REDIS=1`, `PRESENCED_REQUIRE_BROWSER=1` and
//! `PRESENCED_REQUIRE_SHELL=1` (as `.ci/run` sets them) leave the tests in, so a
//! missing prerequisite fails them instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";
const PLAYWRIGHT: &str = "tests/browser/node_modules/playwright-core/package.json";

fn main() {
    for cfg in [
        "presenced_without_redis",
        "presenced_without_node",
        "presenced_without_browser",
        "presenced_without_curl_jq",
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "PATH",
        "PRESENCED_REQUIRE_REDIS",
        "PRESENCED_REQUIRE_BROWSER",
        "PRESENCED_REQUIRE_SHELL",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // An install shows as a new entry in a PATH directory (chromium is in /usr/bin),
    // or in tests/browser for `npm ci`. No path that may be absent is watched: cargo
    // would rerun this, and rebuild the crate, on every build. Once node_modules is
    // there only its playwright-core is, so editing a test script rebuilds nothing.
    for dir in path_dirs() {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    if Path::new(PLAYWRIGHT).exists() {
        println!("cargo::rerun-if-changed={PLAYWRIGHT}");
    } else {
        println!("cargo::rerun-if-changed=tests/browser");
    }

    if !required("PRESENCED_REQUIRE_REDIS") && on_path("redis-server").is_none() {
        println!("cargo::rustc-cfg=presenced_without_redis");
    }
    if !required("PRESENCED_REQUIRE_SHELL")
        && ["curl", "jq", "openssl"]
            .iter()
            .any(|tool| on_path(tool).is_none())
    {
        println!("cargo::rustc-cfg=presenced_without_curl_jq");
    }
    if !required("PRESENCED_REQUIRE_BROWSER") {
        let node = node_runs();
        if !node {
            println!("cargo::rustc-cfg=presenced_without_node");
        }
        if !node || !Path::new(CHROMIUM).exists() || !Path::new(PLAYWRIGHT).exists() {
            println!("cargo::rustc-cfg=presenced_without_browser");
        }
    }
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|d| d.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn on_path(name: &str) -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn node_runs() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
