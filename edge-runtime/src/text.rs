//! Turning token bytes into UTF-8 text pieces: a character split across tokens is held back
//! until complete, and text that might be the start of a stop string is held back until it is
//! known not to be one.

#[derive(Debug, Default)]
pub(crate) struct TextStream {
    pending: Vec<u8>,
    held: String,
    stops: Vec<String>,
}

impl TextStream {
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Self::default()
        }
    }

    /// Add a token's bytes; returns the text that is now safe to emit, and whether a stop string
    /// was reached (the stop string and everything after it are dropped).
    pub fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        self.pending.extend_from_slice(bytes);
        let mut valid_end = 0;
        loop {
            match std::str::from_utf8(&self.pending[valid_end..]) {
                Ok(s) => {
                    self.held.push_str(s);
                    valid_end = self.pending.len();
                    break;
                }
                Err(e) => {
                    let ok = valid_end + e.valid_up_to();
                    // from_utf8 validated this prefix.
                    self.held.push_str(
                        std::str::from_utf8(&self.pending[valid_end..ok]).unwrap_or_default(),
                    );
                    match e.error_len() {
                        // Invalid bytes (not just incomplete): replace, as lossy decoding does.
                        Some(n) => {
                            self.held.push(char::REPLACEMENT_CHARACTER);
                            valid_end = ok + n;
                        }
                        None => {
                            valid_end = ok;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..valid_end);

        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if self.held.ends_with(&s[..i]) {
                    keep = keep.max(i);
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// Everything still held (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.pending.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_characters_are_never_split() {
        let mut s = TextStream::new(vec![]);
        let bytes = "你好😊".as_bytes();
        let mut out = String::new();
        for b in bytes {
            let (t, stop) = s.push(&[*b]);
            assert!(!stop);
            // Every emitted piece is whole characters.
            out.push_str(&t);
        }
        assert_eq!(out, "你好😊");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn stop_strings_cut_and_hold_back() {
        let mut s = TextStream::new(vec!["</end>".into()]);
        assert_eq!(s.push(b"Hello </"), ("Hello ".to_string(), false));
        assert_eq!(s.push(b"e"), (String::new(), false));
        assert_eq!(s.push(b"nd> more"), (String::new(), true));
        let mut s = TextStream::new(vec!["</end>".into()]);
        assert_eq!(s.push(b"a </b"), ("a </b".to_string(), false));
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = TextStream::new(vec![]);
        assert_eq!(s.push(&[0xff, b'a']).0, "\u{fffd}a");
        assert_eq!(s.push(&[0xe4, 0xbd]).0, "");
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
