//! Snapshot files on a real file system: what a save leaves, what a load
//! refuses (every cut and every flipped byte among them), and when
//! [`SnapshotFile`] writes.

use super::*;
use crate::domain::{ConnStatus, ConnectionId, Profile, Status, StatusText, TokenHash, UserId};
use crate::domain::{InstanceId, Username};
use sha2::{Digest, Sha256};
use std::error::Error as _;

fn options() -> StoreOptions {
    StoreOptions::default()
}

/// Three users: one online with a token, a status text and two connections,
/// one busy without connections, one plain.
fn store() -> Store {
    let store = Store::new(&options());
    for (id, name) in [("u1", "jane"), ("u2", "joe"), ("u3", "kim")] {
        let id = UserId::parse(id).unwrap();
        let profile = Profile::new(
            Username::parse(name).unwrap(),
            Some(format!("{name} Doe")),
            Some(-2.5),
            None,
            &[],
            true,
        );
        store.put_user(&id, profile.unwrap()).unwrap();
    }
    let u1 = UserId::parse("u1").unwrap();
    store
        .add_token(&u1, TokenHash::of_token("t1").unwrap())
        .unwrap();
    for (c, status) in [("c1", ConnStatus::Online), ("c2", ConnStatus::Away)] {
        let instance = InstanceId::parse("node-a").ok();
        store
            .put_connection(&ConnectionId::parse(c).unwrap(), &u1, status, instance)
            .unwrap();
    }
    store
        .set_status(&u1, None, Some(StatusText::new("at lunch")))
        .unwrap();
    let u2 = UserId::parse("u2").unwrap();
    store.set_status(&u2, Some(Status::Busy), None).unwrap();
    store
}

fn saved(dir: &tempfile::TempDir) -> (PathBuf, Vec<u8>) {
    let path = dir.path().join("presence.snapshot");
    save(&path, &store()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

fn load_error(path: &Path) -> String {
    match load(path, &options()) {
        Ok(loaded) => panic!("loaded {:?}", loaded.map(|l| l.users)),
        Err(e) => e.to_string(),
    }
}

/// Replaces the file's trailer with one that matches `lines` (header and
/// users), counting `users` users.
fn sealed(lines: &[String], users: u64) -> Vec<u8> {
    let mut body = String::new();
    for line in lines {
        body.push_str(line);
        body.push('\n');
    }
    let sha = hex(&Sha256::digest(body.as_bytes()));
    format!("{body}{{\"users\":{users},\"sha256\":\"{sha}\"}}\n").into_bytes()
}

/// The file's lines without the trailer.
fn lines_of(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.pop();
    lines
}

#[test]
fn a_saved_store_loads_back_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    let original = store();
    let loaded = load(&path, &options()).unwrap().expect("a file");
    assert_eq!(loaded.users, 3);
    assert_eq!(loaded.bytes, bytes.len() as u64);
    let restored = loaded.store;
    for id in ["u1", "u2", "u3"] {
        assert_eq!(restored.status_of(id), original.status_of(id), "{id}");
    }
    assert_eq!(restored.stats().connections, 2);
    assert_eq!(
        restored.stats().online,
        2,
        "u1 online, u2 busy by a manual set"
    );
    assert!(restored.authenticate("u1", "t1").is_some());
    assert_ne!(restored.cursor().epoch(), original.cursor().epoch());
}

#[test]
fn a_save_leaves_one_file_readable_by_its_owner_only_and_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("{\"format\":\"presenced-snapshot\",\"version\":1,"));
    assert_eq!(text.lines().count(), 5, "header, 3 users, trailer:\n{text}");
    assert!(!temp_path(&path).exists());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_save_that_cannot_create_its_temp_file_names_the_path_and_keeps_the_previous_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (path, before) = saved(&dir);
    // A directory where the temp file goes: creating it fails, even as root.
    std::fs::create_dir(temp_path(&path)).unwrap();
    let error = save(&path, &Store::new(&options())).unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "{}: cannot create {}: ",
            path.display(),
            temp_path(&path).display()
        )),
        "{message}"
    );
    assert!(error.source().is_some_and(|s| s.is::<io::Error>()));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn a_save_under_a_regular_file_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let path = file.join("presence.snapshot");
    let message = save(&path, &store()).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}: cannot create", path.display())),
        "{message}"
    );
    assert!(message.contains("os error"), "{message}");
}

