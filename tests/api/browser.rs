//! The browser side, run from `cargo test`: the polling client against real servers
//! in Node (`tests/browser/client.mjs`), and the roster page and cross-origin access
//! in headless Chromium (`tests/browser/roster.mjs`).
//!
//! They need `node`, `/usr/bin/chromium` and `tests/browser/node_modules` (`npm ci`
//! there). `build.rs` looks for them: built without them, a test is reported as
//! ignored with the reason, so `cargo test` works with the Rust toolchain alone and
//! never counts a test that did not run as passed; with `PRESENCED_REQUIRE_BROWSER=1`
//! (as `.ci/run` sets it) the tests run anyway and a missing prerequisite fails them.

use crate::helpers::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::time::Instant;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Longer than each script's own watchdog, so a script normally reports its own hang.
const GIVE_UP_AFTER: Duration = Duration::from_secs(240);
const POLL_EVERY: Duration = Duration::from_millis(100);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What a script needs that the machine may not have.
#[derive(Clone, Copy, PartialEq)]
enum Needs {
    Node,
    NodeAndChromium,
}

/// Returns why the script cannot run here, if it cannot.
fn missing(needs: Needs) -> Option<String> {
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        return Some("`node` is not on PATH".to_owned());
    }
    if needs == Needs::NodeAndChromium {
        if !Path::new(CHROMIUM).exists() {
            return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
        }
        let playwright = browser_dir().join("node_modules/playwright-core/package.json");
        if !playwright.exists() {
            return Some(
                "tests/browser/node_modules is missing (npm ci in tests/browser)".to_owned(),
            );
        }
    }
    None
}

/// Fails the test, saying what is missing, unless `needs` is here. `build.rs` made
/// the test ignored where it was missing at build time, so this fails only where it
/// went missing since, or under `PRESENCED_REQUIRE_BROWSER=1`.
fn require(test: &str, needs: Needs) {
    if let Some(why) = missing(needs) {
        panic!("{test}: {why}");
    }
}

/// A running `node` script; stopped (TERM, then KILL) if the test ends first.
struct Script {
    child: Child,
    output: tempfile::NamedTempFile,
}

impl Script {
    fn start(script: &str, vars: &[(&str, &str)]) -> Script {
        let output = tempfile::NamedTempFile::new().expect("temp file");
        // One open file for both streams, so they share an offset and interleave.
        let stdout = output.reopen().expect("temp file reopens");
        let stderr = stdout.try_clone().expect("file handle clones");
        let child = Command::new("node")
            .arg(script)
            .current_dir(browser_dir())
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("node starts");
        Script { child, output }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.output.path()).unwrap_or_default()
    }

    /// Waits for the script to exit, within `GIVE_UP_AFTER`.
    async fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + GIVE_UP_AFTER;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            if Instant::now() >= deadline {
                self.stop();
                panic!(
                    "node did not finish within {GIVE_UP_AFTER:?}; output:\n{}",
                    self.output()
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// SIGTERM first, so the script can close the browser and the servers it started;
    /// SIGKILL if it has not exited within 10 s.
    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(POLL_EVERY);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `script` to the end and asserts it succeeded, printing what it printed.
async fn run(script: &str, vars: &[(&str, &str)]) {
    let mut node = Script::start(script, vars);
    let status = node.wait().await;
    let output = node.output();
    println!("{output}");
    assert!(
        status.success(),
        "node {script}: {status}; output:\n{output}"
    );
}

#[tokio::test]
#[cfg_attr(presenced_without_node, ignore = "needs node on PATH")]
async fn the_polling_client_keeps_a_snapshot_plus_deltas_equal_to_a_fresh_snapshot() {
    require("client.mjs", Needs::Node);
    // Two servers, so two epochs: the script re-points its client from one to the other.
    let (a, b) = (spawn_app().await, spawn_app().await);
    run(
        "client.mjs",
        &[
            ("PRESENCED_A", &a.base),
            ("PRESENCED_B", &b.base),
            ("PRESENCED_INGEST_TOKEN", INGEST_TOKEN),
        ],
    )
    .await;
}

#[tokio::test]
#[cfg_attr(
    presenced_without_browser,
    ignore = "needs node, /usr/bin/chromium and npm ci in tests/browser"
)]
async fn the_roster_page_and_a_cross_origin_page_follow_the_demo_in_chromium() {
    require("roster.mjs", Needs::NodeAndChromium);
    // Into target/ on every run, so tests leave the work tree clean;
    // `PRESENCED_UPDATE_SCREENSHOT=1 cargo test roster` refreshes the README's copy.
    let into = if std::env::var_os("PRESENCED_UPDATE_SCREENSHOT").is_some() {
        "docs/roster.png"
    } else {
        "target/roster.png"
    };
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join(into);
    run(
        "roster.mjs",
        &[
            ("PRESENCED_BIN", env!("CARGO_BIN_EXE_presenced")),
            ("PRESENCED_CHROMIUM", CHROMIUM),
            (
                "PRESENCED_SCREENSHOT",
                screenshot.to_str().expect("utf-8 path"),
            ),
        ],
    )
    .await;
}
