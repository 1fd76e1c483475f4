//! Which address a request comes from, for per-client rate limits.
//!
//! By default the TCP peer: a header is whatever the client chose to send. Behind
//! N proxies that each append the address they saw to `X-Forwarded-For`
//! (`limits.forwarded_for_hops = N`), the client is the N-th address from the
//! right, the one the outermost trusted proxy saw; what lies further left is the
//! client's own claim. This is Rocket.Chat's `HTTP_FORWARDED_COUNT`.

use actix_web::HttpRequest;
use std::net::{IpAddr, Ipv4Addr};

/// Returns the client address of `req`, trusting `hops` proxies.
///
/// A header with fewer addresses than `hops`, or one that does not parse, falls
/// back to the peer address, as upstream does.
pub fn client_ip(req: &HttpRequest, hops: usize) -> IpAddr {
    // Only a test request has no peer; it stands for one client.
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    if hops == 0 {
        return peer;
    }
    forwarded(req, hops).unwrap_or(peer)
}

fn forwarded(req: &HttpRequest, hops: usize) -> Option<IpAddr> {
    // Several X-Forwarded-For lines are one list, in order (RFC 9110 §5.3).
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .map(|v| v.to_str().ok())
        .collect::<Option<_>>()?;
    let joined = values.join(",");
    let addresses: Vec<&str> = joined.split(',').map(str::trim).collect();
    let index = addresses.len().checked_sub(hops)?;
    addresses.get(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(forwarded: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr("10.0.0.9:4000".parse().unwrap());
        for value in forwarded {
            req = req.append_header(("X-Forwarded-For", *value));
        }
        req.to_http_request()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_trusted_hops_the_header_is_ignored() {
        assert_eq!(client_ip(&request(&["1.2.3.4"]), 0), ip("10.0.0.9"));
    }

    #[test]
    fn with_hops_the_address_that_many_from_the_right_is_the_client() {
        let req = request(&["6.6.6.6, 1.2.3.4", "192.168.1.1"]);
        assert_eq!(client_ip(&req, 1), ip("192.168.1.1"));
        assert_eq!(client_ip(&req, 2), ip("1.2.3.4"));
        assert_eq!(client_ip(&req, 3), ip("6.6.6.6"));
        let v6 = request(&["2001:db8::1"]);
        assert_eq!(client_ip(&v6, 1), ip("2001:db8::1"));
    }

    #[test]
    fn a_short_or_unparsable_header_falls_back_to_the_peer() {
        assert_eq!(client_ip(&request(&["1.2.3.4"]), 2), ip("10.0.0.9"));
        assert_eq!(client_ip(&request(&[]), 1), ip("10.0.0.9"));
        assert_eq!(client_ip(&request(&["not-an-ip"]), 1), ip("10.0.0.9"));
    }
}
