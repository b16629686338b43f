//! Data parallelism over MPI with real processes (`mpirun -np 2/4` on loopback), against one
//! process with the same global batch:
//! - `cpt` on 2 ranks (ZeRO-3) and 4 ranks (ZeRO-2 and ZeRO-3) gives the same weights, losses
//!   and optimizer state after 4 steps (within 1e-6), and the same realized ALMR;
//! - a 4-rank ZeRO-3 checkpoint resumed on 2 ranks with replicated AdamW finishes equal to the
//!   uninterrupted run;
//! - `sft` (ZeRO-1) and `dpo` (ZeRO-2, checkpointed layers) on 2 ranks equal one process;
//! - under ZeRO-2 each rank holds 1/N of the gradient and of the AdamW state, under ZeRO-3 of
//!   the parameters too;
//! - a killed rank ends the job (mpirun), a stopped (hung) rank too (our collective timeout).
//!
//! Needs `--features cloud-train/mpi` (scripts/test.sh turns it on and installs OpenMPI).

use crate::common;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use cloud_train::checkpoint;
use cloud_train::dist::{DataParallel, Single, Update, ZeroStage};
use cloud_train::model::params::{named_params, ParamValue};
use cloud_train::train::{
    loss_into, position_nll_from, AdamW, AdamWSettings, Batch, GradSink, MemoryPlan,
};
use cloud_train::Llama;

fn update(lr: f64, max_norm: Option<f64>) -> Update {
    Update { lr, max_norm }
}

/// Deterministic pseudo-random gradients for every parameter of `model`.
fn fake_grads(model: &Llama, seed: u64, device: &Device) -> GradientsParams {
    let mut grads = GradientsParams::new();
    let mut state = seed;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1e-2
    };
    for p in model.params() {
        match p.value {
            ParamValue::D1(t) => {
                let n = t.dims()[0];
                let v: Vec<f32> = (0..n).map(|_| next()).collect();
                grads.register::<1>(p.id, Tensor::from_data(TensorData::new(v, [n]), device));
            }
            ParamValue::D2(t) => {
                let d = t.dims();
                let v: Vec<f32> = (0..d[0] * d[1]).map(|_| next()).collect();
                grads.register::<2>(p.id, Tensor::from_data(TensorData::new(v, d), device));
            }
        }
    }
    grads
}

/// One process: the ZeRO-1 optimizer (all the state in one shard) makes exactly the updates of
/// the plain AdamW, and its saved state loads into the plain AdamW (and back).
#[test]
fn sharded_adamw_on_one_rank_is_adamw() {
    sharded_on_one_rank_is_plain(AdamWSettings::default(), ZeroStage::Sharded, 1e-7);
}

/// ZeRO-2 on one rank: the gradients go through the sharded buffer (one reduce-scatter per
/// parameter group) and the updates are the plain AdamW's.
#[test]
fn sharded_gradients_on_one_rank_are_adamw() {
    sharded_on_one_rank_is_plain(AdamWSettings::default(), ZeroStage::ShardedGrads, 1e-7);
}

/// The same with compensated updates: the compensations are sharded, gathered into the
/// plain format and loaded back like the moments. The two paths' clipping coefficients differ
/// in the last bit (the norm is summed in another order); the compensation keeps that sub-ulp
/// difference and can turn it into one rounding step of a weight: observed 1.2e-7, one ulp at
/// 1.0 (the norm weights), so the bound is two.
#[test]
fn sharded_compensated_adamw_on_one_rank_is_adamw() {
    let settings = AdamWSettings {
        compensated: true,
        ..AdamWSettings::default()
    };
    sharded_on_one_rank_is_plain(settings, ZeroStage::Sharded, 2.0 * f32::EPSILON);
}

