//! Login-token hashes, as Rocket.Chat stores them: `base64(sha256(token))`.
//!
//! Only the 32-byte digest is kept; the raw token never reaches the store.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::fmt;

/// The longest raw token accepted, to bound hashing work per request.
pub const MAX_TOKEN_LEN: usize = 512;

/// The SHA-256 digest of a login token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

/// Why a token or hashed token was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError(&'static str);

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TokenError {}

impl TokenHash {
    /// Hashes a raw login token.
    pub fn of_token(token: &str) -> Result<TokenHash, TokenError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(TokenError("token: expected 1-512 characters"));
        }
        Ok(TokenHash(Sha256::digest(token.as_bytes()).into()))
    }

    /// Parses a hashed token as Rocket.Chat stores it (standard, padded base64 of 32 bytes).
    pub fn parse_hashed(hashed: &str) -> Result<TokenHash, TokenError> {
        const BAD: TokenError =
            TokenError("hashedToken: expected standard base64 (padded) of a 32-byte SHA-256 digest, 44 characters");
        if hashed.len() != 44 {
            return Err(BAD);
        }
        let bytes = STANDARD.decode(hashed).map_err(|_| BAD)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(TokenHash)
            .map_err(|_| BAD)
    }

    /// Returns the hash in Rocket.Chat's stored form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Returns true if and only if `self` equals any of `candidates`, in time that
    /// depends only on how many candidates there are, not on their contents.
    ///
    /// Every authenticated request runs this, so it compares 64-bit words rather
    /// than bytes (`subtle`'s slice comparison puts each byte through an optimization
    /// barrier: it cost more than the SHA-256 before it). What is compared are
    /// digests, not tokens; still, no comparison stops early.
    pub fn is_among(&self, candidates: &[TokenHash]) -> bool {
        let mine = self.words();
        let mut found = 0u64;
        for candidate in candidates {
            let diff = mine
                .iter()
                .zip(candidate.words())
                .fold(0u64, |acc, (a, b)| acc | (a ^ b));
            // 1 if equal, else 0, without a branch: `diff | -diff` has its top bit
            // set exactly when `diff` is not 0.
            found |= 1 ^ ((diff | diff.wrapping_neg()) >> 63);
            // Keeps the compiler from leaving the loop at the first match.
            found = std::hint::black_box(found);
        }
        found == 1
    }

    fn words(&self) -> [u64; 4] {
        std::array::from_fn(|i| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&self.0[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(word)
        })
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is as good as a password against this service: keep it out of logs.
        f.write_str("TokenHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_of_the_seed_token_matches_its_base64_form() {
        let hash = TokenHash::of_token("9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq").unwrap();
        let again = TokenHash::parse_hashed(&hash.to_base64()).unwrap();
        assert_eq!(hash, again);
        assert_eq!(hash.to_base64().len(), 44);
    }

    #[test]
    fn known_sha256_digest_is_encoded_as_rocket_chat_does() {
        // echo -n abc | sha256sum | xxd -r -p | base64
        let hash = TokenHash::of_token("abc").unwrap();
        assert_eq!(
            hash.to_base64(),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn malformed_hashed_tokens_are_rejected() {
        for bad in [
            "",
            "abc",
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0",
            "!!!!v48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
        ] {
            assert!(TokenHash::parse_hashed(bad).is_err(), "{bad}");
        }
        assert!(TokenHash::of_token("").is_err());
        assert!(TokenHash::of_token(&"x".repeat(513)).is_err());
    }

    #[test]
    fn is_among_finds_a_match_anywhere_and_nothing_else() {
        let [a, b, c] = ["a", "b", "c"].map(|t| TokenHash::of_token(t).unwrap());
        assert!(a.is_among(&[b, c, a]));
        assert!(!a.is_among(&[b, c]));
        assert!(!a.is_among(&[]));
        assert!(a.is_among(&[a, a]));
        // One differing bit anywhere is a mismatch.
        for byte in 0..32 {
            for bit in 0..8 {
                let mut near = a;
                near.0[byte] ^= 1 << bit;
                assert!(!a.is_among(&[near]), "byte {byte} bit {bit}");
                assert!(a.is_among(&[near, a]));
            }
        }
        assert_eq!(format!("{a:?}"), "TokenHash(<redacted>)");
    }
}
