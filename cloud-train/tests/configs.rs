//! Every committed config parses and passes validation (so that none rots when a key changes).

use cloud_train::train::RunConfig;
use std::path::PathBuf;

use cloud_train::align::AlignConfig;
use cloud_train::cpt::CptConfig;

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
    assert!(
        tiny_lr_configs >= 2,
        "cpt-llama3-8b (1e-9) and -70b (1e-10)"
    );
}

/// The Slurm examples: each names a committed cpt config whose batch geometry divides over its
/// world size (nodes x tasks per node): gbs = mbs x accumulation x world.
#[test]
fn slurm_examples_fit_their_world_size() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seen = 0;
    for entry in std::fs::read_dir(root.join("configs/slurm")).expect("configs/slurm") {
        let p = entry.expect("entry").path();
        let text = std::fs::read_to_string(&p).expect("sbatch");
        let name = p.display().to_string();
        let sbatch = |key: &str| -> usize {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("#SBATCH --{key}=")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name}: no #SBATCH --{key}"))
        };
        let world = sbatch("nodes") * sbatch("ntasks-per-node");
        // The command's words after `cpt` (line continuations joined).
        let command = text.replace("\\\n", " ");
        let words: Vec<&str> = command
            .split_whitespace()
            .skip_while(|w| *w != "cpt")
            .collect();
        let arg = |flag: &str| -> Vec<String> {
            words
                .windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].to_string())
                .collect()
        };
        let config = root.join(
            arg("--config")
                .first()
                .unwrap_or_else(|| panic!("{name}: no --config")),
        );
        let cfg: CptConfig = cloud_train::train::config::load_toml(&config, &arg("--set"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        let (gbs, mbs) = (cfg.train.gbs, cfg.train.mbs);
        assert!(
            gbs % (mbs * world) == 0,
            "{name}: gbs {gbs} is not mbs {mbs} x accumulation x world {world}"
        );
        seen += 1;
    }
    assert!(seen >= 3, "{seen} sbatch files");
}
