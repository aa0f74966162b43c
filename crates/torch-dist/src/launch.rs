//! Where this process stands in a launch: the variables that torchrun sets (`RANK`,
//! `LOCAL_RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), or, when those are absent,
//! SLURM's (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, with `MASTER_ADDR` and
//! `MASTER_PORT` exported by the batch script, the port defaulting to 29500).

use std::fmt;

/// The launcher whose variables were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun (or anything that sets its variables, such as `align train --nproc`).
    Torchrun,
    /// SLURM's `srun`.
    Slurm,
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Launcher::Torchrun => "torchrun",
            Launcher::Slurm => "SLURM",
        })
    }
}

/// This process's place in a multi-process launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Rank on this node (selects `cuda:<local_rank>`).
    pub local_rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Host of the rendezvous store (rank 0's).
    pub master_addr: String,
    /// Port of the rendezvous store.
    pub master_port: u16,
    /// Which variables were read.
    pub launcher: Launcher,
}

/// A launch whose variables are missing, malformed or inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{launcher} launch: {message}")]
pub struct LaunchError {
    /// The launcher whose variables were being read.
    pub launcher: Launcher,
    /// What is wrong, naming the variable.
    pub message: String,
}

/// The default rendezvous port (torchrun's).
pub const DEFAULT_PORT: u16 = 29500;

impl Launch {
    /// Reads the process environment; `Ok(None)` when no launcher's variables are set (a
    /// plain one-process run).
    pub fn from_env() -> Result<Option<Launch>, LaunchError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Launch::from_env`], reading variables through `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>, LaunchError> {
        let (launcher, names) = if var("RANK").is_some() || var("WORLD_SIZE").is_some() {
            (Launcher::Torchrun, ["RANK", "WORLD_SIZE", "LOCAL_RANK"])
        } else if var("SLURM_PROCID").is_some() || var("SLURM_NTASKS").is_some() {
            (Launcher::Slurm, ["SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"])
        } else {
            return Ok(None);
        };
        let fail = |message: String| LaunchError { launcher, message };
        let number = |name: &str| -> Result<usize, LaunchError> {
            let text = var(name).ok_or_else(|| fail(format!("{name} is not set (the other launch variables are)")))?;
            text.trim().parse().map_err(|_| fail(format!("{name}=`{text}` is not a non-negative integer")))
        };
        let [rank_name, world_name, local_name] = names;
        let (rank, world_size, local_rank) = (number(rank_name)?, number(world_name)?, number(local_name)?);
        if world_size == 0 {
            return Err(fail(format!("{world_name}=0: the world needs at least one process")));
        }
        if rank >= world_size {
            return Err(fail(format!("{rank_name}={rank} is not below {world_name}={world_size}")));
        }
        let master_addr = match var("MASTER_ADDR") {
            Some(a) if !a.trim().is_empty() => a.trim().to_string(),
            _ if world_size == 1 => "127.0.0.1".to_string(),
            _ => return Err(fail("MASTER_ADDR is not set: export rank 0's host name or address".into())),
        };
        let master_port = match var("MASTER_PORT") {
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| fail(format!("MASTER_PORT=`{p}` is not a port number (1-65535)")))?,
            None if launcher == Launcher::Slurm || world_size == 1 => DEFAULT_PORT,
            None => return Err(fail("MASTER_PORT is not set".into())),
        };
        Ok(Some(Launch { rank, local_rank, world_size, master_addr, master_port, launcher }))
    }

    /// Whether this process is rank 0 (which runs the store and writes the outputs).
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<Launch>, LaunchError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|name| map.get(name).cloned())
    }

    const TORCHRUN: [(&str, &str); 5] =
        [("RANK", "3"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "8"), ("MASTER_ADDR", "node0"), ("MASTER_PORT", "29400")];

    #[test]
    fn no_variables_is_a_plain_run() {
        assert_eq!(read(&[("PATH", "/bin")]).unwrap(), None);
    }

    #[test]
    fn torchrun_variables_are_read_as_torchrun_sets_them() {
        let l = read(&TORCHRUN).unwrap().unwrap();
        let want = Launch {
            rank: 3,
            local_rank: 1,
            world_size: 8,
            master_addr: "node0".into(),
            master_port: 29400,
            launcher: Launcher::Torchrun,
        };
        assert_eq!(l, want);
        assert!(!l.is_main());
    }

    #[test]
    fn slurm_variables_are_read_when_torchrun_s_are_absent() {
        let vars = [("SLURM_PROCID", "0"), ("SLURM_NTASKS", "2"), ("SLURM_LOCALID", "0"), ("MASTER_ADDR", "n1")];
        let l = read(&vars).unwrap().unwrap();
        assert_eq!((l.rank, l.world_size, l.master_port, l.launcher), (0, 2, DEFAULT_PORT, Launcher::Slurm));
        // torchrun's variables win when both are present.
        let mut both = TORCHRUN.to_vec();
        both.extend(vars);
        assert_eq!(read(&both).unwrap().unwrap().launcher, Launcher::Torchrun);
    }

    #[test]
    fn bad_launches_are_errors_naming_the_variable() {
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("WORLD_SIZE", "2")], "RANK is not set"),
            (TORCHRUN.iter().copied().filter(|(k, _)| *k != "LOCAL_RANK").collect(), "LOCAL_RANK is not set"),
            (
                TORCHRUN.iter().copied().map(|(k, v)| if k == "RANK" { (k, "8") } else { (k, v) }).collect(),
                "RANK=8 is not below WORLD_SIZE=8",
            ),
            (
                TORCHRUN.iter().copied().map(|(k, v)| if k == "WORLD_SIZE" { (k, "two") } else { (k, v) }).collect(),
                "WORLD_SIZE=`two`",
            ),
            (TORCHRUN.iter().copied().filter(|(k, _)| *k != "MASTER_ADDR").collect(), "MASTER_ADDR is not set"),
            (
                TORCHRUN.iter().copied().map(|(k, v)| if k == "MASTER_PORT" { (k, "70000") } else { (k, v) }).collect(),
                "MASTER_PORT=`70000`",
            ),
            (vec![("SLURM_NTASKS", "2"), ("SLURM_LOCALID", "0")], "SLURM_PROCID is not set"),
        ];
        for (vars, want) in cases {
            let e = read(&vars).expect_err(want).to_string();
            assert!(e.contains(want), "{vars:?}: {e}");
        }
    }

    #[test]
    fn a_world_of_one_needs_no_address() {
        let l = read(&[("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")]).unwrap().unwrap();
        assert_eq!((l.master_addr.as_str(), l.master_port), ("127.0.0.1", DEFAULT_PORT));
    }
}
