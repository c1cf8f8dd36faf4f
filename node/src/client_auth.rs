//! Clients authenticate to a node's JSON-RPC as they do to etcd with auth on: with a secret the
//! operator hands out, sent as `Authorization: Bearer <token>` on every call. A key-value write
//! carries no signature of its own, so this token is all that keeps strangers from writing.
//!
//! The token lives in a file only its owner can read; it never appears in `Debug` output, logs
//! or errors, and is compared in constant time so a timing probe learns nothing of it.

use std::fmt;
use std::path::Path;

use subtle::ConstantTimeEq;

/// Shortest token accepted, in characters: 16 random hex characters are 64 bits.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The header scheme clients use.
pub const BEARER: &str = "Bearer ";

/// The secret clients present.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientToken(zeroize::Zeroizing<String>);

impl fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientToken(<redacted>)")
    }
}

impl ClientToken {
    /// The token in `text` (surrounding whitespace dropped): at least [`MIN_TOKEN_CHARS`]
    /// visible ASCII characters, as an HTTP header can carry them.
    pub fn new(text: &str) -> Result<ClientToken, String> {
        let token = text.trim();
        if token.len() < MIN_TOKEN_CHARS {
            return Err(format!(
                "the token has {} characters; use at least {MIN_TOKEN_CHARS} random ones",
                token.len()
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be visible ASCII characters without spaces".into());
        }
        Ok(ClientToken(zeroize::Zeroizing::new(token.to_string())))
    }

    /// Reads the token from `path`, refusing a file that group or others can read.
    pub fn read(path: &Path) -> Result<ClientToken, String> {
        let text = crate::secret::read_secret_file(path)?;
        ClientToken::new(text.expose()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether an `Authorization` header's value presents this token.
    pub fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(presented) = header.and_then(|h| h.strip_prefix(BEARER.as_bytes())) else {
            return false;
        };
        // Lengths differ only for a wrong token, and the length is not the secret.
        presented.ct_eq(self.0.as_bytes()).into()
    }

    /// The token, for a client that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let t = ClientToken::new("  0123456789abcdef0123\n").unwrap();
        assert!(t.admits(Some(b"Bearer 0123456789abcdef0123")));
        for wrong in [
            &b"Bearer 0123456789abcdef012"[..],
            b"Bearer 0123456789abcdef01234",
            b"bearer 0123456789abcdef0123",
            b"0123456789abcdef0123",
            b"Basic 0123456789abcdef0123",
            b"",
        ] {
            assert!(!t.admits(Some(wrong)), "{}", String::from_utf8_lossy(wrong));
        }
        assert!(!t.admits(None));
    }

    #[test]
    fn short_or_spaced_tokens_are_refused_and_never_shown() {
        assert!(ClientToken::new("short")
            .unwrap_err()
            .contains("at least 16"));
        assert!(ClientToken::new("0123456789 abcdef0123")
            .unwrap_err()
            .contains("without spaces"));
        let t = ClientToken::new("0123456789abcdef0123").unwrap();
        assert!(!format!("{t:?}").contains("0123"));
    }

    #[cfg(unix)]
    #[test]
    fn a_token_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClientToken::read(&path).unwrap_err();
        assert!(e.contains("chmod 600") && e.contains("644"), "{e}");
        assert!(
            !e.contains("0123456789abcdef"),
            "the error shows the token: {e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            ClientToken::read(&path).unwrap().expose(),
            "0123456789abcdef0123"
        );
    }
}
