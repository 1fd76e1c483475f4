//! The visible face of a user: the JSON object `users.presence` returns for it,
//! rendered when an answer needs it, and kept only as a deleted user's tombstone.

use crate::domain::Status;
use std::fmt::Write as _;

/// Where a user's id starts in its JSON object, after `{"_id":"`: ids are
/// `[A-Za-z0-9._-]`, never escaped.
pub(crate) const ID_AT: usize = r#"{"_id":""#.len();

/// What others see of one user at one change. Immutable once built.
#[derive(Debug, PartialEq, Eq)]
pub struct UserView {
    /// The id is the first string of the JSON, unescaped (ids are
    /// `[A-Za-z0-9._-]`): kept as its length rather than a second copy.
    id_len: u8,
    status: Status,
    deleted: bool,
    // A String, not a Box<str>: views live for one answer (or as a tombstone),
    // and shrinking each to fit would cost a reallocation per user rendered.
    json: String,
}

/// The fields a view is rendered from, borrowed from the record that owns them.
pub(crate) struct Visible<'a> {
    pub username: &'a str,
    pub name: Option<&'a str>,
    pub status: Status,
    pub utc_offset: Option<f64>,
    pub avatar_etag: Option<&'a str>,
    pub status_text: &'a str,
    /// True if none of the strings needs escaping, as checked when they were
    /// stored: a render then copies them without looking at them again.
    pub plain: bool,
}