#[test]
fn no_file_or_no_directory_is_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load(&dir.path().join("absent"), &options())
        .unwrap()
        .is_none());
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    assert!(load(&file.join("snap"), &options()).unwrap().is_none());
}

#[test]
fn a_directory_at_the_path_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let message = load_error(dir.path());
    assert!(
        message.starts_with(&format!("{}: cannot read it: ", dir.path().display())),
        "{message}"
    );
}

#[test]
fn every_cut_of_a_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let message = load_error(&path);
        assert!(
            message.starts_with(&path.display().to_string()),
            "{len}: {message}"
        );
    }
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(load_error(&path)
        .ends_with("line 5: the file ends in the middle of this line: it was cut short"));
    std::fs::write(&path, b"").unwrap();
    assert!(
        load_error(&path).ends_with("the file is empty, which no write of presenced leaves behind")
    );
    let header_only = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    std::fs::write(&path, &bytes[..header_only]).unwrap();
    assert!(load_error(&path)
        .ends_with("line 1: the file ends after its header, without a trailer: it was cut short"));
    // Cut at a line's end, the last user line is read as the trailer.
    let without_trailer = lines_of(&bytes).join("\n") + "\n";
    std::fs::write(&path, without_trailer).unwrap();
    let message = load_error(&path);
    assert!(
        message.contains("line 4: expected the trailer line"),
        "{message}"
    );
}

#[test]
fn every_flipped_byte_of_a_snapshot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x01;
        std::fs::write(&path, &damaged).unwrap();
        let message = load_error(&path);
        assert!(message.contains(": line "), "byte {at}: {message}");
    }
}

#[test]
fn a_changed_user_line_fails_the_checksum_and_a_resealed_one_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    let mut lines = lines_of(&bytes);
    let busy = lines.iter().position(|l| l.contains("\"busy\"")).unwrap();
    lines[busy] = lines[busy].replace("\"busy\"", "\"bizzy\"");
    let mut tampered = lines.join("\n").into_bytes();
    tampered.push(b'\n');
    tampered.extend_from_slice(bytes.rsplit(|&b| b == b'\n').nth(1).unwrap());
    tampered.push(b'\n');
    std::fs::write(&path, &tampered).unwrap();
    let message = load_error(&path);
    assert!(
        message.contains(&format!(
            "line {}: statusDefault: \"bizzy\" is not a status",
            busy + 1
        )),
        "{message}"
    );

    std::fs::write(&path, sealed(&lines_of(&bytes), 3)).unwrap();
    assert_eq!(load(&path, &options()).unwrap().map(|l| l.users), Some(3));
    std::fs::write(&path, sealed(&lines, 3)).unwrap();
    let message = load_error(&path);
    assert_eq!(
        message,
        format!(
            "{}: line {}: statusDefault: \"bizzy\" is not a status: expected online | away | busy | offline",
            path.display(),
            busy + 1
        )
    );
}

#[test]
fn what_the_api_would_refuse_is_refused_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let header = r#"{"format":"presenced-snapshot","version":1,"writtenAt":0}"#.to_owned();
    let user = |id: &str, name: &str| {
        format!(
            r#"{{"_id":"{id}","username":"{name}","statusDefault":"online","status":"offline"}}"#
        )
    };
    let cases = [
        (vec![user("a b", "x")], 2, "userId: \"a b\" is not valid"),
        (vec![user("a", "x"), user("b", "x")], 3, "username: \"x\" already belongs to another user"),
        (vec![user("a", "x"), user("a", "y")], 3, "userId: \"a\" appears twice"),
        (
            vec![r#"{"_id":"a","username":"a","utcOffset":99,"statusDefault":"online","status":"offline"}"#.to_owned()],
            2,
            "utcOffset: 99 is out of range",
        ),
    ];
    for (users, line, want) in cases {
        let mut lines = vec![header.clone()];
        lines.extend(users.iter().cloned());
        std::fs::write(&path, sealed(&lines, users.len() as u64)).unwrap();
        let message = load_error(&path);
        let want = format!("{}: line {line}: {want}", path.display());
        assert!(message.starts_with(&want), "{message}\nwanted: {want}");
    }
}

