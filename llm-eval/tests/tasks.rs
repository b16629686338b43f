//! Every task reads the shipped samples; a real GGUF model (SmolLM2-135M-Instruct through
//! edge-runtime) runs every task end to end; HumanEval's real 164 problems pass with their
//! canonical solutions and fail with a broken one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use llm_eval::tasks::{self, humaneval, Items};
use llm_eval::{EdgeModel, LanguageModel, RunOptions};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data() -> PathBuf {
    root().join("configs/eval-data")
}

fn smollm2() -> PathBuf {
    let p = root().join("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.is_file(),
        "{} missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

#[test]
fn every_task_loads_its_samples() {
    let want = [
        ("ceval", 7),
        ("mmlu", 4),
        ("agieval", 5),
        ("bbh", 8),
        ("cluewsc", 4),
        ("eprstmt", 6),
        ("cmrc", 3),
        ("drcd", 2),
        ("lcsts", 3),
        ("wmt22-zh-en", 4),
        ("wmt22-en-zh", 4),
        ("gsm8k", 3),
        ("triviaqa", 4),
        ("cloze", 48),
        ("emotion", 140),
        ("emotion-gen", 140),
        ("zh-fraction", 200),
    ];
    for (t, n) in want {
        let items = tasks::load(t, &data()).unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(items.len(), n, "{t}");
    }
    // The few-shot layout: C-Eval's description, 5 answered shots, then the question.
    let Items::Choice(c) = tasks::load("ceval", &data()).expect("ceval") else {
        panic!("ceval is multiple choice")
    };
    let ctx = &c[0].context;
    assert!(
        ctx.starts_with("以下是中国关于计算机网络的单项选择题，请选出其中的正确答案。\n\n"),
        "{ctx}"
    );
    assert_eq!(ctx.matches("\n答案：").count(), 6, "{ctx}");
    assert!(ctx.ends_with("D. TDMA\n答案："), "{ctx}");
    assert_eq!(c[0].choices, vec![" A", " B", " C", " D"]);
}

#[test]
fn bad_data_names_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(dir.path().join("eprstmt")).expect("mkdir");
    let f = dir.path().join("eprstmt/dev_few_all.json");
    std::fs::write(
        &f,
        "{\"sentence\": \"好\", \"label\": \"Positive\"}\n{not json}\n",
    )
    .expect("write");
    let e = tasks::load("eprstmt", dir.path())
        .expect_err("malformed")
        .to_string();
    assert!(
        e.contains("dev_few_all.json") && e.contains("line 2"),
        "{e}"
    );
    let e = tasks::load("mmlu", dir.path())
        .expect_err("missing")
        .to_string();
    assert!(e.contains("mmlu"), "{e}");
    assert_eq!(
        tasks::resolve(&["eq4".into()]).expect("eq4"),
        [
            "ceval",
            "mmlu",
            "agieval",
            "bbh",
            "gsm8k",
            "humaneval",
            "triviaqa"
        ]
    );
    let e = tasks::resolve(&["mmmlu".into()])
        .expect_err("unknown")
        .to_string();
    assert!(e.contains("mmmlu") && e.contains("ceval"), "{e}");
}

/// The first `n` HumanEval problems: canonical solutions pass, a raising body fails, an
/// endless loop is stopped by the timeout.
fn check_humaneval(test: &str, n: usize) {
    if !test_support::have_tool("python3") {
        return test_support::skip(
            test,
            "python3 (which runs HumanEval's tests) is not installed",
        );
    }
    let path = humaneval::data_file(&root().join("assets"))
        .unwrap_or_else(|_| root().join("assets/HumanEval.jsonl.gz"));
    let problems =
        humaneval::problems(&path).expect("HumanEval.jsonl.gz (scripts/fetch-assets.sh)");
    assert_eq!(problems.len(), 164);
    let items = humaneval::load(&root().join("assets")).or_else(|_| {
        // load() looks under {dir}/humaneval first, then assets/ relative to the working dir.
        std::env::set_current_dir(root()).expect("cd");
        humaneval::load(Path::new("missing"))
    });
    let items = items.expect("humaneval items");
    let (items, problems) = (&items[..n], &problems[..n]);
    let canonical: Vec<String> = problems
        .iter()
        .map(|p| p.canonical_solution.clone())
        .collect();
    let t = Duration::from_secs(20);
    let ok = humaneval::execute_all(items, &canonical, "python3", t, 2).expect("run");
    let failed: Vec<&str> = ok
        .iter()
        .zip(problems)
        .filter(|(o, _)| **o != humaneval::Outcome::Passed)
        .map(|(_, p)| p.task_id.as_str())
        .collect();
    assert!(failed.is_empty(), "canonical solutions failed: {failed:?}");
    let broken = vec!["    raise NotImplementedError\n".to_string(); items.len()];
    let bad = humaneval::execute_all(items, &broken, "python3", t, 2).expect("run");
    assert!(bad.iter().all(|o| *o == humaneval::Outcome::Failed));
    // A completion that never ends is stopped by the timeout.
    let hang = vec!["    while True:\n        pass\n".to_string()];
    let o = humaneval::execute_all(&items[..1], &hang, "python3", Duration::from_millis(500), 1)
        .expect("run");
    assert_eq!(o, vec![humaneval::Outcome::TimedOut]);
}

#[test]
fn humaneval_first_problems_pass_canonical_and_fail_broken() {
    check_humaneval(
        "eval::humaneval_first_problems_pass_canonical_and_fail_broken",
        24,
    );
}

#[test]
#[ignore = "full tier (scripts/test.sh --full): 328 Python runs"]
fn humaneval_all_164_pass_canonical_and_fail_broken() {
    check_humaneval(
        "eval::humaneval_all_164_pass_canonical_and_fail_broken",
        164,
    );
}

#[test]
fn smollm2_gguf_runs_every_task() {
    let mut m = EdgeModel::load(&smollm2(), 2048, 2).expect("load");
    // HumanEval runs in its own tests; the judged tasks in `judged_tasks_run_over_gguf_and_http_models`.
    let names: Vec<String> = tasks::TASKS
        .iter()
        .filter(|t| !["humaneval", "turing", "belle"].contains(t))
        .map(|s| s.to_string())
        .collect();
    let opts = RunOptions {
        limit: Some(3),
        progress: false,
        log_samples: true,
        ..RunOptions::default()
    };
    let report = llm_eval::evaluate(&mut m, &names, &data(), &opts).expect("evaluate");
    for t in &names {
        let r = &report.tasks[t];
        assert!(r.n > 0, "{t}");
        for (k, v) in &r.metrics {
            assert!(v.is_finite() && *v >= 0.0, "{t} {k} = {v}");
        }
        if let Some(p) = &r.primary {
            assert!(
                report.scores.contains_key(t),
                "{t} has primary {p} but no score"
            );
        }
    }
    assert_eq!(
        report.scores.len(),
        names.len() - 1,
        "all but zh-fraction are averaged"
    );
    let avg = report.average.expect("average");
    let mean = report.scores.values().sum::<f64>() / report.scores.len() as f64;
    assert!((avg - mean).abs() < 1e-9);
    // SmolLM2 is an English model: asked in Chinese it still answers mostly in English.
    let zh = report.zh_fraction.expect("zh fraction");
    assert!((0.0..=100.0).contains(&zh));
    // Three replies (zh, en, zh prompts): the interval brackets the share, per language too.
    let z = &report.tasks["zh-fraction"].metrics;
    assert_eq!(z["replies"], 3.0);
    assert!(
        z["zh_fraction_ci95_low"] <= zh && zh <= z["zh_fraction_ci95_high"],
        "{z:?}"
    );
    assert!(
        z.contains_key("zh_fraction/zh") && z.contains_key("zh_fraction/en"),
        "{z:?}"
    );
    // It knows some answers (greedy, the same every run).
    let tqa = &report.tasks["triviaqa"].samples;
    assert!(
        tqa.iter()
            .any(|s| s["output"].as_str().unwrap_or("").contains("Jupiter")),
        "{tqa:?}"
    );
    let table = llm_eval::markdown(std::slice::from_ref(&report));
    assert!(
        table.contains("| ceval (acc) |") && table.contains("SmolLM2"),
        "{table}"
    );
    // The generated JSON is what `sweep collect` reads.
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("eval.json");
    report.write(&f).expect("write");
    let back = llm_eval::Report::read(&f).expect("read");
    assert_eq!(back.scores, report.scores);
    eprintln!("{table}");
    let _ = m.name();
}

/// WMT22 with k shots: the prompt written out by hand for the shipped samples (no dev file:
/// the first k test segments are the shots and are not scored), shots from a dev file when
/// there is one, and too many shots refused.
#[test]
fn wmt22_few_shot_prompts_are_built_as_documented() {
    let p = tasks::Prompting {
        shots: Some(2),
        chat: false,
        ..Default::default()
    };
    let Items::Gen(zh_en) = tasks::load_with("wmt22-zh-en", &data(), &p).expect("zh-en") else {
        panic!("generation task")
    };
    assert_eq!(zh_en.len(), 2, "4 segments, 2 used as shots");
    assert_eq!(
        zh_en[0].prompt,
        "Translate the following Chinese text to English.\n\
         Chinese: 我今天感到很孤独。\nEnglish: I feel very lonely today.\n\n\
         Chinese: 他每天早上六点起床跑步。\nEnglish: He gets up at six every morning to go running.\n\n\
         Chinese: 这家餐厅的饭菜很好吃，价格也不贵。\nEnglish:"
    );
    assert_eq!(
        zh_en[0].refs,
        ["The food in this restaurant is delicious, and the prices are not high."]
    );
    let Items::Gen(en_zh) = tasks::load_with("wmt22-en-zh", &data(), &p).expect("en-zh") else {
        panic!("generation task")
    };
    assert!(
        en_zh[0].prompt.starts_with(
            "将下面的英文翻译成中文。\n英文：Thank you for listening to me.\n中文：谢谢你听我说话。\n\n"
        ) && en_zh[0].prompt.ends_with("\n中文："),
        "{}",
        en_zh[0].prompt
    );
    // Zero shots: the plain prompt, every segment scored.
    let Items::Gen(zero) = tasks::load("wmt22-zh-en", &data()).expect("0-shot") else {
        panic!("generation task")
    };
    assert_eq!(zero.len(), 4);
    assert_eq!(
        zero[0].prompt,
        "Translate the following Chinese text to English.\nChinese: 我今天感到很孤独。\nEnglish:"
    );

    // A dev file gives the shots; every test segment is scored.
    let tmp = tempfile::tempdir().expect("tmp");
    let w = tmp.path().join("wmt22");
    std::fs::create_dir_all(&w).expect("mkdir");
    std::fs::write(w.join("zh-en.src"), "一\n二\n").expect("src");
    std::fs::write(w.join("zh-en.ref"), "one\ntwo\n").expect("ref");
    std::fs::write(w.join("zh-en.dev.src"), "三\n").expect("dev src");
    std::fs::write(w.join("zh-en.dev.ref"), "three\n").expect("dev ref");
    let one = tasks::Prompting {
        shots: Some(1),
        chat: false,
        ..Default::default()
    };
    let Items::Gen(v) = tasks::load_with("wmt22-zh-en", tmp.path(), &one).expect("dev") else {
        panic!("generation task")
    };
    assert_eq!(v.len(), 2);
    assert!(
        v[1].prompt
            .contains("Chinese: 三\nEnglish: three\n\nChinese: 二\nEnglish:"),
        "{}",
        v[1].prompt
    );
    let e = tasks::load_with("wmt22-zh-en", tmp.path(), &p)
        .expect_err("2 shots from a 1-line dev file")
        .to_string();
    assert!(e.contains("2 shots"), "{e}");
}

/// Chat mode renders every generation prompt through the model's own template (SmolLM2's
/// ChatML), leaves multiple-choice tasks alone, and is recorded in the report.
#[test]
fn chat_mode_renders_generation_prompts_with_the_template() {
    let mut m = EdgeModel::load(&smollm2(), 2048, 2).expect("load");
    let chat = tasks::Prompting {
        shots: Some(1),
        chat: true,
        ..Default::default()
    };
    let Items::Gen(v) = tasks::load_with("wmt22-en-zh", &data(), &chat).expect("load") else {
        panic!("generation task")
    };
    assert!(v.iter().all(|it| it.chat));
    // Special tokens decode to no bytes: what is left is the template's text around ours,
    // including the default system prompt SmolLM2's template adds.
    let decode = |ids: Vec<u32>| -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&t| m.token_bytes(t)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let text = decode(llm_eval::runner::gen_prompt(&m, &v[0]).expect("prompt"));
    assert!(
        text.starts_with("system\nYou are a helpful AI assistant named SmolLM")
            && text.contains(&format!("user\n{}\nassistant\n", v[0].prompt)),
        "{text}"
    );
    let mut plain = v[0].clone();
    plain.chat = false;
    assert_eq!(
        decode(llm_eval::runner::gen_prompt(&m, &plain).expect("plain")),
        v[0].prompt
    );
    let Items::Choice(_) = tasks::load_with("eprstmt", &data(), &chat).expect("choice") else {
        panic!("eprstmt stays multiple choice")
    };
    let opts = RunOptions {
        limit: Some(1),
        progress: false,
        prompting: chat.clone(),
        ..RunOptions::default()
    };
    let names = ["wmt22-en-zh".to_string(), "eprstmt".to_string()];
    let report = llm_eval::evaluate(&mut m, &names, &data(), &opts).expect("evaluate");
    let (w, e) = (&report.tasks["wmt22-en-zh"], &report.tasks["eprstmt"]);
    assert!(w.chat && w.shots == Some(1) && w.metrics["bleu"].is_finite());
    assert!(!e.chat && e.shots.is_none());
}

/// Emotion classification: prompts written out by hand for the shipped samples, and the
/// generation scoring (first label named, format errors counted as wrong) by hand.
#[test]
fn emotion_prompts_and_scores_are_as_documented() {
    let Items::Choice(c) = tasks::load("emotion", &data()).expect("emotion") else {
        panic!("choice task")
    };
    assert_eq!(
        c[0].context,
        "Text: They cancelled my flight without telling me and now refuse to refund it. \
         Unbelievable.\nThe emotion expressed in this text is:"
    );
    assert_eq!(c[0].choices[0], " anger");
    assert_eq!((c[0].choices.len(), c[0].gold), (7, 0));
    assert_eq!(
        c[1].context,
        "文本：他又一次当着所有人的面抢了我的功劳，我真的忍不下去了。\n这段文本表达的情绪是："
    );
    assert_eq!(c[1].choices[4], "悲伤");
    // 140 items as configs/eval-data/README.md says: in every block of 14, each of the 7
    // labels in order, an English text then a Chinese one (so a limit that is a multiple of 14
    // keeps the classes and languages balanced).
    assert_eq!(c.len(), 140);
    for (i, item) in c.iter().enumerate() {
        assert_eq!(item.gold, (i % 14) / 2, "item {i}: {}", item.context);
        let zh = item.context.starts_with("文本：");
        assert_eq!(zh, i % 2 == 1, "item {i}: {}", item.context);
    }
    let Items::Gen(g) = tasks::load("emotion-gen", &data()).expect("emotion-gen") else {
        panic!("generation task")
    };
    assert_eq!(
        g[13].prompt,
        "文本：明天上午九点，图书馆三楼有一场讲座。\n从以下情绪中选择一个：愤怒、厌恶、恐惧、喜悦、悲伤、惊讶、中性\n情绪："
    );
    assert!(g[0].prompt.ends_with(
        "Choose one emotion from: anger, disgust, fear, joy, sadness, surprise, neutral\nEmotion:"
    ));
    // Items 0, 1 (anger), 2 (disgust): right, a format error, wrong (says fear).
    let outputs = [" Anger.", "不知道", " fear, I think"].map(String::from);
    let m = tasks::emotion::score_generation(&g[..3], &outputs);
    let get = |k: &str| m.iter().find(|(n, _)| *n == k).map(|(_, v)| *v).expect(k);
    assert!((get("acc") - 100.0 / 3.0).abs() < 1e-9);
    assert!((get("format_errors") - 100.0 / 3.0).abs() < 1e-9);
    // anger: tp 1, fn 1 -> 2/3; disgust: fn 1 -> 0; fear: fp 1 -> 0. Macro: 2/9.
    assert!((get("macro_f1") - 200.0 / 9.0).abs() < 1e-9, "{m:?}");
}

/// BBH: both file layouts read, 3-shot prompts as written out by hand, items interleaved
/// across tasks, a multiple-choice BIG-bench example laid out as BBH does, answers extracted
/// and scored per task by hand, and `--shots` honoured per task.
#[test]
fn bbh_prompts_extraction_and_scores_are_as_documented() {
    let Items::Gen(v) = tasks::load("bbh", &data()).expect("bbh") else {
        panic!("generation task")
    };
    // Four tasks (two release files, two BIG-bench files), 5 examples each: 3 shots, 2 scored;
    // the first of every task (in BBH's task order), then the second.
    let ids: Vec<&str> = v.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "bbh/boolean_expressions/3",
            "bbh/logical_deduction_three_objects/3",
            "bbh/navigate/3",
            "bbh/word_sorting/3",
            "bbh/boolean_expressions/4",
            "bbh/logical_deduction_three_objects/4",
            "bbh/navigate/4",
            "bbh/word_sorting/4",
        ]
    );
    assert_eq!(
        v[0].prompt,
        "Q: not True and False is\nA: False\n\n\
         Q: True or ( False and True ) is\nA: True\n\n\
         Q: not ( True or False ) is\nA: False\n\n\
         Q: False or not False and True is\nA:"
    );
    assert_eq!(v[0].refs, ["True"]);
    assert_eq!(v[0].stop, ["\n"]);
    // BIG-bench's task: its description first, options lettered in file order.
    let ld = &v[1];
    assert!(
        ld.prompt.starts_with(
            "A logical deduction task which requires deducing the order of a sequence of objects.\n\n\
             Q: On a shelf, there are three books: a red book, a blue book, and a green book. \
             The red book is to the left of the blue book. The green book is the rightmost.\n\
             Options:\n(A) The red book is the leftmost.\n(B) The blue book is the leftmost.\n\
             (C) The green book is the leftmost.\nA: (A)\n\nQ: In a race,"
        ),
        "{}",
        ld.prompt
    );
    assert!(
        ld.prompt.ends_with(
            "The apple is more expensive than the plum.\nOptions:\n(A) The apple is the most expensive.\n\
             (B) The plum is the most expensive.\n(C) The lime is the most expensive.\nA:"
        ),
        "{}",
        ld.prompt
    );
    assert_eq!(ld.refs, ["(A)"]);
    // Two one-word options: bulleted, answered by the word.
    assert!(
        v[2].prompt
            .ends_with("Take 1 step left. Take 2 steps right.\nOptions:\n- True\n- False\nA:"),
        "{}",
        v[2].prompt
    );
    assert_eq!(v[2].refs, ["False"]);
    assert_eq!(v[3].refs, ["brook lake ocean river"]);

    // Scoring by hand: boolean 1/2, logical deduction 2/2 (a letter, then a bare letter),
    // navigate 0/2, word sorting 1/2 (case and a final period ignored) -> mean 50.
    let outputs: Vec<String> = [
        "True",
        "(A) The apple",
        "True",
        "Brook lake ocean river.",
        "True",
        "C",
        "Yes",
        "river ocean",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let m = llm_eval::tasks::generation::score("bbh", &v, &outputs);
    assert_eq!(m["acc/boolean_expressions"], 50.0);
    assert_eq!(m["acc/logical_deduction_three_objects"], 100.0);
    assert_eq!(m["acc/navigate"], 0.0);
    assert_eq!(m["acc/word_sorting"], 50.0);
    assert_eq!(m["acc"], 50.0);
    assert_eq!(m["tasks"], 4.0);

    // Shots per task: BBH 1-shot, WMT22 untouched (its default 0); too many shots refused.
    let p = tasks::Prompting {
        shots_by_task: [("bbh".to_string(), 1)].into(),
        ..Default::default()
    };
    assert_eq!((p.shots_for("bbh"), p.shots_for("wmt22-zh-en")), (1, 0));
    let Items::Gen(one) = tasks::load_with("bbh", &data(), &p).expect("1-shot") else {
        panic!("generation task")
    };
    assert_eq!(one.len(), 16);
    assert_eq!(one[0].prompt.matches("Q: ").count(), 2);
    let five = tasks::Prompting {
        shots: Some(5),
        ..Default::default()
    };
    let e = tasks::load_with("bbh", &data(), &five)
        .expect_err("5 shots of 5 examples")
        .to_string();
    assert!(
        e.contains("boolean_expressions.json") && e.contains("5 shots"),
        "{e}"
    );
}