/// ZeRO-3 on one rank, with real passes: the model becomes a shell (no parameter whole
/// between passes), every pass gathers the root and each layer (forward, then again for the
/// recomputed backward), the updates apply to the rank's parts, and after 3 steps the gathered
/// model is bit for bit ZeRO-2's with the same recomputed-layer passes (ZeRO-2 equals plain
/// AdamW: `sharded_gradients_on_one_rank_are_adamw`).
#[test]
fn sharded_parameters_on_one_rank_are_zero2() {
    let device = common::device();
    let config =
        llama_spec::LlamaConfig::from_file(common::root().join("configs/models/tiny.json"))
            .expect("config");
    let start = Llama::init(&config, 3, &device).train();
    let params = start.num_params();
    let settings = AdamWSettings::default();
    let plan = MemoryPlan {
        checkpoint_layers: true,
        ..MemoryPlan::default()
    };
    let mut plain = DataParallel::new(
        Box::new(Single),
        settings.clone(),
        ZeroStage::ShardedGrads,
        &start,
        &device,
    );
    let mut a = start.clone();
    let mut dp = DataParallel::new(
        Box::new(Single),
        settings.clone(),
        ZeroStage::ShardedParams,
        &start,
        &device,
    );
    let mut b = dp.shard(start.clone()).expect("shard");
    // A ZeRO-3 start from a checkpoint reads each rank's part straight from the file, on a
    // shell built from the config: the same parts.
    let tmp = tempfile::tempdir().expect("tmp");
    let opts = checkpoint::SaveOptions {
        dtype: checkpoint::safetensors::Dtype::F32,
        ..Default::default()
    };
    checkpoint::save(&start, &config, tmp.path(), &opts).expect("save");
    let reader = checkpoint::PartReader::open(tmp.path()).expect("open");
    let shell = checkpoint::shell(&config, &device).train();
    let direct = DataParallel::with_parts(
        Box::new(Single),
        settings.clone(),
        &config,
        &shell,
        &device,
        |slot, range| reader.part(&slot.name, &slot.dims, range),
    )
    .expect("parts");
    let whole = direct.whole_model(&shell).expect("gather").into_owned();
    for ((name, x), (_, y)) in named_params(&start).into_iter().zip(named_params(&whole)) {
        assert!(x.to_f32().expect("x") == y.to_f32().expect("y"), "{name}");
    }
    // The shell keeps ids and row counts (the vocabulary) and nothing else.
    assert_eq!(b.embed_tokens.dims()[0], config.vocab_size as usize);
    assert!(
        b.num_params() < params / 20,
        "{} of {params}",
        b.num_params()
    );
    let ids: Vec<Vec<u32>> = (0..2)
        .map(|r| (0..17).map(|t| (t * 7919 + r * 104729) % 5000).collect())
        .collect();
    let batch = Batch::from_windows(&ids, &device);
    for step in 0..3 {
        let u = update(1e-3 * (step + 1) as f64, Some(1.0));
        let la = loss_into(&a, &batch, &plan, 1.0, &mut plain.sink()).expect("pass");
        let lb = loss_into(&b, &batch, &plan, 1.0, &mut dp.sink()).expect("pass");
        assert_eq!(la.loss, lb.loss, "step {step}");
        (a, _) = plain.step(a, u).expect("finite");
        (b, _) = dp.step(b, u).expect("finite");
    }
    let whole = dp.whole_model(&b).expect("gather").into_owned();
    let mut worst = 0f32;
    for ((name, x), (_, y)) in named_params(&a).into_iter().zip(named_params(&whole)) {
        let (x, y) = (x.to_f32().expect("a"), y.to_f32().expect("b"));
        assert_eq!(x.len(), y.len(), "{name}");
        worst = x
            .iter()
            .zip(&y)
            .map(|(p, q)| (p - q).abs())
            .fold(worst, f32::max);
    }
    assert_eq!(worst, 0.0, "ZeRO-3 vs ZeRO-2 after 3 steps");
    // Between passes the rank keeps its parts (here all of it, one rank); a pass held at most
    // the root (tied embedding, final norm) and one layer gathered.
    let held = dp.held();
    let root =
        config.vocab_size as usize * config.hidden_size as usize + config.hidden_size as usize;
    let layer = (params - root) / config.num_hidden_layers as usize;
    assert_eq!(
        (held.params, held.gathered),
        (params, root + layer),
        "{held:?}"
    );
    // Validation passes gather too, and give the plain model's numbers.
    let nll = |m: &Llama, dp: &DataParallel| {
        position_nll_from(&dp.source(), m, Some(&batch), 8)
            .expect("pass")
            .expect("a batch")
    };
    assert!(nll(&a, &plain) == nll(&b, &dp), "validation passes differ");
}

