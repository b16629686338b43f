//! The Session API on the real SmolLM2 model: streaming, multi-turn cache reuse, cancellation,
//! stop strings, seeded sampling, context limits, sharing one Model between threads.

use crate::common;

use std::time::Duration;

use edge_runtime::{
    CancelToken, Error, FinishReason, GenerateOptions, Message, SamplerConfig, Session,
    SessionOptions,
};

fn session(n_ctx: usize) -> Session {
    Session::new(
        common::smollm2(),
        SessionOptions {
            n_ctx,
            n_threads: 2,
            n_batch: 64,
        },
    )
    .expect("session")
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        ..Default::default()
    }
}

#[test]
fn chat_streams_whole_characters_and_matches_the_tokens() {
    let mut s = session(512);
    let mut gen = s
        .chat(
            &[Message::user("我最近压力很大，晚上总是睡不着。")],
            greedy(40),
        )
        .expect("chat");
    let mut text = String::new();
    let mut pieces = 0;
    for p in gen.by_ref() {
        let p = p.expect("piece");
        assert!(!p.text.is_empty());
        assert!(
            !p.text.contains('\u{fffd}'),
            "a split character was emitted: {:?}",
            p.text
        );
        text.push_str(&p.text);
        pieces += 1;
    }
    assert_eq!(gen.finish_reason(), Some(FinishReason::MaxTokens));
    let tokens = gen.tokens().to_vec();
    drop(gen);
    assert_eq!(tokens.len(), 40);
    assert!(pieces > 1 && pieces <= tokens.len());
    // The stream is exactly the generated tokens' bytes, once complete characters.
    let full = s.model().detokenize(&tokens);
    assert!(
        full.starts_with(&text) && full.len() - text.len() < 4,
        "{text:?} vs {full:?}"
    );
    assert!(
        text.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{text}"
    );
}

#[test]
fn second_turn_prefills_only_new_tokens_and_equals_a_fresh_session() {
    let mut s = session(1024);
    let mut history = vec![
        Message::system("You are a kind listener."),
        Message::user("My dog is sick."),
    ];
    let gen = s.chat(&history, greedy(24)).expect("turn 1");
    let first_prompt = gen.stats().prompt_tokens;
    let reply = gen.text().expect("reply");
    history.push(Message::assistant(reply));
    history.push(Message::user("He stopped eating two days ago."));
    let gen = s.chat(&history, greedy(24)).expect("turn 2");
    let stats = gen.stats().clone();
    let second = gen.text().expect("reply 2");
    assert!(stats.reused_tokens >= first_prompt, "{stats:?}");
    assert!(
        stats.prompt_tokens < 40,
        "only the new turn is prefilled: {stats:?}"
    );

    let mut fresh = session(1024);
    let again = fresh
        .chat(&history, greedy(24))
        .expect("fresh")
        .text()
        .expect("text");
    assert_eq!(second, again, "cache reuse must not change the result");
}

#[test]
fn cancellation_from_another_thread_stops_within_one_token() {
    let mut s = session(1024);
    let cancel = CancelToken::new();
    let opts = GenerateOptions {
        max_tokens: 900,
        cancel: cancel.clone(),
        ..greedy(900)
    };
    let mut gen = s.complete("Once upon a time", opts).expect("generate");
    let canceller = {
        let c = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c.cancel();
        })
    };
    // Counted in tokens, not time (CI machines are noisy): once the flag is visible, at most the
    // token already being computed comes out.
    let mut after_cancel = 0;
    for p in gen.by_ref() {
        p.expect("piece");
        if cancel.is_cancelled() {
            after_cancel += 1;
        }
    }
    canceller.join().expect("thread");
    assert_eq!(gen.finish_reason(), Some(FinishReason::Cancelled));
    assert!(gen.tokens().len() < 900);
    assert!(after_cancel <= 1, "{after_cancel} pieces after cancel");
}

#[test]
fn stop_strings_end_generation_before_the_string() {
    let mut s = session(512);
    let opts = GenerateOptions {
        stop: vec![".".into()],
        ..greedy(64)
    };
    let mut gen = s
        .chat(
            &[Message::user("I feel lonely today. Can you talk with me?")],
            opts,
        )
        .expect("chat");
    let text: String = gen.by_ref().map(|p| p.expect("piece").text).collect();
    assert_eq!(gen.finish_reason(), Some(FinishReason::StopString));
    assert!(!text.contains('.') && !text.is_empty(), "{text:?}");
}

#[test]
fn same_seed_same_text() {
    let sample = |seed| {
        let mut s = session(256);
        let opts = GenerateOptions {
            max_tokens: 24,
            sampler: SamplerConfig {
                temperature: 1.0,
                seed,
                ..SamplerConfig::default()
            },
            ..Default::default()
        };
        s.complete("The weather today is", opts)
            .expect("generate")
            .text()
            .expect("text")
    };
    assert_eq!(sample(7), sample(7));
    assert_ne!(sample(7), sample(8));
}

#[test]
fn context_limits_are_explicit() {
    let mut s = session(16);
    let long = "word ".repeat(40);
    match s.complete(&long, greedy(4)) {
        Err(Error::ContextFull { n_ctx: 16, .. }) => {}
        other => panic!("expected ContextFull, got {:?}", other.map(|_| ())),
    }
    let mut gen = s.complete("Once upon a time", greedy(100)).expect("fits");
    for p in gen.by_ref() {
        p.expect("piece");
    }
    assert_eq!(gen.finish_reason(), Some(FinishReason::ContextFull));
}

#[test]
fn one_model_many_sessions_across_threads() {
    let model = common::smollm2();
    let run = |m: std::sync::Arc<edge_runtime::Model>| {
        let mut s = Session::new(
            m,
            SessionOptions {
                n_ctx: 256,
                n_threads: 1,
                n_batch: 32,
            },
        )
        .expect("session");
        s.complete("The capital of France is", greedy(12))
            .expect("gen")
            .text()
            .expect("text")
    };
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let m = model.clone();
            std::thread::spawn(move || run(m))
        })
        .collect();
    let outs: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], run(model));
}
