//! Continuous batching on the real SmolLM2 model: requests that decode together, join while
//! others run and leave early get token for token the reply a `Session` gives each alone,
//! greedy and seeded sampling alike; a shared system prompt is computed once; cancelling and
//! stop strings end a request without disturbing the others.

use crate::common;

use std::collections::HashMap;

use edge_runtime::{
    BatchDecoder, BatchEvent, BatchOptions, CancelToken, FinishReason, GenerateOptions, Message,
    SamplerConfig, Session, SessionOptions,
};

const SYSTEM: &str = "You are a warm, patient listener. Answer briefly and kindly.";

const PROMPTS: &[&str] = &[
    "I feel lonely today. Can you talk with me?",
    "我最近压力很大，晚上总是睡不着。",
    "Write a short poem about the sea.",
    "What is 12 times 7?",
    "Give me three tips to calm down before an exam.",
];

fn prompt(i: usize) -> Vec<u32> {
    let m = common::smollm2();
    let text = m
        .apply_chat_template(&[Message::system(SYSTEM), Message::user(PROMPTS[i])], true)
        .expect("template");
    m.tokenize(&text, false).expect("tokenize")
}

fn options(i: usize, max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        // Odd requests sample (seeded), even ones are greedy.
        sampler: if i.is_multiple_of(2) {
            SamplerConfig::greedy()
        } else {
            SamplerConfig {
                seed: 7 + i as u64,
                ..SamplerConfig::default()
            }
        },
        ..GenerateOptions::default()
    }
}

/// The reply a fresh session gives: tokens, text, finish reason.
fn alone(p: &[u32], opts: GenerateOptions) -> (Vec<u32>, String, FinishReason) {
    let mut s = Session::new(
        common::smollm2(),
        SessionOptions {
            n_ctx: 512,
            n_threads: 2,
            n_batch: 64,
        },
    )
    .expect("session");
    let mut gen = s.generate(p, opts).expect("generate");
    let mut text = String::new();
    for piece in gen.by_ref() {
        text.push_str(&piece.expect("piece").text);
    }
    (
        gen.tokens().to_vec(),
        text,
        gen.finish_reason().expect("finished"),
    )
}

fn decoder(n_slots: usize, n_batch: usize) -> BatchDecoder {
    BatchDecoder::new(
        common::smollm2(),
        BatchOptions {
            n_slots,
            n_ctx: 512,
            n_threads: 2,
            n_batch,
        },
    )
    .expect("batch")
}

#[derive(Default, Debug)]
struct Outcome {
    text: String,
    tokens: Vec<u32>,
    reason: Option<FinishReason>,
    reused: usize,
}

/// Drive `b` until every request is done; `submit_at[k]` is the step at which request k joins
/// (when a slot is free).
fn run(
    b: &mut BatchDecoder,
    requests: &[(Vec<u32>, GenerateOptions)],
    submit_at: &[usize],
) -> Vec<Outcome> {
    let mut ids = HashMap::new();
    let mut out: Vec<Outcome> = (0..requests.len()).map(|_| Outcome::default()).collect();
    let mut events = Vec::new();
    let mut next = 0;
    let mut step = 0;
    let mut sampled = 0;
    while out.iter().any(|o| o.reason.is_none()) {
        while next < requests.len() && submit_at[next] <= step && b.has_free_slot() {
            let (p, o) = &requests[next];
            ids.insert(b.submit(p, o.clone()).expect("submit"), next);
            next += 1;
        }
        events.clear();
        sampled += b.step(&mut events);
        for e in events.drain(..) {
            match e {
                BatchEvent::Text { id, text } => out[ids[&id]].text.push_str(&text),
                BatchEvent::Done {
                    id,
                    reason,
                    tokens,
                    stats,
                } => {
                    let o = &mut out[ids[&id]];
                    o.reason = Some(reason);
                    o.tokens = tokens;
                    o.reused = stats.reused_tokens;
                }
            }
        }
        step += 1;
        assert!(step < 10_000, "the batch never finished");
    }
    // Every sample is a reply token or the end token that stopped a request.
    let ends = out
        .iter()
        .filter(|o| o.reason == Some(FinishReason::StopToken))
        .count();
    assert_eq!(
        sampled,
        out.iter().map(|o| o.tokens.len()).sum::<usize>() + ends
    );
    out
}