/// Returns true if `s` holds a byte JSON must escape: a control character, `"`
/// or `\`. Every string of every user rendered is checked, so eight bytes are
/// tested at a time.
pub(crate) fn needs_escape(s: &str) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // True if and only if a byte of `x` is below `n` (exact for n <= 128): the
    // subtraction borrows into a byte's high bit only from a byte below `n`,
    // and bytes with their own high bit set are masked out by `!x`.
    let any_below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGHS != 0;
    let any_equal = |x: u64, b: u8| any_below(x ^ (ONES * u64::from(b)), 1);
    let mut chunks = s.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        // Always eight bytes; if not, escaping is the answer that stays correct.
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            return true;
        };
        let x = u64::from_le_bytes(bytes);
        if any_below(x, 0x20) || any_equal(x, b'"') || any_equal(x, b'\\') {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends `s` as a JSON string. Names and texts almost never need escaping,
/// so they are checked in one pass (none if `plain` says so already) and
/// copied; serde_json escapes the rest.
fn push_json_str(out: &mut String, s: &str, plain: bool) {
    if !plain && needs_escape(s) {
        // Serializing a str cannot fail.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// Appends the user's object to `out`, which an answer's users can share, in the
/// wire shape: unset or empty fields are omitted, never null (docs/api.md §3.1). By hand
/// rather than through serde: this runs for every user of every answer built,
/// and a profile showed serde's per-byte escaping first.
pub(crate) fn write_json(out: &mut String, id: &str, v: &Visible<'_>) {
    let name = v.name.map_or(0, str::len);
    let etag = v.avatar_etag.map_or(0, str::len);
    out.reserve(100 + id.len() + v.username.len() + name + etag + v.status_text.len());
    out.push_str(r#"{"_id":"#);
    push_json_str(out, id, v.plain);
    out.push_str(r#","username":"#);
    push_json_str(out, v.username, v.plain);
    if let Some(name) = v.name {
        out.push_str(r#","name":"#);
        push_json_str(out, name, v.plain);
    }
    out.push_str(r#","status":""#);
    out.push_str(v.status.as_str());
    out.push('"');
    if let Some(offset) = v.utc_offset {
        out.push_str(r#","utcOffset":"#);
        // Whole hours as integers (`-2`, not `-2.0`), as Rocket.Chat writes them,
        // by itoa: `write!` goes through the formatting machinery, the costliest
        // part of a render after the strings. Validated finite and within
        // -14..=14: the cast is exact and Display writes a plain JSON number.
        if offset.fract() == 0.0 {
            out.push_str(itoa::Buffer::new().format(offset as i64));
        } else {
            let _ = write!(out, "{offset}");
        }
    }
    if let Some(etag) = v.avatar_etag {
        out.push_str(r#","avatarETag":"#);
        push_json_str(out, etag, v.plain);
    }
    if !v.status_text.is_empty() {
        out.push_str(r#","statusText":"#);
        push_json_str(out, v.status_text, v.plain);
    }
    out.push('}');
}

impl UserView {
    pub(crate) fn render(id: &str, visible: &Visible<'_>) -> UserView {
        debug_assert!(id.len() <= crate::domain::ids::MAX_ID_LEN);
        UserView {
            id_len: u8::try_from(id.len()).unwrap_or(u8::MAX),
            status: visible.status,
            deleted: false,
            json: {
                let mut json = String::new();
                write_json(&mut json, id, visible);
                json
            },
        }
    }

    /// The tombstone a deleted user leaves in the log: `_id`, `username`, `offline`.
    pub(crate) fn deleted(id: &str, username: &str) -> UserView {
        let mut view = UserView::render(
            id,
            &Visible {
                username,
                name: None,
                status: Status::Offline,
                utc_offset: None,
                avatar_etag: None,
                status_text: "",
                plain: false,
            },
        );
        view.deleted = true;
        view
    }

    /// Returns the user's id.
    pub fn id(&self) -> &str {
        self.json
            .get(ID_AT..ID_AT + usize::from(self.id_len))
            .unwrap_or_default()
    }

    /// Returns the visible status (`offline` for a deleted user).
    pub fn status(&self) -> Status {
        self.status
    }

    /// Returns true if and only if this view records the user's deletion.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Returns the rendered JSON object.
    pub fn json(&self) -> &str {
        &self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> &'static str {
        "rocket.cat"
    }

    #[test]
    fn unset_fields_are_omitted_and_whole_offsets_are_integers() {
        let v = UserView::render(
            id(),
            &Visible {
                username: "rocket.cat",
                name: Some("Rocket.Cat"),
                status: Status::Online,
                utc_offset: Some(-2.0),
                avatar_etag: None,
                status_text: "",
                plain: false,
            },
        );
        assert_eq!(
            v.json(),
            r#"{"_id":"rocket.cat","username":"rocket.cat","name":"Rocket.Cat","status":"online","utcOffset":-2}"#
        );
    }

    #[test]
    fn fractional_offsets_and_text_are_kept_and_escaped() {
        let v = UserView::render(
            id(),
            &Visible {
                username: "rocket.cat",
                name: Some("Ann \"Q\""),
                status: Status::Busy,
                utc_offset: Some(5.5),
                avatar_etag: Some("e"),
                status_text: "in a\nmeeting",
                plain: false,
            },
        );
        let parsed: serde_json::Value = serde_json::from_str(v.json()).unwrap();
        assert_eq!(parsed["utcOffset"], 5.5);
        assert_eq!(parsed["name"], "Ann \"Q\"");
        assert_eq!(parsed["statusText"], "in a\nmeeting");
    }

    #[test]
    fn the_escape_check_finds_every_byte_json_escapes_wherever_it_is() {
        let plain = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        // Every ASCII byte at every position of strings around two words long.
        for len in 1..=19 {
            for at in 0..len {
                for b in 0u8..=0x7f {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    let s = String::from_utf8(bytes).unwrap();
                    assert_eq!(needs_escape(&s), plain(b), "{s:?}");
                }
            }
        }
        // Multi-byte characters set high bits, which must not read as escapes.
        for s in ["é 日本 🚀 ok", "\u{80}\u{ff}\u{100}ééééé", "ÿÿÿÿÿÿÿÿÿÿÿ"] {
            assert!(!needs_escape(s), "{s:?}");
            assert!(needs_escape(&format!("{s}\"")), "{s:?}");
        }
    }

    #[test]
    fn deleted_user_renders_as_id_username_offline() {
        let v = UserView::deleted(id(), "rocket.cat");
        assert!(v.is_deleted());
        assert_eq!(v.id(), "rocket.cat");
        assert_eq!(
            v.json(),
            r#"{"_id":"rocket.cat","username":"rocket.cat","status":"offline"}"#
        );
    }

    #[test]
    fn any_text_and_offset_render_as_valid_json_with_the_same_values() {
        let texts = [
            "",
            "plain",
            "quote \" inside",
            "back\\slash",
            "tab\there",
            "nul\u{0}",
            "é 日本 🚀",
            "\u{1f}\u{7f}",
            "</script>",
        ];
        for (i, text) in texts.iter().enumerate() {
            let offset = [0.0, -0.0, 5.75, -3.5, 14.0, -14.0, 0.1][i % 7];
            let visible = |plain| Visible {
                username: "u",
                name: Some(text),
                status: Status::Away,
                utc_offset: Some(offset),
                avatar_etag: Some(text),
                status_text: text,
                plain,
            };
            let v = UserView::render(id(), &visible(false));
            // Told the strings are plain when they are, a render is the same.
            if !needs_escape(text) {
                assert_eq!(UserView::render(id(), &visible(true)), v);
            }
            let parsed: serde_json::Value =
                serde_json::from_str(v.json()).unwrap_or_else(|e| panic!("{}: {e}", v.json()));
            assert_eq!(parsed["name"], *text);
            assert_eq!(parsed["avatarETag"], *text);
            assert_eq!(
                parsed.get("statusText").map_or("", |t| t.as_str().unwrap()),
                *text
            );
            assert_eq!(parsed["utcOffset"].as_f64(), Some(offset), "{}", v.json());
        }
    }
}