#[test]
fn a_header_from_elsewhere_or_another_version_and_a_wrong_count_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    let lines = lines_of(&bytes);
    let with_header = |header: &str| {
        let mut lines = lines.clone();
        lines[0] = header.to_owned();
        sealed(&lines, 3)
    };
    let cases = [
        (with_header("[server]"), "line 1: not a presenced snapshot: expected a header like {\"format\":\"presenced-snapshot\",\"version\":1}"),
        (with_header(r#"{"format":"other","version":1}"#), "line 1: not a presenced snapshot"),
        (with_header(r#"{"format":"presenced-snapshot","version":2}"#),
         "line 1: snapshot format version 2 is not one this build reads (it reads version 1)"),
        (sealed(&lines, 4), "line 5: the trailer counts 4 users but the file holds 3: it is damaged"),
        (b"garbage\n".to_vec(), "line 1: not a presenced snapshot"),
    ];
    for (bytes, want) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let message = load_error(&path);
        assert!(
            message.starts_with(&format!("{}: {want}", path.display())),
            "{message}\nwanted: {want}"
        );
    }
}

#[test]
fn a_line_longer_than_any_user_line_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let mut bytes = br#"{"format":"presenced-snapshot","version":1}"#.to_vec();
    bytes.push(b'\n');
    bytes.extend(std::iter::repeat_n(b'x', 3 << 20));
    std::fs::write(&path, &bytes).unwrap();
    let message = load_error(&path);
    assert!(
        message.ends_with("line 2: longer than 1048576 bytes: the file is damaged"),
        "{message}"
    );
}

#[test]
fn the_file_is_written_when_something_changed_and_a_failure_shows_until_a_write_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("snap");
    let file = SnapshotFile::open(&path, &options()).unwrap();
    assert_eq!(file.store().stats().users, 0);
    assert_eq!(
        file.write_if_changed().unwrap().map(|s| s.users),
        Some(0),
        "a fresh start writes"
    );
    assert_eq!(file.write_if_changed().unwrap(), None, "nothing changed");

    let u1 = UserId::parse("u1").unwrap();
    let profile = Profile::new(Username::parse("u1").unwrap(), None, None, None, &[], true);
    file.store().put_user(&u1, profile.unwrap()).unwrap();
    assert_eq!(file.write_if_changed().unwrap().map(|s| s.users), Some(1));
    // A token changes nothing others see, but must survive a restart.
    file.store()
        .add_token(&u1, TokenHash::of_token("t").unwrap())
        .unwrap();
    std::fs::create_dir(temp_path(&path)).unwrap();
    let error = file.write_if_changed().unwrap_err().to_string();
    assert_eq!(file.problem(), Some(format!("persistence: {error}")));
    std::fs::remove_dir(temp_path(&path)).unwrap();
    assert_eq!(file.write_if_changed().unwrap().map(|s| s.users), Some(1));
    assert_eq!(file.problem(), None);

    let reopened = SnapshotFile::open(&path, &options()).unwrap();
    assert!(reopened.store().authenticate("u1", "t").is_some());
    assert_eq!(
        reopened.write_if_changed().unwrap(),
        None,
        "loaded and unchanged"
    );
}

#[test]
fn opening_removes_a_temp_file_left_by_a_cut_write_and_keeps_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    std::fs::write(temp_path(&path), &bytes[..bytes.len() / 2]).unwrap();
    let file = SnapshotFile::open(&path, &options()).unwrap();
    assert_eq!(file.store().stats().users, 3);
    assert!(!temp_path(&path).exists());
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_refused_file_is_left_byte_for_byte_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes) = saved(&dir);
    let damaged = &bytes[..bytes.len() - 10];
    std::fs::write(&path, damaged).unwrap();
    assert!(SnapshotFile::open(&path, &options()).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), damaged);
}