/// The Chinese-token fraction at scale: all 200 shipped prompts (100 Chinese, 100 English) on
/// SmolLM2, with the interval over replies. Replies to Chinese prompts carry more Chinese than
/// replies to English ones, and the interval is narrower than with a handful of replies.
#[test]
#[ignore = "full tier: 200 generations of up to 96 tokens (~2 min)"]
fn zh_fraction_over_all_200_prompts() {
    let mut m = EdgeModel::load(&smollm2(), 2048, 2).expect("load");
    let opts = RunOptions {
        progress: false,
        ..RunOptions::default()
    };
    let r = llm_eval::runner::run_task(&mut m, "zh-fraction", &data(), &opts).expect("run");
    let z = &r.metrics;
    eprintln!("zh-fraction over 200 prompts: {z:?}");
    assert_eq!(z["replies"], 200.0);
    assert!(z["zh_fraction/zh"] > z["zh_fraction/en"], "{z:?}");
    let width = z["zh_fraction_ci95_high"] - z["zh_fraction_ci95_low"];
    assert!(width > 0.0 && width < 20.0, "{z:?}");
}

/// A tiny OpenAI-compatible server for the judge's side: `/v1/models` and
/// `/v1/chat/completions`, answering a verdict request "No.", a grading request "Score: 0.5"
/// and anything else "Sure." Every request body is kept.
struct CannedServer {
    addr: std::net::SocketAddr,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

fn canned_server() -> CannedServer {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut r = BufReader::new(stream.try_clone().expect("clone"));
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let reply = if first.starts_with("GET /v1/models") {
                serde_json::json!({"object": "list", "data": [{"id": "canned-judge", "object": "model"}]})
            } else {
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let prompt = req["messages"].to_string();
                let text = if prompt.contains("Was any line") || prompt.contains("是否有任何一句")
                {
                    "No."
                } else if prompt.contains("strict grader") || prompt.contains("严格的评分员")
                {
                    "Score: 0.5"
                } else {
                    "Sure."
                };
                kept.lock().expect("lock").push(req);
                serde_json::json!({"object": "chat.completion", "model": "canned-judge",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}]})
            };
            let out = reply.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                out.len()
            );
        }
    });
    CannedServer { addr, bodies }
}

