//! Drawing: the conversation (word-wrapped by display width, scrollable), the input box with a
//! correctly placed cursor, and the status bar. Works at any size, down to 1 x 1.

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TLine, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use crate::app::{App, Role, State};
use crate::wrap::{hard_wrap_with_cursor, wrap};

/// The conversation as display rows for `width` columns.
pub fn conversation_rows(app: &App, width: usize) -> Vec<TLine<'static>> {
    let mut rows = Vec::new();
    for l in &app.lines {
        let (who, style) = match l.role {
            Role::User => (
                "You",
                Style::default()
                    .fg(Color::Cyan)
                    .add_modifier(Modifier::BOLD),
            ),
            Role::Assistant => (
                app.persona.name.as_str(),
                Style::default()
                    .fg(Color::Green)
                    .add_modifier(Modifier::BOLD),
            ),
            Role::Info => ("·", Style::default().fg(Color::DarkGray)),
        };
        if l.role != Role::Info {
            rows.push(TLine::from(Span::styled(who.to_string(), style)));
        }
        let body_style = match l.role {
            Role::Info => Style::default().fg(Color::Yellow),
            _ => Style::default(),
        };
        let mut text = l.text.clone();
        if l.interrupted {
            text.push_str(" [stopped]");
        }
        for r in wrap(&text, width.saturating_sub(2).max(1)) {
            rows.push(TLine::from(Span::styled(format!("  {r}"), body_style)));
        }
        rows.push(TLine::from(""));
    }
    rows
}

pub fn status_text(app: &App) -> String {
    let state = match app.state {
        State::Ready => "ready".to_string(),
        State::Generating { since, pieces: 0 } => {
            format!("thinking {:.1}s", since.elapsed().as_secs_f64())
        }
        State::Generating { .. } => "generating · Esc stops".to_string(),
    };
    let tps = app
        .tokens_per_s
        .map_or("- t/s".to_string(), |t| format!("{t:.1} t/s"));
    format!(
        " {} · {} · {tps} · ctx {}/{} · {state} · /help",
        app.model_name, app.persona.name, app.ctx_used, app.n_ctx
    )
}

pub fn draw(f: &mut Frame, app: &App) {
    let area = f.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let inner_w = usize::from(area.width.saturating_sub(2)).max(1);
    let (input_lines, (crow, ccol)) =
        hard_wrap_with_cursor(&app.editor.text(), inner_w, app.editor.cursor());
    let input_h =
        (input_lines.len().clamp(1, 6) as u16 + 2).min(area.height.saturating_sub(1).max(1));
    let [conv, input, status] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(input_h),
        Constraint::Length(1),
    ])
    .areas(area);

    // Conversation: the last rows, or higher when scrolled.
    let rows = conversation_rows(app, usize::from(conv.width));
    let h = usize::from(conv.height);
    let max_scroll = rows.len().saturating_sub(h);
    let scroll = app.scroll.min(max_scroll);
    let end = rows.len() - scroll;
    let start = end.saturating_sub(h);
    f.render_widget(Paragraph::new(rows[start..end].to_vec()), conv);

    // Input: the rows around the cursor, inside a border.
    let title = if app.generating() {
        " replying… Esc stops "
    } else {
        " message · Enter sends "
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(input);
    f.render_widget(block, input);
    let ih = usize::from(inner.height).max(1);
    let first = crow.saturating_sub(ih - 1);
    let shown: Vec<TLine> = input_lines
        .iter()
        .chain(std::iter::once(&String::new()))
        .skip(first)
        .take(ih)
        .map(|l| TLine::from(l.clone()))
        .collect();
    f.render_widget(Paragraph::new(shown), inner);
    if inner.width > 0 && inner.height > 0 {
        let x = inner.x + (ccol as u16).min(inner.width.saturating_sub(1));
        let y = inner.y + ((crow - first) as u16).min(inner.height - 1);
        f.set_cursor_position(Position { x, y });
    }

    let s =
        Paragraph::new(status_text(app)).style(Style::default().bg(Color::Blue).fg(Color::White));
    f.render_widget(
        s,
        Rect {
            height: status.height.min(1),
            ..status
        },
    );
}
