//! Canonical base64url without padding (RFC 7515 section 2, RFC 4648 section 5).
//!
//! Decoding is strict: `=` padding, characters outside the URL-safe alphabet,
//! whitespace and non-zero trailing bits are all refused, so every byte string has
//! exactly one accepted encoding and a token cannot be re-encoded into a second,
//! different-looking form with the same signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes canonical unpadded base64url; `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// Decodes canonical unpadded base64url of exactly `N` bytes.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    // An N-byte value always encodes to this many characters; checking first
    // bounds the work done on hostile input.
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(len) if len == N => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_non_canonical_forms() {
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode(&bytes);
            assert_eq!(decode(&text).as_deref(), Some(&bytes[..]));
            assert!(!text.contains('='));
        }
        // Padding, the standard alphabet, whitespace and set trailing bits.
        for bad in ["AA==", "AA=", "+/8", "A A", "AB", "AAB", " AA", "AA\n"] {
            assert_eq!(decode(bad), None, "{bad:?} must be refused");
        }
        assert_eq!(decode("AA"), Some(vec![0]));
        assert_eq!(decode("_w"), Some(vec![0xff]));
    }

    #[test]
    fn decode_array_checks_the_length() {
        let text = encode([7u8; 32]);
        assert_eq!(decode_array::<32>(&text), Some([7u8; 32]));
        assert_eq!(decode_array::<31>(&text), None);
        assert_eq!(decode_array::<32>(&encode([7u8; 31])), None);
    }
}
