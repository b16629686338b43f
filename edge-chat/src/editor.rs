//! The input editor: multi-line text with a cursor that moves by grapheme (a CJK character or
//! an emoji is one step), input history, paste.

use unicode_segmentation::UnicodeSegmentation;

#[derive(Debug, Clone, Default)]
pub struct Editor {
    /// The text as graphemes, so cursor arithmetic never splits a character.
    text: Vec<String>,
    /// Cursor position in graphemes, 0..=text.len().
    cursor: usize,
    history: Vec<String>,
    /// Position while browsing history (None: editing the draft).
    browsing: Option<usize>,
    draft: Vec<String>,
}

fn graphemes(s: &str) -> Vec<String> {
    s.graphemes(true).map(str::to_string).collect()
}

impl Editor {
    pub fn text(&self) -> String {
        self.text.concat()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    pub fn insert_str(&mut self, s: &str) {
        // Pasted CRLF text becomes plain newlines; tabs become spaces.
        let clean = s
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace('\t', "    ");
        let g = graphemes(&clean);
        let n = g.len();
        self.text.splice(self.cursor..self.cursor, g);
        self.cursor += n;
        self.browsing = None;
    }

    pub fn insert_char(&mut self, c: char) {
        self.insert_str(c.encode_utf8(&mut [0; 4]));
    }

    pub fn newline(&mut self) {
        self.insert_str("\n");
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.text.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.text.len() {
            self.text.remove(self.cursor);
        }
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.text.len());
    }

    fn line_start(&self, at: usize) -> usize {
        self.text[..at]
            .iter()
            .rposition(|g| g == "\n")
            .map_or(0, |i| i + 1)
    }

    fn line_end(&self, at: usize) -> usize {
        self.text[at..]
            .iter()
            .position(|g| g == "\n")
            .map_or(self.text.len(), |i| at + i)
    }

    pub fn home(&mut self) {
        self.cursor = self.line_start(self.cursor);
    }

    pub fn end(&mut self) {
        self.cursor = self.line_end(self.cursor);
    }

    /// Delete from the line start to the cursor (Ctrl+U).
    pub fn kill_to_start(&mut self) {
        let s = self.line_start(self.cursor);
        self.text.drain(s..self.cursor);
        self.cursor = s;
    }

    /// Move up a line; on the first line, recall the previous history entry. Returns whether
    /// anything changed.
    pub fn up(&mut self) -> bool {
        let start = self.line_start(self.cursor);
        if start > 0 {
            let col = self.cursor - start;
            let prev_start = self.line_start(start - 1);
            self.cursor = (prev_start + col).min(start - 1);
            return true;
        }
        self.history_prev()
    }

    /// Move down a line; on the last line, go forward in history.
    pub fn down(&mut self) -> bool {
        let end = self.line_end(self.cursor);
        if end < self.text.len() {
            let col = self.cursor - self.line_start(self.cursor);
            let next_start = end + 1;
            self.cursor = (next_start + col).min(self.line_end(next_start));
            return true;
        }
        self.history_next()
    }

    fn history_prev(&mut self) -> bool {
        if self.history.is_empty() {
            return false;
        }
        let i = match self.browsing {
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return false,
            Some(i) => i - 1,
        };
        self.browsing = Some(i);
        self.text = graphemes(&self.history[i]);
        self.cursor = self.text.len();
        true
    }

    fn history_next(&mut self) -> bool {
        let Some(i) = self.browsing else { return false };
        if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.text = graphemes(&self.history[i + 1]);
        } else {
            self.browsing = None;
            self.text = std::mem::take(&mut self.draft);
        }
        self.cursor = self.text.len();
        true
    }

    /// Take the text (Enter), remember it in the history, and clear.
    pub fn take(&mut self) -> String {
        let t = self.text();
        if !t.trim().is_empty() && self.history.last() != Some(&t) {
            self.history.push(t.clone());
        }
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        t
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.cursor = 0;
        self.browsing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_and_emoji_are_one_step() {
        let mut e = Editor::default();
        e.insert_str("你好👨‍👩‍👧a");
        assert_eq!(e.cursor(), 4);
        e.left();
        e.left();
        e.backspace();
        assert_eq!(e.text(), "你👨‍👩‍👧a");
        e.delete();
        assert_eq!(e.text(), "你a");
    }

    #[test]
    fn history_and_lines() {
        let mut e = Editor::default();
        e.insert_str("first");
        assert_eq!(e.take(), "first");
        e.insert_str("ab\ncd");
        assert!(e.up());
        assert_eq!(e.cursor(), 2);
        assert!(e.up()); // first line: history
        assert_eq!(e.text(), "first");
        assert!(e.down());
        assert_eq!(e.text(), "ab\ncd");
    }
}
