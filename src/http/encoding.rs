//! Response compression: gzip when the client accepts it and the body is big
//! enough for it to pay (docs/api.md §3.1 polling aids).

use actix_web::http::header::ACCEPT_ENCODING;
use actix_web::web::Bytes;
use actix_web::HttpRequest;
use flate2::write::GzEncoder;
use flate2::Compression;
use std::io::Write as _;

/// Bodies smaller than this go out as they are: a gzip header and the extra
/// work cost more than the bytes saved on a tiny answer.
pub const MIN_COMPRESSED_BYTES: usize = 1024;

/// Returns true if and only if the request's `Accept-Encoding` allows gzip
/// (named, or `*`, with a non-zero q-value).
pub fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Compresses `body` with gzip at `level`.
pub fn gzip(body: &[u8], level: Compression) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), level);
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    Bytes::from(encoder.finish().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use std::io::Read as _;

    fn accepts(value: &str) -> bool {
        accepts_gzip(
            &TestRequest::default()
                .insert_header((ACCEPT_ENCODING, value))
                .to_http_request(),
        )
    }

    #[test]
    fn gzip_is_accepted_by_name_or_star_unless_its_q_is_zero() {
        for yes in ["gzip", "GZIP", "deflate, gzip;q=0.5", "br, *", "gzip ; q=1"] {
            assert!(accepts(yes), "{yes}");
        }
        for no in [
            "",
            "identity",
            "br, deflate",
            "gzip;q=0",
            "gzip; q=0.0",
            "x-gzip2",
        ] {
            assert!(!accepts(no), "{no}");
        }
        assert!(!accepts_gzip(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn gzip_round_trips() {
        let body = br#"{"users":[],"full":true}"#.repeat(100);
        let packed = gzip(&body, Compression::fast());
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, body);
        assert!(packed.len() < body.len() / 4);
    }
}
