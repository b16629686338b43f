//! `cloud-train cpt`.

use anyhow::Result;
use cloud_train::cpt::{self, CptConfig};
use cloud_train::train::RunConfig;

use crate::common::{opt4, show, step_bar, RunArgs};

pub fn run(a: RunArgs) -> Result<()> {
    let cfg: CptConfig = CptConfig::load(&a.config, &a.overrides)?;
    let bar = step_bar("cpt");
    let note = format!(", ALMR {}", cfg.data.almr);
    let s = cpt::run(&cfg, a.resume(), |e| show(&bar, "cpt", &note, e))?;
    bar.finish_and_clear();
    let r = &s.run;
    if r.rank != 0 {
        return Ok(());
    }
    if let Some(why) = &r.stopped {
        println!("cpt: stopped early: {why}");
    }
    println!(
        "cpt: {} steps ({} this run), {} tokens, loss {}, val loss {}, realized ALMR {:.4} (target {}), {:.0} tokens/s, {:.1}s; checkpoint {}",
        r.steps,
        r.steps - r.first_step,
        r.tokens,
        opt4(r.last_loss),
        opt4(r.validation("val_loss_combined")),
        s.almr,
        cfg.data.almr,
        r.tokens_per_s,
        r.elapsed_s,
        r.last_checkpoint.as_ref().map_or("none".into(), |p| p.display().to_string())
    );
    Ok(())
}
