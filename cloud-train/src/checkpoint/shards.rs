//! Sharded checkpoints (ZeRO-1 to 3): each rank writes its own part of its AdamW state (and,
//! under ZeRO-3, of every parameter) to `shards/rank-RRRRR-of-WWWWW.safetensors`, rank 0 a
//! `shards/manifest.json` that names the world size and every tensor's full shape. Reading
//! assembles whole tensors from all the files, so the state loads at any world size and any
//! ZeRO stage, and ZeRO-3's weights wherever a checkpoint is read (`checkpoint::load`).
//!
//! A tensor of `numel` values saved by `world` ranks is cut as the trainer cuts it: rank `r`
//! holds `r * part .. (r + 1) * part` (clipped to `numel`), `part = ceil(numel / world)`, stored
//! 1-D under the tensor's name (`name.exp_avg` ... for the optimizer state); empty parts are not
//! stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use llama_spec::hf::safetensors::{self, Dtype, SafetensorsFile};

use crate::error::CheckpointError;

/// The directory of the shards inside a checkpoint.
pub const SHARDS: &str = "shards";
/// The manifest inside [`SHARDS`].
pub const MANIFEST: &str = "manifest.json";
const FORMAT: &str = "cloud-train-shards/1";

/// What the files hold.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub world: usize,
    /// Every tensor saved (parameters and optimizer state), with its full shape.
    pub tensors: BTreeMap<String, Vec<usize>>,
    /// One file per rank, in rank order (relative to the shards directory).
    pub files: Vec<String>,
    /// The shards hold the weights (ZeRO-3); otherwise they are in the checkpoint's HF files.
    pub params: bool,
}

/// The file rank `rank` of `world` writes.
pub fn file_name(rank: usize, world: usize) -> String {
    format!("rank-{rank:05}-of-{world:05}.safetensors")
}

/// Whether `dir` is a sharded checkpoint.
pub fn is_sharded(dir: &Path) -> bool {
    dir.join(SHARDS).join(MANIFEST).is_file()
}

/// Rank `rank`'s range of a tensor of `numel` values over `world` ranks.
pub fn range(numel: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    part_range(numel, numel.div_ceil(world.max(1)), rank)
}

/// Rank `rank`'s range of `numel` values cut in parts of `part` (empty past the end): the one
/// cut that the trainer's collectives, its optimizer state and these files share.
pub fn part_range(numel: usize, part: usize, rank: usize) -> std::ops::Range<usize> {
    (rank * part).min(numel)..((rank + 1) * part).min(numel)
}

/// Write this rank's file into `dir`: `parts` are (name, this rank's values), f32, fsynced and
/// renamed into place.
pub fn write_shard(
    dir: &Path,
    rank: usize,
    world: usize,
    parts: &[(String, Vec<f32>)],
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(CheckpointError::io(dir))?;
    let path = dir.join(file_name(rank, world));
    let kept: Vec<&(String, Vec<f32>)> = parts.iter().filter(|(_, v)| !v.is_empty()).collect();
    let names: Vec<(String, Vec<usize>)> = kept
        .iter()
        .map(|(n, v)| (n.clone(), vec![v.len()]))
        .collect();
    let values: BTreeMap<&str, &Vec<f32>> = kept.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let mut buf = Vec::new();
    safetensors::write(&path, Dtype::F32, &names, |name| {
        Dtype::F32.from_f32(values[name], &mut buf);
        Ok(std::mem::take(&mut buf))
    })?;
    Ok(path)
}

/// Write the manifest of `world` shards into `dir` (rank 0, after every rank's file exists).
pub fn write_manifest(
    dir: &Path,
    world: usize,
    tensors: BTreeMap<String, Vec<usize>>,
    params: bool,
) -> Result<(), CheckpointError> {
    let manifest = Manifest {
        format: FORMAT.into(),
        world,
        tensors,
        files: (0..world).map(|r| file_name(r, world)).collect(),
        params,
    };
    for f in &manifest.files {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(CheckpointError::format(
                p,
                "the shard of this rank is missing",
            ));
        }
    }
    let p = dir.join(MANIFEST);
    let json = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    llama_spec::atomic::write_atomic(&p, format!("{json}\n").as_bytes())
        .map_err(CheckpointError::io(&p))
}

