//! `cloud-train sft` and `cloud-train dpo`.

use anyhow::Result;
use cloud_train::align::{self, AlignConfig, Stage};
use cloud_train::train::RunConfig;

use crate::common::{opt4, show, step_bar, RunArgs};

pub fn run(a: RunArgs, stage: Stage) -> Result<()> {
    let cfg: AlignConfig = AlignConfig::load(&a.config, &a.overrides)?;
    let name = stage.name();
    let bar = step_bar(name);
    let s = align::run(&cfg, stage, a.resume(), |e| show(&bar, name, "", e))?;
    bar.finish_and_clear();
    let r = &s.run;
    if r.rank != 0 {
        return Ok(());
    }
    let dpo = match r.metric("rewards/margins") {
        Some(margin) => format!(
            ", margin {margin:.4} accuracy {:.2} (val margin {} accuracy {})",
            r.metric("rewards/accuracies").unwrap_or(f64::NAN),
            opt4(r.validation("val_rewards/margins")),
            opt4(r.validation("val_rewards/accuracies"))
        ),
        None => String::new(),
    };
    println!(
        "{name}: {} steps ({} this run) on {} examples ({} val, skipped {:?}), loss {} -> {}, val loss {}{dpo}, {:.0} tokens/s, {:.1}s; checkpoint {}",
        r.steps,
        r.steps - r.first_step,
        s.train_examples,
        s.val_examples,
        s.skipped,
        opt4(r.first_loss),
        opt4(r.last_loss),
        opt4(r.validation("val_loss")),
        r.tokens_per_s,
        r.elapsed_s,
        r.last_checkpoint.as_ref().map_or("none".into(), |p| p.display().to_string())
    );
    Ok(())
}