/// The judged tasks with a GGUF model and an HTTP judge (a canned server, so every metric is
/// known): the Turing test asks the judge about the model's dialogue and the real one, blind;
/// BelleEval grades each answer against its reference. Then the model side over HTTP (edge-serve,
/// a real OpenAI-compatible server, on SmolLM2), judged in-process by the GGUF model; and a
/// token-level task over HTTP fails with an error that says why.
#[test]
fn judged_tasks_run_over_gguf_and_http_models() {
    let canned = canned_server();
    let mut judge = llm_eval::OpenAiModel::connect(&format!("http://{}", canned.addr), None, None)
        .expect("judge");
    assert_eq!(judge.name(), "canned-judge");
    let mut m = EdgeModel::load(&smollm2(), 2048, 2).expect("load");
    let opts = RunOptions {
        limit: Some(2),
        progress: false,
        log_samples: true,
        ..RunOptions::default()
    };
    let names = ["turing".to_string(), "belle".to_string()];
    let r = llm_eval::evaluate_judged(&mut m, Some(&mut judge), &names, &data(), &opts)
        .expect("evaluate");
    let (t, b) = (&r.tasks["turing"], &r.tasks["belle"]);
    assert_eq!((t.n, b.n), (2, 2));
    assert_eq!(t.metrics["human_rate"], 100.0, "{t:?}");
    assert_eq!(t.metrics["human_rate_real"], 100.0);
    assert_eq!(t.metrics["format_errors"], 0.0);
    assert_eq!(b.metrics["score"], 50.0, "{b:?}");
    assert_eq!(b.metrics["score/open qa"], 50.0);
    assert_eq!(b.metrics["score/math"], 50.0);
    assert_eq!(r.scores["turing"], 100.0);
    // The judge saw 2 verdicts per dialogue and 1 grading per answer; the model's dialogue
    // keeps the 2 real seed lines and adds 4 of its own, the real one is cut to 6 lines.
    let bodies = canned.bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2 * 2 + 2);
    assert_eq!(bodies[0]["temperature"], 0.0);
    let first = bodies[0]["messages"][0]["content"]
        .as_str()
        .expect("content");
    assert!(
        first
            .contains("A: Did you end up going to the farmers market this morning?\nB: I did, but")
            && first.matches("\nA: ").count() + first.matches("\nB: ").count() == 6,
        "{first}"
    );
    let real = bodies[1]["messages"][0]["content"]
        .as_str()
        .expect("content");
    assert!(
        real.contains("B: A couple are. The rest need a day on the counter."),
        "{real}"
    );
    let grading = bodies[4]["messages"][0]["content"]
        .as_str()
        .expect("content");
    assert!(
        grading.contains("问题：水在标准大气压下的沸点是多少摄氏度？")
            && grading.contains("参考答案：100 摄氏度。"),
        "{grading}"
    );
    let written = t.samples[0]["dialogue"].as_array().expect("dialogue");
    assert_eq!(written.len(), 6);

    // The model over HTTP: edge-serve serving SmolLM2, judged by the in-process GGUF.
    let model = std::sync::Arc::new(
        edge_runtime::Model::load(smollm2(), edge_runtime::LoadOptions::default()).expect("model"),
    );
    let server = edge_serve::Server::start(
        model,
        edge_serve::ServerConfig {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            n_ctx: 2048,
            n_threads: 2,
            ..Default::default()
        },
    )
    .expect("server");
    let mut served =
        llm_eval::OpenAiModel::connect(&format!("http://{}/v1", server.addr()), None, None)
            .expect("connect");
    let one = RunOptions {
        limit: Some(1),
        ..opts.clone()
    };
    let turing = ["turing".to_string()];
    let r = llm_eval::evaluate_judged(&mut served, Some(&mut m), &turing, &data(), &one)
        .expect("served model");
    let t = &r.tasks["turing"];
    assert_eq!(t.n, 1);
    let lines = t.samples[0]["dialogue"].as_array().expect("dialogue");
    assert_eq!(lines.len(), 6);
    assert!(
        lines[2..]
            .iter()
            .all(|l| !l.as_str().unwrap_or("").contains('\n')),
        "{lines:?}"
    );
    assert!((0.0..=100.0).contains(&t.metrics["human_rate"]));
    let e = llm_eval::evaluate(&mut served, &["eprstmt".to_string()], &data(), &one)
        .expect_err("log-likelihoods over HTTP")
        .to_string();
    assert!(e.contains("token-level"), "{e}");
}