/// One step of `dp` with `grads`, handed over as a backward pass does.
fn dp_step(dp: &mut DataParallel, model: Llama, mut grads: GradientsParams, u: Update) -> Llama {
    dp.sink()
        .take(&model.params(), &mut grads, 1.0)
        .expect("one rank");
    dp.step(model, u).expect("finite").0
}

/// ZeRO-1 or -2 on one rank against the plain optimizer: weights within `tol` after 3 steps,
/// the state saved in the plain format, and a plain state loaded into the sharded optimizer.
fn sharded_on_one_rank_is_plain(settings: AdamWSettings, zero: ZeroStage, tol: f32) {
    let device = common::device();
    let config =
        llama_spec::LlamaConfig::from_file(common::root().join("configs/models/tiny.json"))
            .expect("config");
    let start = Llama::init(&config, 3, &device).train();
    let (mut plain, mut a) = (AdamW::new(settings.clone()), start.clone());
    let mut sharded = DataParallel::new(Box::new(Single), settings.clone(), zero, &start, &device);
    let mut b = start.clone();
    for step in 0..3 {
        let lr = 1e-3 * (step + 1) as f64;
        let (na, nb);
        (a, na) = plain
            .step(a, fake_grads(&start, step, &device), lr, Some(0.5))
            .expect("finite");
        let mut grads = fake_grads(&start, step, &device);
        sharded
            .sink()
            .take(&b.params(), &mut grads, 1.0)
            .expect("one rank");
        (b, nb) = sharded.step(b, update(lr, Some(0.5))).expect("finite");
        assert!((na - nb).abs() <= 1e-6 * na, "norm {na} vs {nb}");
    }
    let mut worst = 0f32;
    for ((name, x), (_, y)) in named_params(&a).into_iter().zip(named_params(&b)) {
        let (x, y) = (x.to_f32().expect("a"), y.to_f32().expect("b"));
        for (p, q) in x.iter().zip(&y) {
            worst = worst.max((p - q).abs());
        }
        assert_eq!(x.len(), y.len(), "{name}");
    }
    println!("ZeRO-1 on one rank vs AdamW after 3 steps: max |diff| {worst:e}");
    assert!(worst <= tol, "{worst}");
    assert_eq!(sharded.state_elements(), plain.state_elements());

    // The sharded state, saved, is the plain optimizer's format.
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("optimizer.safetensors");
    sharded.save_optimizer(&b, Some(&path)).expect("save");
    let bytes = std::fs::read(&path).expect("read the state");
    let has_compensation = bytes.windows(13).any(|w| w == b".compensation");
    assert_eq!(has_compensation, settings.compensated);
    let mut loaded = AdamW::new(settings.clone());
    loaded.load(&a, &path, 3).expect("load");
    for p in a.params() {
        let (m1, v1) = plain.moments_f32(p.id).expect("plain moments");
        let (m2, v2) = loaded.moments_f32(p.id).expect("loaded moments");
        let d = m1
            .iter()
            .zip(&m2)
            .chain(v1.iter().zip(&v2))
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d <= 1e-9, "moments differ by {d}");
    }
    // And a plain state loads into the sharded optimizer, which then continues identically.
    let plain_path = tmp.path().join("plain.safetensors");
    plain.save(&a, &plain_path).expect("save plain");
    let mut resumed = DataParallel::new(Box::new(Single), settings, zero, &a, &device);
    resumed
        .load_optimizer(&a, &plain_path, 3)
        .expect("load into sharded");
    assert_eq!(resumed.adam_step(), 3);
    let c = dp_step(
        &mut resumed,
        a.clone(),
        fake_grads(&a, 9, &device),
        update(1e-3, None),
    );
    let held = resumed.held();
    let params = a.num_params();
    assert_eq!((held.params, held.grads_peak), (params, params), "{held:?}");
    let (d, _) = plain
        .step(a, fake_grads(&start, 9, &device), 1e-3, None)
        .expect("finite");
    let diff = named_params(&c)
        .into_iter()
        .zip(named_params(&d))
        .flat_map(|((_, x), (_, y))| {
            let (x, y) = (x.to_f32().expect("c"), y.to_f32().expect("d"));
            x.into_iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .collect::<Vec<_>>()
        })
        .fold(0f32, f32::max);
    assert!(diff <= tol, "{diff}");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn mpi_tests_need_the_mpi_feature() {
    test_support::skip(
        "cloud-train::mpi_tests_need_the_mpi_feature",
        "built without `--features cloud-train/mpi`: the multi-rank tests did NOT run (scripts/test.sh runs them)",
    );
}

