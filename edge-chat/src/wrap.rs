//! Line wrapping by display width (unicode-width), grapheme by grapheme: a CJK character or an
//! emoji takes two columns and is never split; English words move whole to the next line when
//! they fit on one; any wide character is a break opportunity (Chinese has no spaces).

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

/// Display width of a grapheme cluster (at least 1 for anything printable, so a cursor never
/// sits on a zero-width column; control characters count 0).
pub fn grapheme_width(g: &str) -> usize {
    if g.chars().all(char::is_control) {
        return 0;
    }
    // An emoji sequence (ZWJ, variation selector) renders as one wide glyph.
    if g.contains('\u{200d}') || g.contains('\u{fe0f}') {
        return 2;
    }
    g.width().max(1)
}

pub fn str_width(s: &str) -> usize {
    s.graphemes(true).map(grapheme_width).sum()
}

/// Word-wrap `text` to `width` columns; `\n` starts a new line. Never returns an empty list.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    for line in text.split('\n') {
        wrap_line(line, width, &mut out);
    }
    out
}

fn wrap_line(line: &str, width: usize, out: &mut Vec<String>) {
    let mut cur = String::new();
    let mut cur_w = 0usize;
    // Byte offset in `cur` of the last break opportunity (and the width up to it).
    let mut brk: Option<(usize, usize)> = None;
    for g in line.graphemes(true) {
        let w = grapheme_width(g);
        if w == 0 && !g.chars().all(char::is_control) {
            cur.push_str(g);
            continue;
        }
        if g.chars().all(char::is_control) {
            continue; // tabs and other controls are not drawn
        }
        if cur_w + w > width && !cur.is_empty() {
            if g == " " {
                // A space at the edge: end the line here, drop the space.
                out.push(std::mem::take(&mut cur).trim_end().to_string());
                cur_w = 0;
                brk = None;
                continue;
            }
            match brk {
                Some((at, _)) if at > 0 && at < cur.len() => {
                    let rest = cur.split_off(at);
                    out.push(cur.trim_end().to_string());
                    cur = rest.trim_start().to_string();
                    cur_w = str_width(&cur);
                }
                _ => {
                    out.push(std::mem::take(&mut cur));
                    cur_w = 0;
                }
            }
            brk = None;
        }
        let wide = w > 1;
        if wide && !cur.is_empty() {
            brk = Some((cur.len(), cur_w)); // break before a wide character
        }
        cur.push_str(g);
        cur_w += w;
        if g == " " || wide {
            brk = Some((cur.len(), cur_w)); // break after a space or a wide character
        }
    }
    out.push(cur);
}

/// Hard-wrap by width (no word logic) and report where each grapheme lands: what the input
/// editor uses, so that the drawn text and the cursor always agree. Returns the lines and, for
/// a position `n` graphemes into `text`, its (row, column).
pub fn hard_wrap_with_cursor(
    text: &str,
    width: usize,
    cursor: usize,
) -> (Vec<String>, (usize, usize)) {
    let width = width.max(1);
    let mut lines = vec![String::new()];
    let (mut row, mut col) = (0usize, 0usize);
    let mut pos = None;
    for (i, g) in text.graphemes(true).enumerate() {
        if i == cursor {
            pos = Some((row, col));
        }
        if g == "\n" || g == "\r\n" {
            lines.push(String::new());
            row += 1;
            col = 0;
            continue;
        }
        let w = grapheme_width(g);
        if col + w > width && col > 0 {
            lines.push(String::new());
            row += 1;
            col = 0;
        }
        if let Some(l) = lines.last_mut() {
            l.push_str(g);
        }
        col += w;
    }
    let mut end = pos.unwrap_or((row, col));
    if pos.is_none() && col >= width {
        // The cursor after a full last line goes to the start of the next row.
        lines.push(String::new());
        end = (row + 1, 0);
    }
    (lines, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_words_move_whole() {
        assert_eq!(
            wrap("hello brave new world", 11),
            vec!["hello brave", "new world"]
        );
    }

    #[test]
    fn chinese_breaks_between_characters_and_never_splits_one() {
        let lines = wrap("我今天感到很孤独", 5);
        assert_eq!(lines, vec!["我今", "天感", "到很", "孤独"]);
        for l in &lines {
            assert!(str_width(l) <= 5);
        }
    }

    #[test]
    fn mixed_and_emoji() {
        let lines = wrap("I feel 孤独 today 😢😢 ok", 8);
        for l in &lines {
            assert!(str_width(l) <= 8, "{lines:?}");
        }
        assert_eq!(lines.concat().replace(' ', ""), "Ifeel孤独today😢😢ok");
    }

    #[test]
    fn cursor_after_wide_characters() {
        let (lines, pos) = hard_wrap_with_cursor("你好ab", 10, 2);
        assert_eq!(lines, vec!["你好ab"]);
        assert_eq!(pos, (0, 4));
        let (lines, pos) = hard_wrap_with_cursor("你好你好你", 4, 5);
        assert_eq!(lines, vec!["你好", "你好", "你"]);
        assert_eq!(pos, (2, 2));
    }
}
