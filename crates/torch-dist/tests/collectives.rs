//! Two real processes on loopback, through c10d's TCPStore and ProcessGroupGloo: every
//! collective's result, and a peer that dies mid-run. The test re-runs its own binary as the
//! workers (`TORCH_DIST_TEST_ROLE=rank:port:scenario` selects the worker body).

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use torch_dist::{DistError, GlooOptions, ProcessGroup, ReduceOp, Store};

const ROLE: &str = "TORCH_DIST_TEST_ROLE";
const WORLD: usize = 2;

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `test` as `WORLD` worker processes of scenario `scenario`; returns their outputs.
fn spawn_workers(test: &str, scenario: &str) -> Vec<Output> {
    let port = free_port();
    let children: Vec<_> = (0..WORLD)
        .map(|rank| {
            Command::new(std::env::current_exe().unwrap())
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, format!("{rank}:{port}:{scenario}"))
                .spawn()
                .unwrap()
        })
        .collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

/// This process's (rank, port, scenario) when it is a worker.
fn role() -> Option<(usize, u16, String)> {
    let text = std::env::var(ROLE).ok()?;
    let mut parts = text.splitn(3, ':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?, parts.next()?.to_string()))
}

fn group(rank: usize, port: u16, timeout: Duration) -> (Store, ProcessGroup) {
    let store = Store::tcp("127.0.0.1", port, WORLD, rank == 0, Duration::from_secs(30)).unwrap();
    let options = GlooOptions { timeout, hostname: Some("127.0.0.1".into()), ..GlooOptions::default() };
    let group = ProcessGroup::gloo(&store, rank, WORLD, &options).unwrap();
    (store, group)
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// The collectives' results on every rank, against what they must be.
fn collectives_worker(rank: usize, port: u16) {
    let (store, g) = group(rank, port, Duration::from_secs(30));
    assert_eq!((g.rank(), g.size()), (rank, WORLD));
    let r = rank as f64;

    // all_reduce: sum, max, min, product of [r + 1, 10 r].
    for (op, want) in [
        (ReduceOp::Sum, vec![3.0, 10.0]),
        (ReduceOp::Max, vec![2.0, 10.0]),
        (ReduceOp::Min, vec![1.0, 0.0]),
        (ReduceOp::Product, vec![2.0, 0.0]),
    ] {
        let mut t = Tensor::from_slice(&[r + 1.0, 10.0 * r]).to_kind(Kind::Float);
        g.all_reduce(&mut t, op).unwrap();
        assert_eq!(values(&t), want, "{op:?}");
    }
    // bf16 and f64 pass through as well.
    let mut t = Tensor::from_slice(&[0.5f64 + r]);
    g.all_reduce(&mut t, ReduceOp::Sum).unwrap();
    assert_eq!(values(&t), [2.0]);

    // broadcast from rank 1.
    let mut t = Tensor::from_slice(&[r, r, r]).to_kind(Kind::Float);
    g.broadcast(&mut t, 1).unwrap();
    assert_eq!(values(&t), [1.0; 3]);

    // all_gather: rank order.
    let input = Tensor::from_slice(&[r, 100.0 + r]).to_kind(Kind::Float);
    let mut out = Tensor::zeros([WORLD as i64, 2], (Kind::Float, tch::Device::Cpu));
    g.all_gather(&mut out, &input).unwrap();
    assert_eq!(values(&out), [0.0, 100.0, 1.0, 101.0]);

    // reduce_scatter: rank k gets the sum of every rank's slice k.
    let input = Tensor::from_slice(&[1.0 + r, 2.0 + r, 3.0 + r, 4.0 + r]).to_kind(Kind::Float);
    let mut out = Tensor::zeros([2], (Kind::Float, tch::Device::Cpu));
    g.reduce_scatter(&mut out, &input, ReduceOp::Sum).unwrap();
    let want = if rank == 0 { [3.0, 5.0] } else { [7.0, 9.0] };
    assert_eq!(values(&out), want);

    // Wrong sizes are refused before anything is sent.
    let mut bad = Tensor::zeros([3], (Kind::Float, tch::Device::Cpu));
    let e = g.all_gather(&mut bad, &Tensor::zeros([2], (Kind::Float, tch::Device::Cpu))).unwrap_err();
    assert!(matches!(e, DistError::Input { .. }) && e.to_string().contains("world size (2)"), "{e}");
    let e = g.all_reduce(&mut Tensor::zeros([2, 2], (Kind::Float, tch::Device::Cpu)).tr(), ReduceOp::Sum).unwrap_err();
    assert!(e.to_string().contains("not contiguous"), "{e}");

    // The store: a counter both ranks add to, and a value set by one and read by the other.
    assert!(store.add("arrived", 1).unwrap() >= 1);
    store.set(&format!("from-{rank}"), format!("hello {rank}").as_bytes()).unwrap();
    let other = 1 - rank;
    assert_eq!(store.get(&format!("from-{other}")).unwrap(), format!("hello {other}").as_bytes());
    g.barrier().unwrap();
    println!("worker {rank}: all collectives checked");
}

/// Rank 1 leaves after the first all-reduce; rank 0's second all-reduce must fail within its
/// 5 s timeout with c10d's error, not hang.
fn dead_peer_worker(rank: usize, port: u16) {
    let (_store, g) = group(rank, port, Duration::from_secs(5));
    let mut t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
    g.all_reduce(&mut t, ReduceOp::Sum).unwrap();
    if rank == 1 {
        std::process::exit(0);
    }
    let start = Instant::now();
    let e = g.all_reduce(&mut t, ReduceOp::Sum).expect_err("the peer is gone");
    let waited = start.elapsed();
    assert!(matches!(e, DistError::C10d { .. }), "{e:?}");
    assert!(e.to_string().contains("all_reduce (rank 0 of 2)"), "{e}");
    assert!(waited < Duration::from_secs(60), "waited {waited:?}");
    println!("worker 0: the dead peer was reported after {waited:?}: {e}");
}

fn run_scenario(test: &str, scenario: &str, worker: fn(usize, u16)) {
    if let Some((rank, port, s)) = role() {
        if s == scenario {
            worker(rank, port);
        }
        return;
    }
    let outputs = spawn_workers(test, scenario);
    for (rank, out) in outputs.iter().enumerate() {
        assert!(out.status.success(), "worker {rank} failed: {:?}", out.status);
    }
}

#[test]
fn two_processes_agree_on_every_collective() {
    run_scenario("two_processes_agree_on_every_collective", "collectives", collectives_worker);
}

#[test]
fn a_dead_peer_is_an_error_within_the_timeout() {
    run_scenario("a_dead_peer_is_an_error_within_the_timeout", "dead-peer", dead_peer_worker);
}

#[test]
fn a_store_that_never_starts_is_an_error_not_a_hang() {
    if role().is_some() {
        return;
    }
    let port = free_port();
    let start = Instant::now();
    let e = Store::tcp("127.0.0.1", port, 2, false, Duration::from_secs(2)).unwrap_err();
    assert!(e.to_string().contains(&format!("TCPStore 127.0.0.1:{port}")), "{e}");
    assert!(start.elapsed() < Duration::from_secs(30), "{:?}", start.elapsed());
}

#[test]
fn a_rank_outside_the_world_is_refused() {
    if role().is_some() {
        return;
    }
    let port = free_port();
    let store = Store::tcp("127.0.0.1", port, 1, true, Duration::from_secs(5)).unwrap();
    let e = ProcessGroup::gloo(&store, 1, 1, &GlooOptions::default()).unwrap_err();
    assert!(e.to_string().contains("rank 1 is not below the world size 1"), "{e}");
}