#[cfg(feature = "mpi")]
mod mpi_ranks {
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::common::{cloud_train, prepare_corpora as prepare, root, run_ok};
    use cloud_train::checkpoint::shards;
    use llama_spec::hf::safetensors::SafetensorsFile;

    const TOL: f64 = 1e-6;

    /// `mpirun` for `np` local ranks of `cloud-train` (root-safe, oversubscribed on 2 cores,
    /// one compute thread per rank).
    fn mpirun(np: usize) -> Command {
        let mut c = Command::new("mpirun");
        c.current_dir(root()).args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
            // Containers often forbid the ptrace-based single-copy path.
            "--mca",
            "btl_vader_single_copy_mechanism",
            "none",
            "-x",
            "RAYON_NUM_THREADS=1",
            "-np",
            &np.to_string(),
            env!("CARGO_BIN_EXE_cloud-train"),
        ]);
        c
    }

    /// One process, the same thread count as a rank.
    fn single() -> Command {
        let mut c = cloud_train();
        c.env("RAYON_NUM_THREADS", "1");
        c
    }

    /// `cpt` args: configs/cpt-tiny.toml, 4 steps of 16 sequences (4 micro-batches of 4 on one
    /// rank, 2 on two, 1 on four), checkpoints at steps 2 and 4.
    fn cpt_args(c: &mut Command, data: &Path, out: &Path, extra: &[&str]) {
        c.args(["cpt", "--config", "configs/cpt-tiny.toml"]);
        let mut sets = vec![
            format!("data.corpus=[{{name=\"en\", path={:?}, role=\"base\"}}, {{name=\"zh\", path={:?}, role=\"additional\"}}]",
                data.join("en"), data.join("zh")),
            format!("output.dir={out:?}"),
            "train.steps=4".into(),
            "train.mbs=4".into(),
            "train.gbs=16".into(),
            "output.save_every=2".into(),
            "output.eval_every=2".into(),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        for s in sets {
            c.arg("--set").arg(s);
        }
    }

    /// Tensors by name, in name order.
    type Named = Vec<(String, Vec<f32>)>;

    fn tensors(path: &Path) -> Named {
        let f = SafetensorsFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f.tensors
            .iter()
            .map(|(k, e)| {
                let mut v = Vec::new();
                e.dtype.to_f32(f.bytes(e), &mut v);
                (k.clone(), v)
            })
            .collect()
    }

    /// A checkpoint's weights and optimizer state, by name: from its safetensors files, or
    /// assembled from its shards (the AdamW state from ZeRO-1 on, the weights under ZeRO-3).
    fn saved(dir: &Path) -> (Named, Named) {
        let (mut weights, mut state) = (Vec::new(), Vec::new());
        if shards::is_sharded(dir) {
            let ckpt = shards::ShardedCheckpoint::open(dir).expect("shards");
            for name in ckpt.manifest.tensors.keys() {
                let v = ckpt.read(name).expect("read").expect("saved");
                if name.ends_with(".weight") {
                    weights.push((name.clone(), v));
                } else {
                    state.push((name.clone(), v));
                }
            }
        }
        for (file, into) in [("model", &mut weights), ("optimizer", &mut state)] {
            let p = dir.join(format!("{file}.safetensors"));
            if p.exists() {
                assert!(into.is_empty(), "{}: both files and shards", p.display());
                *into = tensors(&p);
            }
        }
        (weights, state)
    }

    /// Largest absolute difference between two sets of the same tensors.
    fn max_diff((a, ta): (&Path, Named), (b, tb): (&Path, Named)) -> f64 {
        assert_eq!(
            ta.iter().map(|t| &t.0).collect::<Vec<_>>(),
            tb.iter().map(|t| &t.0).collect::<Vec<_>>(),
            "{} vs {}",
            a.display(),
            b.display()
        );
        let mut worst = 0f64;
        for ((name, x), (_, y)) in ta.iter().zip(&tb) {
            assert_eq!(x.len(), y.len(), "{name}");
            for (p, q) in x.iter().zip(y) {
                worst = worst.max((f64::from(*p) - f64::from(*q)).abs());
            }
        }
        worst
    }

    fn metrics(out: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap_or_else(|e| panic!("{}: {e}", out.display()))
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect()
    }

    /// Same losses (within TOL, relative) and, for `cpt`, the same realized ALMR per step; at
    /// least one value of each key.
    fn same_metrics(a: &Path, b: &Path, keys: &[&str]) {
        let (ma, mb) = (metrics(a), metrics(b));
        assert_eq!(ma.len(), mb.len());
        for k in keys {
            assert!(
                ma.iter().any(|m| m[k].is_number()),
                "no {k} in {}",
                a.display()
            );
        }
        for (x, y) in ma.iter().zip(&mb) {
            for k in keys {
                // Validation keys are on evaluation steps only, in both runs or neither.
                let (p, q) = match (x[k].as_f64(), y[k].as_f64()) {
                    (Some(p), Some(q)) => (p, q),
                    (None, None) => continue,
                    _ => panic!("step {}: {k} in one run only", x["step"]),
                };
                assert!(
                    (p - q).abs() <= TOL * p.abs().max(1.0),
                    "step {}: {k} {p} vs {q}",
                    x["step"]
                );
            }
        }
    }

    fn ckpt(out: &Path, step: u64) -> PathBuf {
        out.join(format!("checkpoint-{step:06}"))
    }

    /// Weights and optimizer state of two runs' checkpoints at `step`: their max differences.
    fn same_checkpoint(a: &Path, b: &Path, step: u64, what: &str) {
        let (a, b) = (ckpt(a, step), ckpt(b, step));
        let ((wa, oa), (wb, ob)) = (saved(&a), saved(&b));
        let w = max_diff((&a, wa), (&b, wb));
        let o = max_diff((&a, oa), (&b, ob));
        println!("{what}: step {step}: weights max |diff| {w:.3e}, AdamW moments {o:.3e}");
        assert!(w <= TOL, "{what}: weights differ by {w}");
        assert!(o <= TOL, "{what}: optimizer state differs by {o}");
    }

    /// A 4-step CPT run in `tmp/name` through `c` (one process or mpirun), optionally resumed
    /// from a checkpoint; its output directory and printed text.
    fn cpt_run(
        tmp: &Path,
        name: &str,
        mut c: Command,
        extra: &[&str],
        resume: Option<PathBuf>,
    ) -> (PathBuf, String) {
        let out = tmp.join(name);
        cpt_args(&mut c, &tmp.join("data"), &out, extra);
        if let Some(r) = resume {
            c.arg("--resume").arg(r);
        }
        let t0 = Instant::now();
        let text = run_ok(&mut c);
        println!("{name}: {:.1} s", t0.elapsed().as_secs_f64());
        (out, text)
    }

    /// 4 ranks with ZeRO-2 and with ZeRO-3, then each one's sharded checkpoint of step 2
    /// resumed on 2 ranks at another stage (ZeRO-3's with replicated AdamW, ZeRO-2's with
    /// ZeRO-3), each against one process; the state each rank keeps, as a table.
    #[test]
    #[ignore = "full tier (scripts/test.sh --full): 4 ranks on 2 cores, ~55 s"]
    fn four_ranks_zero2_zero3_and_resume_on_two_equal_one_process() {
        let tmp = tempfile::tempdir().expect("tmp");
        prepare(&tmp.path().join("data"));
        let (one, one_text) = cpt_run(tmp.path(), "one", single(), &[], None);
        let whole = held(&one_text)[0];
        println!("| ranks | stage | parameters | gradient | AdamW | total | gathered |");
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let row = |world: usize, stage: u8, h: &Held| {
            let total = h.params + h.grads + h.optimizer;
            println!(
                "| {world} | {stage} | {} | {} | {} | {total} | {} |",
                h.params, h.grads, h.optimizer, h.gathered
            );
        };
        row(1, 0, &whole);
        let mut four_runs = Vec::new();
        for stage in [2u8, 3] {
            let name = format!("four-zero{stage}");
            let set = format!("train.zero_stage={stage}");
            let (four, four_text) = cpt_run(tmp.path(), &name, mpirun(4), &[&set], None);
            same_metrics(&one, &four, &["loss", "almr", "val_loss_combined"]);
            for step in [2, 4] {
                same_checkpoint(&one, &four, step, &format!("cpt 4 ranks, ZeRO-{stage}"));
            }
            let four_held = held(&four_text);
            assert_eq!(four_held.len(), 4, "{four_text}");
            for h in &four_held {
                if stage == 3 {
                    assert_share(h.params, whole.params, 4, "parameters", &four_text);
                    assert_zero3_gathered(h.gathered, whole.params, &four_text);
                } else {
                    assert_eq!(h.params, whole.params);
                }
                assert_share(h.grads, whole.grads, 4, "gradient", &four_text);
                assert_share(h.optimizer, whole.optimizer, 4, "optimizer", &four_text);
            }
            row(4, stage, &four_held[0]);
            four_runs.push(four);
        }
        let four = four_runs.pop().expect("the ZeRO-3 run");
        let four_zero2 = four_runs.pop().expect("the ZeRO-2 run");
        // The mixture is exact globally: 64 sequences at ALMR 0.33 hold round(21.12) = 21
        // Chinese ones, whatever the number of ranks.
        let last = metrics(&four).pop().expect("metrics");
        let almr = last["almr"].as_f64().expect("almr");
        assert!(
            (almr * 64.0 - 0.33 * 64.0).abs() < 1.0,
            "realized ALMR {almr}"
        );
        // Each sharded checkpoint of step 2 on 2 ranks at another stage: ZeRO-3's (weights and
        // state in 4 rank files) with replicated AdamW, ZeRO-2's (HF weights, the state in 4
        // rank files) with ZeRO-3.
        for (from, stage, what) in [
            (
                &four,
                0,
                "cpt 4 ranks ZeRO-3 -> resumed on 2 ranks replicated",
            ),
            (
                &four_zero2,
                3,
                "cpt 4 ranks ZeRO-2 -> resumed on 2 ranks ZeRO-3",
            ),
        ] {
            let set = format!("train.zero_stage={stage}");
            let name = format!("resumed-zero{stage}");
            let (resumed, text) =
                cpt_run(tmp.path(), &name, mpirun(2), &[&set], Some(ckpt(from, 2)));
            assert!(text.contains("(2 this run)"), "{text}");
            same_checkpoint(&one, &resumed, 4, what);
        }
    }

    /// CPT on 2 ranks with ZeRO-3, SFT with ZeRO-1 and DPO with ZeRO-2, each against one
    /// process with the same global batch.
    #[test]
    fn data_parallel_equals_one_process() {
        let tmp = tempfile::tempdir().expect("tmp");
        prepare(&tmp.path().join("data"));

        // CPT.
        let (one, text) = cpt_run(tmp.path(), "one", single(), &[], None);
        assert!(text.contains("cpt: 4 steps"), "{text}");
        let (two, two_text) = cpt_run(tmp.path(), "two", mpirun(2), &["train.zero_stage=3"], None);
        assert!(two_text.contains("rank 1 of 2 (mpi"), "{two_text}");
        assert_eq!(
            two_text.matches("cpt: 4 steps").count(),
            1,
            "rank 0 alone reports:\n{two_text}"
        );
        same_metrics(&one, &two, &["loss", "almr", "val_loss_combined"]);
        for step in [2, 4] {
            same_checkpoint(&one, &two, step, "cpt 2 ranks, ZeRO-3");
        }
        // ZeRO-3 checkpoints are one file per rank and a manifest.
        let manifest = shards::ShardedCheckpoint::open(&ckpt(&two, 4)).expect("sharded");
        assert_eq!(manifest.manifest.world, 2);
        assert!(!ckpt(&two, 4).join("model.safetensors").exists());
        // `resave` turns it into an HF checkpoint with the same weights.
        let hf = tmp.path().join("two-hf");
        run_ok(
            cloud_train()
                .args(["resave", "--dtype", "f32", "--model"])
                .arg(ckpt(&two, 4))
                .arg("--out")
                .arg(&hf),
        );
        let w = max_diff((&hf, saved(&hf).0), (&two, saved(&ckpt(&two, 4)).0));
        assert_eq!(w, 0.0, "resaved weights");
        // Each rank held half of the parameters, of the gradient and of the AdamW state, and a
        // pass gathered at most the root and one layer.
        let (one_held, two_held) = (held(&text), held(&two_text));
        assert_eq!(two_held.len(), 2, "{two_text}");
        for h in &two_held {
            assert_share(h.params, one_held[0].params, 2, "parameters", &two_text);
            assert_zero3_gathered(h.gathered, one_held[0].params, &two_text);
            assert_share(h.grads, one_held[0].grads, 2, "gradient", &two_text);
            assert_share(
                h.optimizer,
                one_held[0].optimizer,
                2,
                "optimizer",
                &two_text,
            );
        }

        // SFT then DPO from the CPT model, one process vs 2 ranks with ZeRO-1.
        // The tiny configs count epochs; these runs take 3 steps.
        for stage in ["sft", "dpo"] {
            let text = std::fs::read_to_string(root().join(format!("configs/{stage}-tiny.toml")))
                .expect("config");
            let text: Vec<&str> = text
                .lines()
                .map(|l| {
                    if l.starts_with("epochs") {
                        "steps = 3"
                    } else {
                        l
                    }
                })
                .collect();
            std::fs::write(tmp.path().join(format!("{stage}.toml")), text.join("\n"))
                .expect("config");
        }
        let align = |stage: &str, model: &Path, out: &Path, c: &mut Command, extra: &[&str]| {
            c.arg(stage)
                .arg("--config")
                .arg(tmp.path().join(format!("{stage}.toml")));
            let mut sets = vec![
                format!("model.path={model:?}"),
                format!("output.dir={out:?}"),
                "train.mbs=2".into(),
                "train.gbs=8".into(),
                "output.eval_every=3".into(),
            ];
            sets.extend(extra.iter().map(|s| s.to_string()));
            for s in sets {
                c.arg("--set").arg(s);
            }
            let t0 = Instant::now();
            let text = run_ok(c);
            println!(
                "{stage} {}: {:.1} s",
                out.display(),
                t0.elapsed().as_secs_f64()
            );
            text
        };
        let cpt_model = ckpt(&one, 4);
        let (sft1, sft2) = (tmp.path().join("sft1"), tmp.path().join("sft2"));
        let zero1 = ["train.zero_stage=1"];
        align("sft", &cpt_model, &sft1, &mut single(), &zero1);
        align("sft", &cpt_model, &sft2, &mut mpirun(2), &zero1);
        same_metrics(&sft1, &sft2, &["loss", "val_loss"]);
        same_checkpoint(&sft1, &sft2, 3, "sft 2 ranks, ZeRO-1");
        // DPO with ZeRO-2 and checkpointed layers: each layer's gradient is reduce-scattered
        // as soon as its backward is done.
        let (dpo1, dpo2) = (tmp.path().join("dpo1"), tmp.path().join("dpo2"));
        let sft_model = ckpt(&sft1, 3);
        let layers = "train.checkpoint_layers=true";
        let one_text = align("dpo", &sft_model, &dpo1, &mut single(), &[layers]);
        let two_text = align(
            "dpo",
            &sft_model,
            &dpo2,
            &mut mpirun(2),
            &[layers, "train.zero_stage=2"],
        );
        same_metrics(&dpo1, &dpo2, &["loss", "val_loss", "rewards/margins"]);
        same_checkpoint(&dpo1, &dpo2, 3, "dpo 2 ranks, ZeRO-2");
        // Each rank held half of the gradient and of the AdamW state.
        let one = held(&one_text);
        let two = held(&two_text);
        assert_eq!(two.len(), 2, "{two_text}");
        for h in &two {
            assert_eq!(h.params, one[0].params);
            assert_share(h.grads, one[0].grads, 2, "gradient", &two_text);
            assert_share(h.optimizer, one[0].optimizer, 2, "optimizer", &two_text);
        }
    }

    /// One rank's "held" line (`harness::held_line`).
    #[derive(Debug, Clone, Copy)]
    struct Held {
        params: usize,
        grads: usize,
        optimizer: usize,
        /// ZeRO-3's gathered values (0 at other stages).
        gathered: usize,
    }

    /// Every rank's "held" line in a run's output, by rank (ranks print at once, so one line
    /// of the output may hold several).
    fn held(text: &str) -> Vec<Held> {
        let mut rows: Vec<(usize, Held)> = text
            .split("rank ")
            .filter(|part| part.contains(" held "))
            .map(|part| {
                let part = part.split("; peak").next().unwrap_or(part);
                let n: Vec<usize> = part
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|w| w.parse().ok())
                    .collect();
                assert!(n.len() >= 5, "a held line: {part}");
                let held = Held {
                    params: n[2],
                    grads: n[3],
                    optimizer: n[4],
                    gathered: n.get(6).copied().unwrap_or(0),
                };
                (n[0], held)
            })
            .collect();
        rows.sort_by_key(|r| r.0);
        rows.into_iter().map(|r| r.1).collect()
    }

    /// `part` is `whole / world`, to the rounding of each tensor's cut: configs/models/tiny.json
    /// has 20 parameter tensors (tied embedding, final norm, 9 per layer x 2), each cut into
    /// `world` parts of `ceil(numel / world)`, and the optimizer keeps 2 moments per tensor.
    fn assert_share(part: usize, whole: usize, world: usize, what: &str, text: &str) {
        let slack = 2 * 20;
        let ideal = whole / world;
        assert!(
            part.abs_diff(ideal) <= slack,
            "{what}: {part} held on a rank, {whole} by one process, over {world} ranks:\n{text}"
        );
    }

    /// What a ZeRO-3 pass gathers at once: the root (configs/models/tiny.json: the tied
    /// 128256 x 64 embedding and the final norm) and one of the 2 layers, whatever the world.
    fn assert_zero3_gathered(gathered: usize, whole: usize, text: &str) {
        let root = 128256 * 64 + 64;
        let layer = (whole - root) / 2;
        assert_eq!(gathered, root + layer, "{text}");
    }

    fn start_long_run(dir: &Path, extra: &[&str]) -> (PathBuf, std::process::Child, i32) {
        let data = dir.join("data");
        prepare(&data);
        let log = dir.join("log.txt");
        let file = std::fs::File::create(&log).expect("log");
        let mut c = mpirun(2);
        let mut sets = vec!["train.steps=1000", "output.save_every=1000"];
        sets.extend(extra);
        cpt_args(&mut c, &data, &dir.join("run"), &sets);
        // The caller waits for it (`wait_end`); here it is killed and waited on a timeout.
        #[allow(clippy::zombie_processes)]
        let mut child = c
            .stdout(Stdio::from(file.try_clone().expect("log")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("mpirun");
        let t0 = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let pid = text
                .split("rank 1 of 2 (mpi, local rank 1, pid ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|p| p.parse::<i32>().ok());
            let stepped = std::fs::read_to_string(dir.join("run/metrics.jsonl"))
                .is_ok_and(|m| m.lines().count() >= 1);
            if let (Some(pid), true) = (pid, stepped) {
                return (log, child, pid);
            }
            if t0.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no rank 1 pid or first step after 120 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Wait at most `limit` for the job to end; its exit code and how long it took.
    fn wait_end(child: &mut std::process::Child, limit: Duration) -> (Option<i32>, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status.code(), t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = child.kill();
                panic!("the job did not end within {limit:?} of the failure");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn a_dead_or_hung_rank_ends_the_job() {
        // Killed: mpirun sees the death and tears the job down.
        let tmp = tempfile::tempdir().expect("tmp");
        let (log, mut child, pid) = start_long_run(tmp.path(), &[]);
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        let (code, took) = wait_end(&mut child, Duration::from_secs(60));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        println!(
            "killed rank 1: job ended in {:.1} s, status {code:?}",
            took.as_secs_f64()
        );
        assert_ne!(code, Some(0), "{text}");
        assert!(
            text.contains("rank 1") && text.contains("signal 9"),
            "no clear error:\n{text}"
        );

        // Stopped (a hang the launcher cannot see): rank 0 gives up after the collective
        // timeout with a message naming the call, and the job ends.
        let tmp = tempfile::tempdir().expect("tmp");
        let (log, mut child, pid) = start_long_run(tmp.path(), &["train.collective_timeout_s=5"]);
        Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill");
        let (code, took) = wait_end(&mut child, Duration::from_secs(60));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        println!(
            "stopped rank 1: job ended in {:.1} s, status {code:?}",
            took.as_secs_f64()
        );
        assert_ne!(code, Some(0), "{text}");
        assert!(
            text.contains("rank 0 of 2 waited") && text.contains("one of them died or hangs"),
            "no clear error:\n{text}"
        );
        assert!(took < Duration::from_secs(40), "took {took:?}");
    }
}
