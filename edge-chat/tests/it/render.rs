//! Rendering with ratatui's TestBackend: wrapping of mixed Chinese/English/emoji, the cursor
//! after wide characters, the status bar, tiny terminals.

use edge_chat::app::{App, Line, Role};
use edge_chat::persona;
use edge_chat::store::Store;
use edge_chat::ui;
use edge_chat::wrap::str_width;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn app(dir: &std::path::Path) -> App {
    let personas = persona::load_all(None).expect("built-in personas");
    let p = personas[0].clone();
    App::new(
        "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        2048,
        personas,
        p,
        Store::new(dir.to_path_buf()),
    )
}

fn rows(t: &Terminal<TestBackend>) -> Vec<String> {
    let b = t.backend().buffer();
    // A wide character fills two cells; the second one is padding, not text.
    (0..b.area.height)
        .map(|y| {
            let mut row = String::new();
            let mut x = 0;
            while x < b.area.width {
                let sym = b[(x, y)].symbol();
                row.push_str(sym);
                x += u16::try_from(str_width(sym).max(1)).unwrap_or(1);
            }
            row
        })
        .collect()
}

#[test]
fn mixed_text_wraps_by_display_width() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = app(tmp.path());
    let msg =
        "I feel 很孤独 today 😢 because my best friend 搬去了另一个城市 and I miss her 👩‍👩‍👧 a lot.";
    a.lines.push(Line {
        role: Role::User,
        text: msg.into(),
        interrupted: false,
    });
    let width = 24u16;
    let conv = ui::conversation_rows(&a, usize::from(width));
    for r in &conv {
        let s: String = r.spans.iter().map(|s| s.content.as_ref()).collect();
        assert!(
            str_width(&s) <= usize::from(width),
            "{s:?} is wider than {width}"
        );
    }
    let body: String = conv[1..]
        .iter()
        .map(|r| {
            r.spans
                .iter()
                .map(|s| s.content.as_ref())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("");
    // Nothing lost or split: the characters come back in order (spaces aside).
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    assert_eq!(squash(&body), squash(msg));
    let mut t = Terminal::new(TestBackend::new(width, 16)).expect("terminal");
    t.draw(|f| ui::draw(f, &a)).expect("draw");
    let screen = rows(&t).join("\n");
    assert!(screen.contains("很孤独"), "{screen}");
    assert!(screen.contains("搬去了"), "{screen}");
}

#[test]
fn cursor_sits_after_wide_characters() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = app(tmp.path());
    a.editor.insert_str("你好ab");
    let mut t = Terminal::new(TestBackend::new(40, 10)).expect("terminal");
    t.draw(|f| ui::draw(f, &a)).expect("draw");
    let c = t.get_cursor_position().expect("cursor");
    // Inside the input box border (x = 1), after 2 wide + 2 narrow characters.
    assert_eq!(c.x, 1 + 4 + 2);
    a.editor.left();
    a.editor.left();
    a.editor.left();
    t.draw(|f| ui::draw(f, &a)).expect("draw");
    assert_eq!(t.get_cursor_position().expect("cursor").x, 1 + 2);
    // A second line (Alt+Enter): the box grows upwards by a row, the cursor is on its second
    // line, in the column after one wide character.
    a.editor.end();
    a.editor.newline();
    a.editor.insert_str("好");
    t.draw(|f| ui::draw(f, &a)).expect("draw");
    let c2 = t.get_cursor_position().expect("cursor");
    assert_eq!((c2.x, c2.y), (1 + 2, c.y));
}

#[test]
fn status_bar_shows_model_persona_speed_context_and_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = app(tmp.path());
    a.tokens_per_s = Some(187.25);
    a.ctx_used = 345;
    let mut t = Terminal::new(TestBackend::new(120, 8)).expect("terminal");
    t.draw(|f| ui::draw(f, &a)).expect("draw");
    let last = rows(&t).pop().expect("rows");
    for want in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "listener",
        "187.2 t/s",
        "ctx 345/2048",
        "ready",
    ] {
        assert!(last.contains(want), "{want:?} not in {last:?}");
    }
}

#[test]
fn tiny_terminals_do_not_panic() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = app(tmp.path());
    a.lines.push(Line {
        role: Role::Assistant,
        text: "我在这里陪着你。I'm here with you 🤗".into(),
        interrupted: true,
    });
    a.editor
        .insert_str("一个很长很长的输入 with English words and 😀 emoji\nsecond line");
    for (w, h) in [(20, 5), (1, 1), (2, 1), (1, 3), (3, 2), (10, 2), (200, 3)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| ui::draw(f, &a))
            .unwrap_or_else(|e| panic!("{w}x{h}: {e}"));
    }
}
