//! The same seed gives the same bytes; another seed gives another world.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use align_testbed::{write_checkpoint, TinyLlamaConfig, World, WorldConfig};
use common::written_world;

/// FNV-1a 64 digest of every file in `dir` (recursively), by relative path.
fn digests(dir: &Path) -> BTreeMap<String, (usize, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in &bytes {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
            out.insert(path.strip_prefix(dir).unwrap().display().to_string(), (bytes.len(), h));
        }
    }
    out
}

fn written_with_checkpoint(seed: u64) -> (World, tempfile::TempDir) {
    let (world, dir) = written_world(seed);
    write_checkpoint(&world, &TinyLlamaConfig::default(), &dir.path().join("model")).unwrap();
    (world, dir)
}

#[test]
fn same_seed_writes_identical_bytes() {
    let (_, a) = written_with_checkpoint(5);
    let (_, b) = written_with_checkpoint(5);
    let (da, db) = (digests(a.path()), digests(b.path()));
    assert!(da.len() >= 16, "expected data, world, tokenizer and model files, got {:?}", da.keys());
    assert_eq!(da, db);
    for name in da.keys() {
        assert_eq!(std::fs::read(a.path().join(name)).unwrap(), std::fs::read(b.path().join(name)).unwrap(), "{name}");
    }
}

#[test]
fn another_seed_gives_another_world_and_other_bytes() {
    let (wa, a) = written_with_checkpoint(5);
    let (wb, b) = written_with_checkpoint(6);
    for (la, lb) in wa.languages().iter().zip(wb.languages()) {
        let same = la.words.iter().zip(&lb.words).filter(|(x, y)| x == y).count();
        assert!(same < la.words.len() / 4, "{}: {same} of {} words unchanged", la.tag, la.words.len());
    }
    let flags = |w: &World| w.concepts().iter().map(|c| (c.harmful, c.held_out)).collect::<Vec<_>>();
    assert_ne!(flags(&wa), flags(&wb), "attributes and held-out split should depend on the seed");
    let (da, db) = (digests(a.path()), digests(b.path()));
    assert_eq!(da.keys().collect::<Vec<_>>(), db.keys().collect::<Vec<_>>());
    for (name, digest) in &da {
        // The tokenizer config and special-token map hold no world-specific text.
        if name.ends_with("tokenizer_config.json") || name.ends_with("special_tokens_map.json") {
            continue;
        }
        // config.json and generation_config.json hold only sizes, the same for both seeds.
        if name.ends_with("config.json") {
            continue;
        }
        assert_ne!(Some(digest), db.get(name), "{name} did not change with the seed");
    }
}

#[test]
fn generating_twice_in_one_process_gives_equal_worlds() {
    let config = WorldConfig { seed: 99, ..WorldConfig::default() };
    let a = World::generate(&config).unwrap();
    let b = World::generate(&config).unwrap();
    for (la, lb) in a.languages().iter().zip(b.languages()) {
        assert_eq!(la.words, lb.words);
    }
    assert_eq!(
        a.concepts().iter().map(|c| (c.harmful, c.held_out)).collect::<Vec<_>>(),
        b.concepts().iter().map(|c| (c.harmful, c.held_out)).collect::<Vec<_>>()
    );
}
