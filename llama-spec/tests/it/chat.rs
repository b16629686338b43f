//! Chat templates render exactly what HF `apply_chat_template` renders
//! (tests/fixtures/chat/cases.json, made by make_chat_fixtures.py).

use crate::common;

use llama_spec::chat::{ChatTemplate, Message, CHATML_TEMPLATE, LLAMA3_TEMPLATE};
use llama_spec::gguf::GgufFile;
use llama_spec::tokenizer;

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(common::fixture("chat/cases.json")).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn conversations(f: &serde_json::Value) -> Vec<Vec<Message>> {
    serde_json::from_value(f["conversations"].clone()).expect("conversations")
}

fn template(f: &serde_json::Value, name: &str) -> ChatTemplate {
    let t = &f["templates"][name];
    ChatTemplate::new(
        t["source"].as_str().expect("source"),
        t["bos_token"].as_str().expect("bos"),
        t["eos_token"].as_str().expect("eos"),
        name,
    )
    .expect("compile")
}

#[test]
fn renders_like_hf_apply_chat_template() {
    let f = fixture();
    let convs = conversations(&f);
    let cases = f["cases"].as_array().expect("cases");
    assert!(cases.len() >= 60);
    let mut failures = Vec::new();
    for c in cases {
        let name = c["template"].as_str().expect("template");
        let tpl = template(&f, name);
        let conv = &convs[c["conversation"].as_u64().expect("idx") as usize];
        let gen = c["add_generation_prompt"].as_bool().expect("gen");
        let got = tpl.render(conv, gen);
        match (&got, c.get("expected").and_then(|e| e.as_str())) {
            (Ok(text), Some(want)) if text == want => {}
            (Err(_), None) => {} // HF raised; so must we
            _ => failures.push(format!(
                "{name} conv {} gen {gen}: got {got:?}, want {c}",
                c["conversation"]
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn raise_exception_surfaces_the_message() {
    let f = fixture();
    let tpl = template(&f, "llama31_like");
    let err = tpl
        .render(&[Message::user("a"), Message::user("b")], true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("roles must alternate") && err.contains("llama31_like"),
        "{err}"
    );
}

#[test]
fn builtin_templates_are_the_tested_ones() {
    let f = fixture();
    assert_eq!(
        f["templates"]["llama3"]["source"].as_str(),
        Some(LLAMA3_TEMPLATE)
    );
    assert_eq!(
        f["templates"]["chatml"]["source"].as_str(),
        Some(CHATML_TEMPLATE)
    );
}

#[test]
fn smollm2_template_comes_from_the_gguf() {
    let f = fixture();
    let file = GgufFile::open(common::smollm2()).expect("open");
    let tpl = ChatTemplate::from_gguf(&file)
        .expect("template")
        .expect("present");
    assert_eq!(
        Some(tpl.source()),
        f["templates"]["smollm2_gguf"]["source"].as_str()
    );
    assert_eq!(
        (tpl.bos_token.as_str(), tpl.eos_token.as_str()),
        ("<|im_start|>", "<|im_end|>")
    );
    let text = tpl.render(&[Message::user("Hi")], true).expect("render");
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    // Rendered control tokens tokenize to single special ids.
    let (tok, _) = tokenizer::from_gguf(&file).expect("tokenizer");
    let ids = tok.encode(text.as_str(), false).expect("encode");
    assert_eq!(
        ids.get_ids().iter().filter(|&&i| i == 1).count(),
        3,
        "<|im_start|> x3"
    );
    assert_eq!(
        ids.get_ids().iter().filter(|&&i| i == 2).count(),
        2,
        "<|im_end|> x2"
    );
}

#[test]
fn llama3_prompt_tokenizes_with_special_ids() {
    let tpl = ChatTemplate::new(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>", "llama3")
        .expect("compile");
    let text = tpl
        .render(&[Message::system("Be kind."), Message::user("你好")], true)
        .expect("render");
    let tok = tokenizer::from_tokenizer_json(common::llama3_tokenizer()).expect("tokenizer");
    let ids = tok.encode(text.as_str(), false).expect("encode");
    let ids = ids.get_ids();
    assert_eq!(ids[0], 128_000);
    assert_eq!(
        ids.iter().filter(|&&i| i == 128_009).count(),
        2,
        "<|eot_id|> x2"
    );
    assert_eq!(
        ids.iter().filter(|&&i| i == 128_006).count(),
        3,
        "<|start_header_id|> x3"
    );
}

#[test]
fn broken_template_is_a_clear_error() {
    let err = ChatTemplate::new(
        "{% for m in messages %}",
        "",
        "",
        "bad.gguf (tokenizer.chat_template)",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bad.gguf") && err.contains("does not compile"),
        "{err}"
    );
}
