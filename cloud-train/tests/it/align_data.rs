//! Chat data to tokens and trained-token masks, against transformers'
//! `apply_chat_template(..., return_assistant_tokens_mask=True)` with the Llama-3 template in
//! `{% generation %}` form (fixture: tests/fixtures/make_align_fixtures.py).

use std::path::PathBuf;

use cloud_train::align::data::{encode, Turns};
use llama_spec::chat::{ChatTemplate, Message, LLAMA3_TEMPLATE};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn assistant_masks_match_transformers() {
    let tok =
        llama_spec::tokenizer::from_tokenizer_json(root().join("assets/llama3-tokenizer.json"))
            .expect("tokenizer (scripts/fetch-assets.sh)");
    let tmpl = ChatTemplate::new(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>", "llama3")
        .expect("template");
    let text = std::fs::read_to_string(root().join("tests/fixtures/train/align/masks.json"))
        .expect("masks.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
    assert!(cases.len() >= 3);
    for case in cases {
        let msgs: Vec<Message> =
            serde_json::from_value(case["messages"].clone()).expect("messages");
        let want_ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        let want_mask: Vec<bool> = case["mask"]
            .as_array()
            .expect("mask")
            .iter()
            .map(|v| v == 1)
            .collect();
        let got = encode(&tok, &tmpl, &msgs, Turns::All).expect("encode");
        assert_eq!(got.ids, want_ids, "{msgs:?}");
        assert_eq!(got.mask, want_mask, "{msgs:?}");
        // Turns::Last trains only the final reply: a suffix of the full mask.
        let last = encode(&tok, &tmpl, &msgs, Turns::Last).expect("encode");
        let first_last = last.mask.iter().position(|&m| m).expect("trained tokens");
        assert!(last.mask[first_last..].iter().all(|&m| m));
        assert!(last.trained() <= got.trained());
        assert_eq!(last.mask[first_last..], got.mask[first_last..]);
    }
}
