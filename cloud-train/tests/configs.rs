//! Every committed config parses and passes validation (so that none rots when a key changes).

use cloud_train::train::RunConfig;
use std::path::PathBuf;

use cloud_train::align::AlignConfig;
use cloud_train::budget;
use cloud_train::cpt::CptConfig;
use llama_spec::LlamaConfig;

#[test]
fn committed_configs_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seen = 0;
    let mut tiny_lr_configs = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let p = entry.expect("entry").path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".toml") {
            continue;
        }
        if name.starts_with("cpt-") {
            let c = CptConfig::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
            assert!(c.total_steps() > 0, "{name}");
            let w = c.weights().expect("weights");
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{name}: {w:?}");
            // The paper's tiny rates (1e-9, 1e-10) get compensated updates by default.
            let tiny = c.train.lr < cloud_train::train::optim::COMPENSATE_BELOW_LR;
            assert_eq!(c.train.adamw().compensated, tiny, "{name}");
            tiny_lr_configs += usize::from(tiny);
        } else if ["sft-", "csfte-", "dpo-"]
            .iter()
            .any(|k| name.starts_with(k))
        {
            AlignConfig::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
        } else if name.starts_with("pipeline-") {
            // Paths in it are relative to the repository root, like the command's.
            std::env::set_current_dir(dir.join("..")).expect("cd");
            let c = cloud_train::pipeline::PipelineConfig::from_file(&p, &[])
                .unwrap_or_else(|e| panic!("{e:#}"));
            llm_eval::tasks::resolve(&c.eval_tasks).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            panic!("{name}: unknown kind of config (cpt-, sft-, csfte-, dpo-, pipeline-)");
        }
        seen += 1;
    }
    assert!(seen >= 8, "{seen} configs");
    assert!(
        tiny_lr_configs >= 2,
        "cpt-llama3-8b (1e-9) and -70b (1e-10)"
    );
}

/// The Slurm examples: each names a committed cpt config whose batch geometry divides over its
/// world size (nodes x tasks per node): gbs = mbs x accumulation x world.
/// Every Slurm job's global batch splits over its world, and every GPU job's config fits 80 GB
/// GPUs (79.6 GiB) at that world by the memory plan (the `--model-config` of the job's own
/// `cloud-train plan` line gives the shape). Every 8B and 70B config has a job.
#[test]
fn slurm_examples_fit_their_world_size() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut jobs = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(root.join("configs/slurm")).expect("configs/slurm") {
        let p = entry.expect("entry").path();
        let text = std::fs::read_to_string(&p).expect("sbatch");
        let name = p.display().to_string();
        let sbatch = |key: &str| -> Option<usize> {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("#SBATCH --{key}=")))
                .and_then(|v| v.trim().parse().ok())
        };
        let need = |key: &str| sbatch(key).unwrap_or_else(|| panic!("{name}: no #SBATCH --{key}"));
        let world = need("nodes") * need("ntasks-per-node");
        // The words after `.../cloud-train cpt|sft|dpo` (line continuations joined).
        let command = text.replace("\\\n", " ");
        let all: Vec<&str> = command.split_whitespace().collect();
        let at = all
            .windows(2)
            .position(|w| w[0].ends_with("cloud-train") && ["cpt", "sft", "dpo"].contains(&w[1]))
            .unwrap_or_else(|| panic!("{name}: no cloud-train cpt|sft|dpo command"));
        let stage = all[at + 1];
        let words = &all[at..];
        let arg = |words: &[&str], flag: &str| -> Vec<String> {
            words
                .windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].to_string())
                .collect()
        };
        let config_arg = arg(words, "--config")
            .first()
            .unwrap_or_else(|| panic!("{name}: no --config"))
            .clone();
        let config = root.join(&config_arg);
        let sets = arg(words, "--set");
        let (train, rows, seq) = run_shape(&config, &sets, stage);
        let (gbs, mbs) = (train.gbs, train.mbs);
        assert!(
            gbs % (mbs * world) == 0,
            "{name}: gbs {gbs} is not mbs {mbs} x accumulation x world {world}"
        );
        if sbatch("gpus-per-node").is_some() {
            let model = arg(&all, "--model-config");
            let model = model
                .first()
                .unwrap_or_else(|| panic!("{name}: no `cloud-train plan ... --model-config`"));
            let model = LlamaConfig::from_file(root.join(model)).expect("model config");
            let shape = budget::RunShape::of(&train, rows, seq);
            let b = budget::budget(
                &model,
                &shape,
                train.zero_stage,
                world,
                budget::GPU_RESERVE_BYTES,
            );
            let gib = b.total() as f64 / budget::GIB;
            assert!(
                gib <= 79.6,
                "{name}: {gib:.1} GiB per GPU does not fit 80 GB: {b:?}"
            );
        }
        jobs.insert(config_arg);
    }
    for entry in std::fs::read_dir(root.join("configs")).expect("configs") {
        let file = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if file.contains("-llama3-") && file.ends_with(".toml") {
            let config = format!("configs/{file}");
            assert!(
                jobs.contains(&config),
                "{config} has no job in configs/slurm"
            );
        }
    }
}

