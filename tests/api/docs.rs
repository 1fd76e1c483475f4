//! Every shell block of README.md and docs/*.md runs as pasted.
//!
//! Each file's ```` ```sh ```` blocks (not those marked ```` ```sh no_run ````) run
//! in order in one `bash -euo pipefail`, as a reader pasting them into one terminal
//! would, against a real `presenced --demo`; `curl` fails on any HTTP error. What a
//! reader's machine has and a test's must not share is mapped: the documented ports
//! to free ones, `./target/release/presenced` to the binary under test, `/var/lib/` to
//! a temporary directory. The script runs in its own process group, which is killed
//! at the end, so servers a block starts in the background stop with it.

use crate::cli::start_listening;
use crate::helpers::free_port;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// Ports the documentation uses: the service, two replicas, Redis.
const DOC_PORTS: [u16; 4] = [3000, 3001, 3002, 6379];
const BINARY_IN_DOCS: &str = "./target/release/presenced";
const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A fenced shell block, and the line its fence opens on.
#[derive(Debug)]
struct Block {
    line: usize,
    code: String,
}

/// Returns the runnable shell blocks of `markdown`, in order.
fn shell_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, bool, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => {
                let mut words = info.split_whitespace();
                let shell = matches!(words.next(), Some("sh" | "bash"));
                let runs = shell && !words.any(|w| w == "no_run");
                open = Some((index + 1, runs, String::new()));
            }
            (Some((line, runs, code)), Some(_)) => {
                if *runs {
                    blocks.push(Block {
                        line: *line,
                        code: std::mem::take(code),
                    });
                }
                open = None;
            }
            (Some((_, _, code)), None) => {
                code.push_str(line);
                code.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The documentation files whose blocks run, `README.md` first.
fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ reads")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

/// One file's blocks as a script, with the documented ports, binary and paths mapped.
fn script(name: &str, blocks: &[Block], ports: &[(u16, u16)], scratch: &Path) -> String {
    let mut script = String::from(
        "curl() { command curl --fail-with-body --show-error \"$@\"; }\n\
         block() { printf '\\n== %s\\n' \"$1\" >&2; }\n",
    );
    for block in blocks {
        let mut code = block
            .code
            .replace(BINARY_IN_DOCS, env!("CARGO_BIN_EXE_presenced"));
        code = code.replace("/var/lib/", &format!("{}/var/lib/", scratch.display()));
        for (documented, free) in ports {
            code = code
                .replace(&format!(":{documented}"), &format!(":{free}"))
                .replace(&format!("--port {documented}"), &format!("--port {free}"));
        }
        script.push_str(&format!("block '{name}:{}'\n{code}", block.line));
    }
    script
}

/// Runs the blocks of `files` against a fresh `presenced --demo`; returns how many ran.
async fn run_blocks_of(files: &[PathBuf]) -> usize {
    let (_demo, demo_port) = start_listening(&["--demo"], &[]).await;
    let mut ran = 0;
    for file in files {
        let name = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(file).expect("doc reads");
        let blocks = shell_blocks(&text);
        if blocks.is_empty() {
            continue;
        }
        let ports: Vec<(u16, u16)> = DOC_PORTS
            .iter()
            .map(|&p| (p, if p == 3000 { demo_port } else { free_port() }))
            .collect();
        let scratch = tempfile::tempdir().expect("temp dir");
        run_script(
            &name,
            &script(&name, &blocks, &ports, scratch.path()),
            scratch.path(),
        )
        .await;
        ran += blocks.len();
    }
    ran
}

/// Runs `script` in `dir` in a process group of its own; fails the test, with what
/// the script printed, unless it exits 0 within `GIVE_UP_AFTER`.
async fn run_script(name: &str, script: &str, dir: &Path) {
    let output = tempfile::NamedTempFile::new().expect("temp file");
    let stdout = output.reopen().expect("temp file reopens");
    let stderr = stdout.try_clone().expect("file handle clones");
    let mut bash = Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(path) = std::env::var_os("PATH") {
        bash.env("PATH", path);
    }
    let mut child = bash.spawn().expect("bash starts");
    let group = child.id();
    let deadline = Instant::now() + GIVE_UP_AFTER;
    let status = loop {
        if let Some(status) = child.try_wait().expect("bash status") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    };
    // Whatever a block left running in the background goes with the group.
    for signal in ["-TERM", "-KILL"] {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{group}")])
            .stderr(Stdio::null())
            .status();
        if signal == "-TERM" {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let printed = std::fs::read_to_string(output.path()).unwrap_or_default();
    let failed_in = printed
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("== "))
        .unwrap_or("?");
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!(
            "{name}: the shell block at {failed_in} fails as pasted ({status}); output:\n{printed}"
        ),
        None => panic!(
            "{name}: the shell block at {failed_in} did not finish within {GIVE_UP_AFTER:?}; \
             output:\n{printed}"
        ),
    }
}

#[tokio::test]
#[cfg_attr(
    presenced_without_curl_jq,
    ignore = "needs curl, jq and openssl on PATH"
)]
async fn the_shell_blocks_of_the_readme_and_docs_run_as_pasted() {
    let files: Vec<PathBuf> = doc_files()
        .into_iter()
        .filter(|f| !f.ends_with("docs/cluster.md"))
        .collect();
    let ran = run_blocks_of(&files).await;
    assert!(
        ran >= 5,
        "only {ran} shell blocks found: is the fence syntax still ```sh?"
    );
}

#[tokio::test]
#[cfg_attr(
    any(presenced_without_curl_jq, presenced_without_redis),
    ignore = "needs curl, jq, openssl and redis-server on PATH"
)]
async fn the_shell_blocks_of_the_cluster_docs_run_as_pasted() {
    let cluster = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cluster.md");
    assert_eq!(run_blocks_of(&[cluster]).await, 1);
}

#[test]
fn shell_blocks_are_found_with_their_lines_and_no_run_ones_left_out() {
    let markdown = "text\n```sh\necho a\n```\n```sh no_run\ncargo run\n```\n```toml\nx = 1\n```\n  ```bash\necho b\n  ```\n";
    let blocks = shell_blocks(markdown);
    let found: Vec<(usize, &str)> = blocks.iter().map(|b| (b.line, b.code.as_str())).collect();
    assert_eq!(found, [(2, "echo a\n"), (11, "echo b\n")]);
}
