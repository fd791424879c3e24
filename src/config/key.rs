//! The shared key from `HP_SHARED_KEY` or `HP_SHARED_KEY_FILE` (harp-compat.md §2.1,
//! H-01..H-06). No message built here ever contains the key or any part of it.

use std::io::Read;
use std::path::Path;

use super::defaults::MAX_SHARED_KEY_FILE_BYTES;
use super::names::{HP_SHARED_KEY, HP_SHARED_KEY_FILE};
use super::{strip_quotes, ConfigError, Secret, Vars};

/// Read, validate and quote-strip the key. An empty value counts as unset for both
/// variables (HaRP's start script tests them with `-n`).
pub(super) fn read_shared_key(vars: &Vars) -> Result<Secret, ConfigError> {
    let inline = vars.non_empty(HP_SHARED_KEY);
    let file = vars.non_empty(HP_SHARED_KEY_FILE);
    let (variable, raw) = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                HP_SHARED_KEY,
                format!("only one of {HP_SHARED_KEY} and {HP_SHARED_KEY_FILE} may be set; unset one"),
            ))
        }
        (None, None) => {
            return Err(ConfigError::new(
                HP_SHARED_KEY,
                format!("required: set {HP_SHARED_KEY} to the key configured in AppAPI, or {HP_SHARED_KEY_FILE} to a file holding it"),
            ))
        }
        (Some(key), None) => (HP_SHARED_KEY, key.as_bytes().to_vec()),
        (None, Some(path)) => (HP_SHARED_KEY_FILE, read_key_file(Path::new(path))?),
    };
    validate_key(&raw)
        .map(Secret::new)
        .map_err(|message| ConfigError::new(variable, message))
}

/// The file's bytes minus trailing newlines (shell `$(cat file)` semantics).
fn read_key_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let fail = |why: String| ConfigError::new(HP_SHARED_KEY_FILE, why);
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        fail(format!(
            "cannot open '{shown}': {e}; point it at a readable file holding the key"
        ))
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_SHARED_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read '{shown}': {e}")))?;
    if bytes.is_empty() {
        return Err(fail(format!("'{shown}' is empty; write the key into it")));
    }
    if bytes.len() as u64 > MAX_SHARED_KEY_FILE_BYTES {
        return Err(fail(format!(
            "'{shown}' is larger than {MAX_SHARED_KEY_FILE_BYTES} bytes; it must hold only the key"
        )));
    }
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}

/// HaRP's order: printable ASCII first, then quote strip, then no `"` or `\`. Lyre adds one
/// rule: an empty key (e.g. `""`) is refused, since it would authenticate anyone.
fn validate_key(raw: &[u8]) -> Result<String, String> {
    if let Some(bad) = raw.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
        let what = match bad {
            b'\t' => "a tab",
            b'\n' | b'\r' => "a line break",
            0x80.. => "a non-ASCII (e.g. UTF-8) byte",
            _ => "a control character",
        };
        return Err(format!(
            "the key contains {what}; use only printable ASCII characters (0x20-0x7E)"
        ));
    }
    // invariant: every byte is printable ASCII, so the bytes are valid UTF-8.
    let text = std::str::from_utf8(raw).map_err(|_| "the key is not ASCII".to_string())?;
    let key = strip_quotes(text);
    if key.contains(['"', '\\']) {
        return Err(
            "the key contains '\"' or '\\' inside the surrounding quotes; choose a key without them"
                .into(),
        );
    }
    if key.is_empty() {
        return Err(
            "the key is empty after removing surrounding quotes; set a non-empty key".into(),
        );
    }
    Ok(key.to_string())
}