fn fail<T>(name: &str, e: impl std::fmt::Display) -> T {
    panic!("{name}: {e}")
}

/// A `cpt`, `sft` or `dpo` config (with `--set` overrides), validated: its `[train]` section,
/// sequences per example and tokens per sequence.
fn run_shape(
    config: &std::path::Path,
    sets: &[String],
    stage: &str,
) -> (cloud_train::train::config::TrainSection, usize, usize) {
    let name = config.display().to_string();
    if stage == "cpt" {
        let c: CptConfig =
            cloud_train::train::config::load_toml(config, sets).unwrap_or_else(|e| fail(&name, e));
        c.validate().unwrap_or_else(|e| fail(&name, e));
        (c.train, 1, c.data.seq_len)
    } else {
        let c: AlignConfig =
            cloud_train::train::config::load_toml(config, sets).unwrap_or_else(|e| fail(&name, e));
        c.validate().unwrap_or_else(|e| fail(&name, e));
        (c.train, if stage == "dpo" { 2 } else { 1 }, c.data.max_len)
    }
}

/// Every config that names its `cloud-train plan` line (the 8B and 70B ones) fits 80 GB GPUs
/// (79.6 GiB) at that line's world size with the ZeRO stage it sets, and splits its global
/// batch over that world.
#[test]
fn large_configs_fit_the_world_their_plan_line_names() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("configs")).expect("configs") {
        let p = entry.expect("entry").path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("config");
        let Some(line) = text
            .lines()
            .find(|l| l.contains("cloud-train plan --config"))
        else {
            continue;
        };
        let name = p.display().to_string();
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = |flag: &str| -> &str {
            words
                .windows(2)
                .find(|w| w[0] == flag)
                .map(|w| w[1])
                .unwrap_or_else(|| panic!("{name}: plan line without {flag}"))
        };
        assert!(
            root.join(arg("--config")) == p,
            "{name}: its plan line plans another config"
        );
        let gpus: usize = arg("--gpus").parse().expect("--gpus");
        let model = LlamaConfig::from_file(root.join(arg("--model-config"))).expect("model");
        let table: toml::Table = toml::from_str(&text).expect("toml");
        let stage = if table["data"].get("corpus").is_some() {
            "cpt"
        } else if table.contains_key("dpo") {
            "dpo"
        } else {
            "sft"
        };
        let (train, rows, seq) = run_shape(&p, &[], stage);
        let shape = budget::RunShape::of(&train, rows, seq);
        assert!(
            budget::world_divides(&shape, gpus),
            "{name}: gbs over {gpus}"
        );
        let b = budget::budget(
            &model,
            &shape,
            train.zero_stage,
            gpus,
            budget::GPU_RESERVE_BYTES,
        );
        let gib = b.total() as f64 / budget::GIB;
        assert!(gib <= 79.6, "{name}: {gib:.1} GiB per GPU at {gpus}: {b:?}");
        seen += 1;
    }
    // CPT, SFT, C-SFT-E and DPO for 8B and 70B.
    assert!(seen >= 8, "{seen} configs with a plan line");
}

/// The emotional-support data (configs/data/README.md): every line trains, both languages and
/// several turn counts are there, no situation twice, and the pairs' rejected replies are of
/// several kinds. Counts as the README states them.
#[test]
fn emotional_support_data_is_varied_and_well_formed() {
    use cloud_train::align::data::{parse_preference, parse_sft};
    use serde_json::Value;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let read = |f: &str| -> Vec<Value> {
        std::fs::read_to_string(root.join("configs/data").join(f))
            .expect("data")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    };
    let dialogues = read("emotional-support.jsonl");
    let mut langs = std::collections::BTreeMap::new();
    let mut turns = std::collections::BTreeMap::new();
    let mut topics = std::collections::BTreeSet::new();
    for d in &dialogues {
        let msgs = parse_sft(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        let lang = d["lang"].as_str().expect("lang");
        let cjk = msgs.iter().any(|m| {
            m.content
                .chars()
                .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
        });
        assert_eq!(cjk, lang == "zh", "{d}");
        *langs.entry(lang).or_insert(0) += 1;
        *turns
            .entry(msgs.iter().filter(|m| m.role == "user").count())
            .or_insert(0) += 1;
        assert!(
            topics.insert((lang, d["topic"].as_str().expect("topic"))),
            "{d}"
        );
    }
    assert_eq!(dialogues.len(), 204);
    assert_eq!(langs, [("en", 101), ("zh", 103)].into_iter().collect());
    assert_eq!(turns, [(1, 89), (2, 99), (3, 16)].into_iter().collect());
    let pairs = read("emotional-pairs.jsonl");
    let mut kinds = std::collections::BTreeSet::new();
    for p in &pairs {
        let (_, chosen, rejected) = parse_preference(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_ne!(chosen, rejected);
        kinds.insert(p["rejected_kind"].as_str().expect("kind").to_string());
    }
    assert_eq!(pairs.len(), 204);
    assert_eq!(kinds.len(), 9, "{kinds:?}");
}
