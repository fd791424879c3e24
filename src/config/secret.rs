//! The shared key: masked in `Debug`, compared in constant time, never logged.

#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The clear value, for the few places that must send it (Nextcloud calls).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison: the time taken depends only on the lengths.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        let mut diff =
            (ours.len() ^ candidate.len()) as u8 | u8::from(ours.len() != candidate.len());
        for (i, b) in candidate.iter().enumerate() {
            let o = if ours.is_empty() {
                0
            } else {
                ours[i % ours.len()]
            };
            diff |= o ^ b;
        }
        std::hint::black_box(diff) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn matches_only_equal_values() {
        let s = Secret::new("abc".into());
        assert!(s.matches(b"abc"));
        assert!(!s.matches(b"abd"));
        assert!(!s.matches(b"ab"));
        assert!(!s.matches(b"abcd"));
        assert!(!s.matches(b""));
        assert!(Secret::new(String::new()).matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(***)");
    }
}
