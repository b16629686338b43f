//! Random keys, pastes, resizes, scrolls and inference-thread messages fed to the app, drawn
//! after every step: thousands of steps, no panic, and the invariants hold.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use edge_chat::app::{App, Command, Event, WorkerEvent};
use edge_chat::persona;
use edge_chat::store::Store;
use edge_chat::ui;
use edge_runtime::FinishReason;
use proptest::prelude::*;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn key(code: KeyCode, m: KeyModifiers) -> Event {
    Event::Key(KeyEvent::new(code, m))
}

fn event() -> impl Strategy<Value = Event> {
    let chars = prop::sample::select(vec![
        'a', 'Z', ' ', '你', '好', '😀', '/', '。', 'é', '\u{301}',
    ]);
    prop_oneof![
        6 => chars.prop_map(|c| key(KeyCode::Char(c), KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Enter, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Enter, KeyModifiers::ALT)),
        1 => Just(key(KeyCode::Backspace, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Delete, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Left, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Right, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Up, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Down, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Home, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::End, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Esc, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::PageUp, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::PageDown, KeyModifiers::NONE)),
        1 => Just(key(KeyCode::Char('u'), KeyModifiers::CONTROL)),
        1 => Just(Event::ScrollUp),
        1 => Just(Event::ScrollDown),
        1 => "[a-z 你好😀\n\r\t]{0,30}".prop_map(Event::Paste),
        1 => (0u16..130, 0u16..50).prop_map(|(w, h)| Event::Resize(w, h)),
        3 => "[a-z 你好😀\n]{0,8}".prop_map(|s| Event::Worker(WorkerEvent::Piece(s))),
        1 => Just(Event::Worker(WorkerEvent::Done { tokens: 3, tokens_per_s: 10.0, ctx_used: 50, reason: Some(FinishReason::Cancelled) })),
        1 => Just(Event::Worker(WorkerEvent::Done { tokens: 3, tokens_per_s: 10.0, ctx_used: 50, reason: Some(FinishReason::StopToken) })),
        1 => Just(Event::Worker(WorkerEvent::Error("context full".into()))),
        1 => prop::sample::select(vec!["/help", "/clear", "/persona", "/persona xiaonuan", "/set temp 0.3", "/set top_k x", "/sessions", "/save p1", "/load p1", "/load nope", "/system be kind", "/bogus"])
            .prop_map(|s| Event::Paste(s.to_string())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_sessions_never_panic(events in prop::collection::vec(event(), 1..250)) {
        let tmp = tempfile::tempdir().expect("tmp");
        let personas = persona::load_all(None).expect("personas");
        let p = personas[0].clone();
        let mut app = App::new("m.gguf".into(), 512, personas, p, Store::new(tmp.path().to_path_buf()));
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        for ev in events {
            if let Event::Resize(w, h) = ev {
                t.backend_mut().resize(w, h);
            }
            let cmds = app.handle(ev);
            for c in &cmds {
                if let Command::Generate { messages, .. } = c {
                    // The reply being generated is never sent as part of its own prompt.
                    prop_assert!(messages.last().is_some_and(|m| m.role == "user"));
                }
            }
            t.draw(|f| ui::draw(f, &app)).expect("draw");
            prop_assert!(app.editor.cursor() <= app.editor.text().chars().count());
        }
    }
}