/// A sharded checkpoint opened for reading (every file memory-mapped).
pub struct ShardedCheckpoint {
    dir: PathBuf,
    pub manifest: Manifest,
    files: Vec<SafetensorsFile>,
}

impl ShardedCheckpoint {
    /// Open the shards of checkpoint directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let shards = dir.join(SHARDS);
        let p = shards.join(MANIFEST);
        let text = std::fs::read_to_string(&p).map_err(CheckpointError::io(&p))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| CheckpointError::format(&p, e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(CheckpointError::format(
                &p,
                format!("format {:?}, this build reads {FORMAT:?}", manifest.format),
            ));
        }
        if manifest.files.len() != manifest.world || manifest.world == 0 {
            return Err(CheckpointError::format(
                &p,
                format!(
                    "{} files for a world of {}",
                    manifest.files.len(),
                    manifest.world
                ),
            ));
        }
        let files = manifest
            .files
            .iter()
            .map(|f| SafetensorsFile::open(shards.join(f)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            dir: shards,
            manifest,
            files,
        })
    }

    /// The shards directory (for error messages).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Tensor `name` whole, assembled from every rank's part; `None` if it was not saved.
    pub fn read(&self, name: &str) -> Result<Option<Vec<f32>>, CheckpointError> {
        let Some(shape) = self.manifest.tensors.get(name) else {
            return Ok(None);
        };
        let numel: usize = shape.iter().product();
        let world = self.manifest.world;
        let mut out = vec![0f32; numel];
        let mut v = Vec::new();
        for (r, file) in self.files.iter().enumerate() {
            let want = range(numel, r, world);
            let bad = |message: String| {
                CheckpointError::format(self.dir.join(&self.manifest.files[r]), message)
            };
            match file.tensors.get(name) {
                Some(entry) => {
                    entry.dtype.to_f32(file.bytes(entry), &mut v);
                    if v.len() != want.len() {
                        return Err(bad(format!(
                            "{name}: {} values, its part of {numel} over {world} ranks is {}",
                            v.len(),
                            want.len()
                        )));
                    }
                    out[want].copy_from_slice(&v);
                }
                None if want.is_empty() => {}
                None => return Err(bad(format!("{name}: this rank's part is missing"))),
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tensors cut over 3 ranks (an empty last part included) read back whole; a missing part
    /// and a missing file are errors that name the file.
    #[test]
    fn shards_read_back_whole_and_missing_parts_are_named() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join(SHARDS);
        let a: Vec<f32> = (0..7).map(|i| i as f32).collect();
        let b = vec![10.0, 11.0];
        let world = 3;
        for r in 0..world {
            let parts = vec![
                ("a".to_string(), a[range(7, r, world)].to_vec()),
                ("b.exp_avg".to_string(), b[range(2, r, world)].to_vec()),
            ];
            write_shard(&dir, r, world, &parts).expect("write");
        }
        let shapes = BTreeMap::from([("a".to_string(), vec![7]), ("b.exp_avg".into(), vec![2])]);
        write_manifest(&dir, world, shapes.clone(), true).expect("manifest");
        assert!(is_sharded(tmp.path()));
        let ckpt = ShardedCheckpoint::open(tmp.path()).expect("open");
        assert_eq!(ckpt.read("a").expect("a"), Some(a.clone()));
        assert_eq!(ckpt.read("b.exp_avg").expect("b"), Some(b));
        assert_eq!(ckpt.read("c").expect("c"), None);

        // Rank 1's file without its part of `a`.
        write_shard(&dir, 1, world, &[("b.exp_avg".to_string(), vec![11.0])]).expect("write");
        let e = ShardedCheckpoint::open(tmp.path())
            .expect("open")
            .read("a")
            .expect_err("missing part");
        let text = e.to_string();
        assert!(
            text.contains("rank-00001-of-00003") && text.contains("a: this rank's part is missing"),
            "{text}"
        );
        std::fs::remove_file(dir.join(file_name(2, world))).expect("rm");
        let e = ShardedCheckpoint::open(tmp.path())
            .err()
            .expect("missing file");
        assert!(e.to_string().contains("rank-00002-of-00003"), "{e}");
        let e = write_manifest(&dir, world, shapes, true).expect_err("a rank's shard is missing");
        assert!(e.to_string().contains("rank-00002-of-00003"), "{e}");
    }
}
