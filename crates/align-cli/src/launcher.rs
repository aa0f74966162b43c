//! `align train --nproc N`: N workers of one program on this machine, started the way torchrun
//! starts them (each with `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`,
//! `MASTER_ADDR` and `MASTER_PORT`), so that no Python is needed for a one-machine run.
//!
//! The launcher forwards Ctrl-C (SIGINT) to every worker, and when one worker fails, it stops
//! the others (SIGTERM, then SIGKILL after a grace period) and fails naming the first failed
//! rank and its exit cause.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// What to start.
#[derive(Debug, Clone)]
pub struct Workers {
    /// The program (for `align train --nproc`, this `align` binary).
    pub program: PathBuf,
    /// Its arguments (for `align train --nproc`, the same arguments without `--nproc`).
    pub args: Vec<OsString>,
    /// How many workers.
    pub nproc: usize,
    /// The rendezvous port; default `MASTER_PORT` from the environment, else a free port.
    pub master_port: Option<u16>,
    /// How long the other workers get to stop after one failed, before they are killed.
    pub grace: Duration,
}

/// How a worker ended, in words: `exited with status 3`, `was killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended ({status})"),
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child's pid that has not been reaped yet (the caller checks).
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// A port that was free a moment ago, on the loopback interface.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port for the rendezvous")?;
    Ok(listener.local_addr()?.port())
}

/// Starts the workers and waits for all of them. Ok when every worker exits with status 0.
pub fn run(workers: &Workers) -> anyhow::Result<()> {
    if workers.nproc == 0 {
        bail!("--nproc must be at least 1");
    }
    let port = match workers.master_port {
        Some(p) => p,
        None => match std::env::var("MASTER_PORT") {
            Ok(p) => p.parse().with_context(|| format!("MASTER_PORT=`{p}` is not a port number"))?,
            Err(_) => free_port()?,
        },
    };
    let mut children: Vec<Option<Child>> = Vec::with_capacity(workers.nproc);
    for rank in 0..workers.nproc {
        let child = Command::new(&workers.program)
            .args(&workers.args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", workers.nproc.to_string())
            .env("LOCAL_WORLD_SIZE", workers.nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn()
            .with_context(|| format!("cannot start worker {rank} ({})", workers.program.display()));
        match child {
            Ok(c) => children.push(Some(c)),
            Err(e) => {
                stop(&mut children, workers.grace);
                return Err(e);
            }
        }
    }
    let pids: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(children.iter().flatten().map(Child::id).collect()));
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (pids, interrupted) = (pids.clone(), interrupted.clone());
        // Forward Ctrl-C: each worker saves a checkpoint and stops (a terminal already sends it
        // to the whole process group; a second SIGINT is the same request to the trainer).
        let _ = ctrlc::set_handler(move || {
            interrupted.store(true, Ordering::SeqCst);
            for &pid in pids.lock().unwrap().iter() {
                // SAFETY: kill(2); a pid already reaped is at worst signalled in vain.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGINT);
                }
            }
        });
    }
    let result = supervise(&mut children, workers.grace);
    pids.lock().unwrap().clear();
    result
}

/// Waits for every worker; on the first failure, stops the rest and reports it.
fn supervise(children: &mut [Option<Child>], grace: Duration) -> anyhow::Result<()> {
    loop {
        let mut running = 0;
        for rank in 0..children.len() {
            let Some(child) = children[rank].as_mut() else { continue };
            match child.try_wait().context("cannot wait for a worker")? {
                None => running += 1,
                Some(status) => {
                    children[rank] = None;
                    if !status.success() {
                        stop(children, grace);
                        bail!("worker rank {rank} {}; the other workers were stopped", describe(status));
                    }
                }
            }
        }
        if running == 0 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to every running worker, then SIGKILL to those still running after `grace`.
fn stop(children: &mut [Option<Child>], grace: Duration) {
    for child in children.iter().flatten() {
        signal(child, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && children.iter_mut().flatten().any(|c| matches!(c.try_wait(), Ok(None))) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for child in children.iter_mut().flatten() {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, nproc: usize) -> Workers {
        Workers {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            nproc,
            master_port: Some(29999),
            grace: Duration::from_secs(2),
        }
    }

    #[test]
    fn every_worker_gets_torchrun_s_variables() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "echo \"$RANK $LOCAL_RANK $WORLD_SIZE $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT\" > {}/$RANK",
            dir.path().display()
        );
        run(&sh(&script, 3)).unwrap();
        for rank in 0..3 {
            let line = std::fs::read_to_string(dir.path().join(rank.to_string())).unwrap();
            assert_eq!(line.trim(), format!("{rank} {rank} 3 3 127.0.0.1 29999"));
        }
    }

    #[test]
    fn a_failing_worker_stops_the_others_and_is_named() {
        let start = Instant::now();
        // Rank 1 fails at once; rank 0 would sleep for a minute.
        let e = run(&sh("if [ \"$RANK\" = 1 ]; then exit 3; fi; sleep 60", 2)).unwrap_err().to_string();
        assert!(e.contains("worker rank 1 exited with status 3"), "{e}");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sleeping worker was not stopped: {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_killed_worker_is_reported_with_its_signal() {
        let e = run(&sh("if [ \"$RANK\" = 0 ]; then kill -9 $$; fi; sleep 60", 2)).unwrap_err().to_string();
        assert!(e.contains("worker rank 0 was killed by signal 9"), "{e}");
    }

    #[test]
    fn zero_workers_is_an_error() {
        assert!(run(&sh("true", 0)).unwrap_err().to_string().contains("at least 1"));
    }
}
