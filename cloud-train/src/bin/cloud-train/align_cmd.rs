//! `cloud-train sft` and `cloud-train dpo`.

use anyhow::Result;
use cloud_train::align::{self, AlignConfig, Stage};
use cloud_train::cpt::Event;

use crate::cpt_cmd::{load_toml, say, started, step_bar, RunArgs};

pub fn run(a: RunArgs, stage: Stage) -> Result<()> {
    let cfg: AlignConfig = load_toml(&a.config, &a.overrides)?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.config.display()))?;
    let resume = a.resume();
    let name = if stage == Stage::Sft { "sft" } else { "dpo" };
    let bar = step_bar(name, 0);
    let s = align::run(&cfg, stage, resume, |e| match e {
        Event::Start {
            first_step,
            total_steps,
            params,
            resumed_from,
        } => started(
            &bar,
            name,
            (first_step, total_steps),
            params,
            resumed_from,
            "",
        ),
        Event::Line { step, text, eval } => {
            bar.set_position(step);
            bar.set_message(text);
            if let Some(line) = eval {
                say(&bar, format!("eval: {line}"));
            }
        }
        Event::Saved(p) => say(&bar, format!("saved {}", p.display())),
        Event::Note(n) => say(&bar, format!("note: {n}")),
        Event::Step(_) => {}
    })?;
    bar.finish_and_clear();
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    let dpo = match (s.last_dpo, s.last_val_dpo) {
        (Some(t), v) => format!(
            ", margin {:.4} accuracy {:.2} (val margin {} accuracy {})",
            t.rewards_margins,
            t.rewards_accuracies,
            f(v.map(|m| m.rewards_margins)),
            f(v.map(|m| m.rewards_accuracies))
        ),
        _ => String::new(),
    };
    println!(
        "{name}: {} steps ({} this run) on {} examples ({} val, skipped {:?}), loss {} -> {}, val loss {}{dpo}, {:.0} tokens/s, {:.1}s; checkpoint {}",
        s.steps,
        s.steps - s.first_step,
        s.train_examples,
        s.val_examples,
        s.skipped,
        f(s.first_loss),
        f(s.last_loss),
        f(s.last_val_loss),
        s.tokens_per_s,
        s.elapsed_s,
        s.last_checkpoint.map_or("none".into(), |p| p.display().to_string())
    );
    Ok(())
}
