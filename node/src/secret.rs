//! Secrets in settings: key text that never shows in `Debug` output (logs, errors, `/status`,
//! `check-config`) and is wiped from memory when dropped, and key files that only their owner
//! may read.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// What `Debug` and `check-config` show in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Secret text from a setting (a hex key). Serialises as itself, because the settings are
/// layered through their serialised defaults; [`crate::config::Settings::redacted`] is what
/// is ever shown.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    pub fn new(text: impl Into<String>) -> SecretText {
        SecretText(Zeroizing::new(text.into()))
    }

    pub fn redacted() -> SecretText {
        SecretText::new(REDACTED)
    }

    /// The secret itself, to parse it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<&str> for SecretText {
    fn from(s: &str) -> SecretText {
        SecretText::new(s)
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SecretText, D::Error> {
        String::deserialize(d).map(SecretText::new)
    }
}

/// Reads a secret file, refusing one that group or others may read (the error says how to fix
/// it) and never quoting its contents.
pub fn read_secret_file(path: &Path) -> Result<SecretText, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown} is readable by group or others (mode {mode:o}): run `chmod 600 {shown}`"
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    Ok(SecretText::new(text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_shows_in_debug() {
        let s = SecretText::new("0af6153646bbf600f55ce455e1995283542b1ae25ce2622ce1fda443927c5308");
        let shown = format!("{s:?} {:?}", Some(s.clone()));
        assert!(!shown.contains("0af615"), "{shown}");
        assert_eq!(shown, "<redacted> Some(<redacted>)");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "  secret-text\n").unwrap();
        // (mode, readable)
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match read_secret_file(&path) {
                Ok(s) => {
                    assert!(ok, "{mode:o} accepted");
                    assert_eq!(s.expose(), "secret-text");
                }
                Err(e) => {
                    assert!(!ok, "{mode:o} refused: {e}");
                    assert!(e.contains("chmod 600"), "{e}");
                    assert!(!e.contains("secret-text"), "{e}");
                }
            }
        }
    }
}