#[test]
fn batched_replies_equal_each_request_alone() {
    let requests: Vec<_> = (0..PROMPTS.len())
        .map(|i| (prompt(i), options(i, 24 + 8 * i)))
        .collect();
    // Three slots for five requests: two wait, then join mid-run; a small step budget makes
    // prompt chunks share steps with running decodes.
    let mut b = decoder(3, 16);
    let got = run(&mut b, &requests, &[0, 0, 3, 5, 9]);
    for (i, ((p, o), g)) in requests.iter().zip(&got).enumerate() {
        let (tokens, text, reason) = alone(p, o.clone());
        assert_eq!(g.tokens, tokens, "request {i}: tokens");
        assert_eq!(g.text, text, "request {i}: text");
        assert_eq!(g.reason, Some(reason), "request {i}: finish reason");
        assert!(!tokens.is_empty());
    }
    // Requests after the first find the shared system prompt in some slot's cache.
    let system_len = {
        let m = common::smollm2();
        let t = m
            .apply_chat_template(&[Message::system(SYSTEM)], false)
            .expect("template");
        m.tokenize(&t, false).expect("tokenize").len()
    };
    assert_eq!(got[0].reused, 0);
    for g in &got[2..] {
        assert!(
            g.reused >= system_len - 1,
            "reused {} of a {system_len}-token system prompt",
            g.reused
        );
    }
}

#[test]
fn cancel_and_stop_strings_end_one_request_only() {
    let cancel = CancelToken::new();
    let mut long = options(0, 200);
    long.cancel = cancel.clone();
    let (p0, p1, p2) = (prompt(0), prompt(2), prompt(4));
    let reference = alone(&p1, options(2, 40)).1;
    // Stop at the first space-led word of the reference reply after its start.
    let stop = reference
        .split(' ')
        .nth(2)
        .filter(|w| !w.is_empty())
        .expect("a reply with words")
        .to_string();
    let mut stopped = options(2, 40);
    stopped.stop = vec![format!(" {stop}")];
    let mut b = decoder(3, 32);
    let ids = [
        b.submit(&p0, long).expect("submit"),
        b.submit(&p1, stopped).expect("submit"),
        b.submit(&p2, options(4, 30)).expect("submit"),
    ];
    assert!(!b.has_free_slot());
    assert!(b.submit(&p2, options(4, 30)).is_err(), "no free slot");
    let mut events = Vec::new();
    let mut done = HashMap::new();
    let mut texts: HashMap<u64, String> = HashMap::new();
    for step in 0..500 {
        if step == 12 {
            cancel.cancel();
        }
        b.step(&mut events);
        for e in events.drain(..) {
            match e {
                BatchEvent::Text { id, text } => texts.entry(id).or_default().push_str(&text),
                BatchEvent::Done {
                    id, reason, tokens, ..
                } => {
                    done.insert(id, (reason, tokens.len()));
                }
            }
        }
        if done.len() == 3 {
            break;
        }
    }
    let (reason, n) = done[&ids[0]];
    assert_eq!(reason, FinishReason::Cancelled);
    assert!(n < 20, "cancelled after {n} tokens");
    assert_eq!(done[&ids[1]].0, FinishReason::StopString);
    let cut = reference
        .find(&format!(" {stop}"))
        .expect("stop in reference");
    assert_eq!(texts[&ids[1]], reference[..cut]);
    // The third request is untouched by the others ending.
    assert_eq!(texts[&ids[2]], alone(&p2, options(4, 30)).1);
    assert_eq!(b.active(), 0);
}
