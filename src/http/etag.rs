//! Entity tags of presence answers: `W/"<16 hex digits>"` from a 64-bit key,
//! and `If-None-Match` matched against the raw header, so a revalidation
//! allocates nothing before it answers 304.

use actix_web::http::header::{HeaderValue, IF_NONE_MATCH};
use actix_web::HttpRequest;

/// A weak entity tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(u64);

impl Tag {
    /// The tag of the answer with this key.
    pub fn new(key: u64) -> Tag {
        Tag(key)
    }

    /// Returns the tag as sent: `W/"<16 lower-case hex digits>"`.
    fn text(self) -> [u8; 20] {
        let mut text = [0u8; 20];
        text[..3].copy_from_slice(b"W/\"");
        for (i, byte) in text[3..19].iter_mut().enumerate() {
            let nibble = (self.0 >> (60 - 4 * i)) & 0xf;
            *byte = b"0123456789abcdef"[nibble as usize];
        }
        text[19] = b'"';
        text
    }

    /// Returns the `ETag` header value.
    pub fn header_value(self) -> HeaderValue {
        // Twenty ASCII bytes: always a valid header value.
        HeaderValue::from_bytes(&self.text()).unwrap_or(HeaderValue::from_static("W/\"0\""))
    }

    /// Returns true if and only if this tag matches one of `items`, a raw
    /// `If-None-Match` value (`*`, or a list of tags), by weak comparison.
    pub fn matches(self, items: &[u8]) -> bool {
        items.split(|&b| b == b',').any(|item| {
            let item = item.trim_ascii();
            let opaque = item.strip_prefix(b"W/").unwrap_or(item);
            item == b"*"
                || (opaque.len() == 18
                    && opaque[0] == b'"'
                    && opaque[17] == b'"'
                    && opaque[1..17].iter().all(u8::is_ascii_hexdigit)
                    // All hex digits, so this is ASCII and parses.
                    && std::str::from_utf8(&opaque[1..17])
                        .ok()
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                        == Some(self.0))
        })
    }

    /// If the request's `If-None-Match` holds this tag, returns the `ETag` value
    /// of the 304: the request's own header when it is exactly this tag, as a
    /// client revalidating sends it, so the answer formats and allocates nothing.
    pub fn held_by(self, req: &HttpRequest) -> Option<HeaderValue> {
        let text = self.text();
        let mut held = req.headers().get_all(IF_NONE_MATCH);
        // The common case first, a byte compare: the one tag this answer sent.
        if let Some(exact) = held.clone().find(|value| value.as_bytes() == text) {
            return Some(exact.clone());
        }
        held.any(|value| self.matches(value.as_bytes()))
            .then(|| self.header_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_a_weak_tag_of_sixteen_hex_digits() {
        assert_eq!(
            Tag::new(0xdead_beef).header_value(),
            "W/\"00000000deadbeef\""
        );
        assert_eq!(Tag::new(u64::MAX).header_value(), "W/\"ffffffffffffffff\"");
    }

    #[test]
    fn if_none_match_lists_match_by_weak_comparison() {
        let tag = Tag::new(0xdead_beef);
        for held in [
            "W/\"00000000deadbeef\"",
            "\"00000000deadbeef\"",
            "*",
            "\"x\", W/\"00000000deadbeef\"",
            " W/\"00000000DEADBEEF\" ",
        ] {
            assert!(tag.matches(held.as_bytes()), "{held}");
        }
        for other in [
            "",
            "W/\"00000000deadbeee\"",
            "W/00000000deadbeef",
            "\"deadbeef\"",
            "W/\"+0000000deadbeef\"",
        ] {
            assert!(!tag.matches(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn a_304_carries_the_tag_in_its_own_form_whatever_form_the_request_held_it_in() {
        let tag = Tag::new(0xdead_beef);
        let ours = "W/\"00000000deadbeef\"";
        for held in [
            vec![ours],
            vec!["\"00000000DEADBEEF\""],
            vec!["*"],
            vec!["\"x\"", ours],
            vec!["W/\"0000000000000001\"", "\"x\", W/\"00000000deadbeef\""],
        ] {
            let req = held
                .iter()
                .fold(actix_web::test::TestRequest::default(), |req, value| {
                    req.append_header((IF_NONE_MATCH, *value))
                })
                .to_http_request();
            assert_eq!(
                tag.held_by(&req).as_ref().map(HeaderValue::as_bytes),
                Some(ours.as_bytes()),
                "{held:?}"
            );
        }
        let other = actix_web::test::TestRequest::default()
            .insert_header((IF_NONE_MATCH, "W/\"0000000000000001\""))
            .to_http_request();
        assert_eq!(tag.held_by(&other), None);
        assert_eq!(
            tag.held_by(&actix_web::test::TestRequest::default().to_http_request()),
            None
        );
    }
}
