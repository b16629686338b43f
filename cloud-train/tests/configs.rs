//! Every committed config parses and passes validation (so that none rots when a key changes).

use std::path::PathBuf;

use cloud_train::align::AlignConfig;
use cloud_train::cpt::CptConfig;

#[test]
fn committed_configs_are_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seen = 0;
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
        } else if name.starts_with("sft-") || name.starts_with("dpo-") {
            AlignConfig::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
        } else if name.starts_with("pipeline-") {
            // Paths in it are relative to the repository root, like the command's.
            std::env::set_current_dir(dir.join("..")).expect("cd");
            let c = cloud_train::pipeline::PipelineConfig::from_file(&p, &[])
                .unwrap_or_else(|e| panic!("{e:#}"));
            llm_eval::tasks::resolve(&c.eval_tasks).unwrap_or_else(|e| panic!("{name}: {e}"));
        } else {
            panic!("{name}: unknown kind of config (cpt-, sft-, dpo-, pipeline-)");
        }
        seen += 1;
    }
    assert!(seen >= 8, "{seen} configs");
}
