//! Speculative decoding on the real SmolLM2 model: prompt lookup and a draft model (the same
//! weights requantized to Q4_0, so that it guesses well but not always right) change the
//! time, never the reply: token for token the plain one, greedy and seeded sampling alike,
//! and the session's cache ends where plain decoding leaves it.

use crate::common;

use std::sync::Arc;

use edge_runtime::{
    Error, GenerateOptions, LoadOptions, Message, Model, SamplerConfig, Session, SessionOptions,
    Speculation,
};

fn session() -> Session {
    Session::new(
        common::smollm2(),
        SessionOptions {
            n_ctx: 1024,
            n_threads: 2,
            n_batch: 64,
        },
    )
    .expect("session")
}

const PROMPTS: &[&str] = &[
    "Summarize this in two sentences: Sleep matters for mental health. People who sleep less than six hours a night report more stress, more anxiety and lower mood. Regular sleep times and a dark bedroom help.",
    "I feel lonely today. Can you talk with me?",
    "我最近压力很大，晚上总是睡不着。",
];

/// The reply's tokens, the stats' (drafted, accepted) and the cache afterwards.
fn reply(
    s: &mut Session,
    prompt: &str,
    sampler: SamplerConfig,
    speculation: Speculation,
    stop: &[&str],
) -> (Vec<u32>, (usize, usize), Vec<u32>) {
    s.reset();
    let opts = GenerateOptions {
        max_tokens: 48,
        sampler,
        speculation,
        stop: stop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut gen = s.chat(&[Message::user(prompt)], opts).expect("chat");
    for p in gen.by_ref() {
        p.expect("piece");
    }
    let out = (
        gen.tokens().to_vec(),
        (gen.stats().drafted_tokens, gen.stats().accepted_tokens),
    );
    drop(gen);
    (out.0, out.1, s.tokens().to_vec())
}

fn q4_0_draft(dir: &tempfile::TempDir) -> Arc<Model> {
    let path = dir.path().join("draft.q4_0.gguf");
    quantize::requantize::requantize(
        &common::smollm2_path(),
        &path,
        quantize::policy::FileType::Q4_0,
        &[],
        false,
    )
    .expect("requantize the draft");
    Arc::new(Model::load(&path, LoadOptions::default()).expect("load the draft"))
}

#[test]
fn speculation_gives_the_plain_reply_token_for_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut plain = session();
    let mut lookup = session();
    let mut drafted = session();
    drafted
        .attach_draft_model(q4_0_draft(&dir))
        .expect("same vocabulary");
    let seeded = SamplerConfig {
        temperature: 0.8,
        seed: 7,
        ..SamplerConfig::default()
    };
    let (mut lookup_hits, mut draft_stats) = (0, (0, 0));
    for prompt in PROMPTS {
        for sampler in [SamplerConfig::greedy(), seeded.clone()] {
            // A stop string ends the reply in the middle of a checked run of guesses.
            for stop in [&[][..], &["."][..]] {
                let want = reply(&mut plain, prompt, sampler.clone(), Speculation::None, stop);
                assert_eq!(want.1, (0, 0));
                let got = reply(
                    &mut lookup,
                    prompt,
                    sampler.clone(),
                    Speculation::prompt_lookup(),
                    stop,
                );
                assert_eq!(
                    (&got.0, &got.2),
                    (&want.0, &want.2),
                    "prompt lookup: {prompt}"
                );
                lookup_hits += got.1 .1;
                let got = reply(
                    &mut drafted,
                    prompt,
                    sampler.clone(),
                    Speculation::draft_model(),
                    stop,
                );
                assert_eq!(
                    (&got.0, &got.2),
                    (&want.0, &want.2),
                    "draft model: {prompt}"
                );
                draft_stats = (draft_stats.0 + got.1 .0, draft_stats.1 + got.1 .1);
            }
        }
    }
    eprintln!(
        "prompt lookup: {lookup_hits} accepted; draft model: {draft_stats:?} (drafted, accepted)"
    );
    // Guesses were made and checked both ways: accepted ones and rejected ones.
    assert!(lookup_hits > 10, "prompt lookup accepted {lookup_hits}");
    assert!(
        draft_stats.1 > 20 && draft_stats.1 < draft_stats.0,
        "draft model: {} of {} accepted",
        draft_stats.1,
        draft_stats.0
    );
}

#[test]
fn draft_model_needs_one_with_the_same_vocabulary() {
    let mut s = session();
    let opts = GenerateOptions {
        speculation: Speculation::draft_model(),
        ..Default::default()
    };
    let err = s
        .chat(&[Message::user("hi")], opts)
        .err()
        .expect("no draft attached");
    assert!(
        matches!(err, Error::Invalid(ref m) if m.contains("draft model")),
        "{err}"
    );
}
