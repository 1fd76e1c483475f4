//! Bounds on a request's head, checked before routing so that an oversized URL
//! or header block gets a clear 414 or 431 rather than costing any work.
//!
//! actix-http has hard bounds of its own, above these: a request target over
//! 64 KiB is a bare `400`, a head over 128 KiB or with more than 96 header
//! fields a bare `431`, both closing the connection. The configured bounds are
//! kept below them (see `config.rs`), so anything between gets our JSON answer.

use super::ApiError;
use actix_web::dev::RequestHead;

/// The configured bounds of a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Longest request target, path and query (`server.max_url_bytes`).
    pub max_url_bytes: usize,
    /// Most bytes of header lines in all (`server.max_header_bytes`).
    pub max_header_bytes: usize,
}

impl HeadLimits {
    /// Refuses a head whose URL or headers are over the bounds.
    pub fn check(&self, head: &RequestHead) -> Result<(), ApiError> {
        let url = head.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
        if url > self.max_url_bytes {
            return Err(ApiError::uri_too_long(url, self.max_url_bytes));
        }
        // As sent: "name: value\r\n".
        let headers: usize = head
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if headers > self.max_header_bytes {
            return Err(ApiError::headers_too_large(headers, self.max_header_bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const LIMITS: HeadLimits = HeadLimits {
        max_url_bytes: 100,
        max_header_bytes: 200,
    };

    fn check(req: TestRequest) -> Result<(), ApiError> {
        LIMITS.check(req.to_srv_request().head())
    }

    #[test]
    fn a_url_up_to_the_limit_passes_and_one_byte_more_is_414_naming_both_sizes() {
        let path = |n: usize| format!("/a?{}", "x".repeat(n - 3));
        assert_eq!(check(TestRequest::with_uri(&path(100))), Ok(()));
        let refused = check(TestRequest::with_uri(&path(101))).unwrap_err();
        assert_eq!(refused.error_type(), Some("error-uri-too-long"));
        assert!(refused.message().starts_with(
            "URL: 101 bytes, longer than the limit of 100 bytes (server.max_url_bytes)"
        ));
    }

    #[test]
    fn headers_count_as_sent_and_too_many_bytes_are_431() {
        // "x-a: " + value + CRLF: 7 bytes and the value.
        let with = |n: usize| TestRequest::default().insert_header(("x-a", "v".repeat(n)));
        assert_eq!(check(with(193)), Ok(()));
        let refused = check(with(194)).unwrap_err();
        assert_eq!(refused.error_type(), Some("error-headers-too-large"));
        assert!(refused.message().contains(
            "201 bytes in all, more than the limit of 200 bytes (server.max_header_bytes)"
        ));
    }
}
