//! Which rank this process is, from the launcher's environment variables: torchrun's
//! (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`), OpenMPI's `mpirun`
//! (`OMPI_COMM_WORLD_*`), MPICH/PMI (`PMI_RANK`, `PMI_SIZE`) and Slurm's `srun`
//! (`SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`, inside a job step only, so that
//! a plain command in a batch script of 8 tasks is still one process).

use super::DistError;

/// Which launcher's variables were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchSource {
    None,
    Torchrun,
    OpenMpi,
    Pmi,
    Slurm,
}

impl std::fmt::Display for LaunchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LaunchSource::None => "no launcher",
            LaunchSource::Torchrun => "torchrun variables RANK/WORLD_SIZE",
            LaunchSource::OpenMpi => "mpirun (OMPI_COMM_WORLD_*)",
            LaunchSource::Pmi => "PMI_RANK/PMI_SIZE",
            LaunchSource::Slurm => "srun (SLURM_PROCID/SLURM_STEP_NUM_TASKS)",
        })
    }
}

/// This process's place in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Rank on this node: the GPU index.
    pub local_rank: usize,
    /// Where rank 0 hands out the NCCL id (`MASTER_ADDR`, default 127.0.0.1).
    pub master_addr: String,
    /// `MASTER_PORT`, default 29500 (torchrun's).
    pub master_port: u16,
    pub source: LaunchSource,
}

impl Launch {
    /// Read the current process's environment.
    pub fn from_env() -> Result<Self, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Read from `get` (the environment, or a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, DistError> {
        let num = |k: &str| -> Result<Option<usize>, DistError> {
            match get(k) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    DistError::Launch(format!("environment variable {k}={v:?} is not a number"))
                }),
            }
        };
        let triples: [(LaunchSource, &str, &str, &str); 4] = [
            (LaunchSource::Torchrun, "RANK", "WORLD_SIZE", "LOCAL_RANK"),
            (
                LaunchSource::OpenMpi,
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
            ),
            (LaunchSource::Pmi, "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
            (
                LaunchSource::Slurm,
                "SLURM_PROCID",
                "SLURM_STEP_NUM_TASKS",
                "SLURM_LOCALID",
            ),
        ];
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let master_port = match get("MASTER_PORT") {
            None => 29500,
            Some(p) => p.trim().parse().map_err(|_| {
                DistError::Launch(format!(
                    "environment variable MASTER_PORT={p:?} is not a port"
                ))
            })?,
        };
        for (source, rank_var, world_var, local_var) in triples {
            if source == LaunchSource::Slurm && get("SLURM_STEP_ID").is_none() {
                continue;
            }
            let (Some(rank), Some(world)) = (num(rank_var)?, num(world_var)?) else {
                continue;
            };
            if world == 0 || rank >= world {
                return Err(DistError::Launch(format!(
                    "{source}: rank {rank} is not below the world size {world}"
                )));
            }
            let local_rank = num(local_var)?.unwrap_or(0);
            return Ok(Self {
                rank,
                world,
                local_rank,
                master_addr,
                master_port,
                source,
            });
        }
        Ok(Self {
            rank: 0,
            world: 1,
            local_rank: 0,
            master_addr,
            master_port,
            source: LaunchSource::None,
        })
    }

    /// An engine that knows the rank and size itself (MPI) must agree with the launcher.
    pub fn check_against(&self, rank: usize, world: usize, engine: &str) -> Result<(), DistError> {
        if self.source != LaunchSource::None && (self.rank, self.world) != (rank, world) {
            return Err(DistError::Launch(format!(
                "{engine} says rank {rank} of {world}, the {} say rank {} of {}: launch with one launcher",
                self.source, self.rank, self.world
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch, DistError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_each_launcher() {
        let none = launch(&[]).unwrap();
        assert_eq!(
            (none.rank, none.world, none.source),
            (0, 1, LaunchSource::None)
        );
        let t = launch(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node7"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap();
        assert_eq!(
            (
                t.rank,
                t.world,
                t.local_rank,
                t.master_addr.as_str(),
                t.master_port
            ),
            (3, 8, 1, "node7", 1234)
        );
        let o = launch(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ])
        .unwrap();
        assert_eq!((o.rank, o.world, o.source), (1, 4, LaunchSource::OpenMpi));
        let s = launch(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "9"),
            ("SLURM_STEP_NUM_TASKS", "32"),
            ("SLURM_LOCALID", "1"),
        ])
        .unwrap();
        assert_eq!((s.rank, s.world, s.local_rank), (9, 32, 1));
        assert_eq!(s.master_port, 29500);
    }

    #[test]
    fn a_batch_script_outside_srun_is_one_process() {
        let l = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "8")]).unwrap();
        assert_eq!((l.world, l.source), (1, LaunchSource::None));
    }

    #[test]
    fn bad_values_are_named() {
        let e = launch(&[("RANK", "x"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("RANK=\"x\""), "{e}");
        let e = launch(&[("RANK", "2"), ("WORLD_SIZE", "2")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("rank 2 is not below the world size 2"), "{e}");
        let e = launch(&[("MASTER_PORT", "99999")]).unwrap_err().to_string();
        assert!(e.contains("MASTER_PORT"), "{e}");
        let l = launch(&[("RANK", "1"), ("WORLD_SIZE", "2")]).unwrap();
        assert!(l
            .check_against(0, 2, "MPI")
            .unwrap_err()
            .to_string()
            .contains("rank 0 of 2"));
    }
}
