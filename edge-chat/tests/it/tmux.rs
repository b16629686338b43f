//! The real `edge-chat` binary driven in tmux with the real SmolLM2 GGUF: a streamed reply,
//! Esc interrupting a long reply, `/save` then `/load`, Ctrl+C leaving a usable terminal.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "t"];
        a.extend_from_slice(keys);
        self.cmd(&a);
    }
    fn text(&self, s: &str) {
        self.cmd(&["send-keys", "-t", "t", "-l", s]);
    }
    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", "t"])
    }
    /// Wait until `pred(screen)` holds; panic with the screen after `secs`.
    fn wait(&self, what: &str, secs: u64, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

fn status(s: &str) -> &str {
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("")
}

#[test]
fn chat_interrupt_save_load_quit() {
    if !test_support::have_tool("tmux") {
        return test_support::skip(
            "edge-chat::chat_interrupt_save_load_quit",
            "tmux is not installed",
        );
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = root.join("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(model.is_file(), "run scripts/fetch-assets.sh");
    let data = tempfile::tempdir().expect("tmp");
    let t = Tmux {
        socket: format!("edge-chat-test-{}", std::process::id()),
    };
    t.cmd(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        "bash --norc --noprofile",
    ]);
    let cmd = format!(
        "cd {:?} && EDGE_CHAT_DATA_DIR={:?} {:?} --model {:?} -t 2 -c 2048 --seed 7 --persona listener; echo EXIT=$?",
        root.display().to_string(),
        data.path().display().to_string(),
        env!("CARGO_BIN_EXE_edge-chat"),
        model.display().to_string()
    );
    t.text(&cmd);
    t.keys(&["Enter"]);
    t.wait("the app to start", 60, |s| {
        status(s).contains("ready") && status(s).contains("ctx 0/2048")
    });

    // A message gets a streamed reply; the status bar then shows its speed and context use.
    t.text("Hi, I feel a bit lonely today.");
    t.keys(&["Enter"]);
    let s = t.wait("the reply", 120, |s| {
        let st = status(s);
        st.contains("ready") && st.contains(" t/s") && !st.contains("- t/s")
    });
    assert!(
        s.contains("You") && s.contains("Hi, I feel a bit lonely today."),
        "{s}"
    );
    assert!(!status(&s).contains("ctx 0/2048"), "{s}");

    // Esc interrupts a long reply at once and keeps what was generated.
    t.text("/set max_tokens 3000");
    t.keys(&["Enter"]);
    t.text("Please write a very long story about the sea, with many chapters.");
    t.keys(&["Enter"]);
    t.wait("generation", 60, |s| status(s).contains("generating"));
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["Escape"]);
    let s = t.wait("the stop", 10, |s| {
        s.contains("[stopped]") && status(s).contains("ready")
    });
    assert!(s.contains("[stopped]"), "{s}");

    // /save, /clear, /load brings the conversation back.
    t.text("/save demo1");
    t.keys(&["Enter"]);
    t.wait("the save", 10, |s| s.contains("Saved to"));
    assert!(data.path().join("sessions/demo1.json").is_file());
    t.text("/clear");
    t.keys(&["Enter"]);
    t.wait("the clear", 10, |s| {
        s.contains("New conversation.") && !s.contains("lonely today")
    });
    t.text("/load demo1");
    t.keys(&["Enter"]);
    t.wait("the load", 10, |s| {
        s.contains("Loaded \"demo1\"") && s.contains("[stopped]")
    });
    t.keys(&["PageUp", "PageUp", "PageUp", "PageUp"]);
    t.wait("the first message after scrolling up", 10, |s| {
        s.contains("lonely today")
    });

    // Ctrl+C quits with status 0 and the terminal is back to normal (canonical mode, echo).
    t.keys(&["C-c"]);
    t.wait("the exit", 10, |s| s.contains("EXIT=0"));
    t.text(
        "stty -a | tr ' ' '\\n' | grep -E -x -- '-?(icanon|echo)' | tr '\\n' ' '; echo \"EN\"\"D\"",
    );
    t.keys(&["Enter"]);
    let done = |l: &str| {
        l.trim_end().ends_with("END")
            && l.trim_start().trim_start_matches('-').starts_with("icanon")
    };
    let s = t.wait("stty", 10, |s| s.lines().any(done));
    let line = s.lines().find(|l| done(l)).unwrap_or("");
    assert_eq!(line.trim(), "icanon echo END", "{s}");
}
