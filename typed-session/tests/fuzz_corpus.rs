//! The fuzz targets' decoders in the normal suite: every input of the
//! corpus kept in `fuzz/corpus/` (what `scripts/fuzz.sh` found covering new
//! code) replayed through its target, then bounded random mutations of
//! them, so CI exercises the same checks without a fuzzer.

#![cfg(feature = "__fuzz")]
#![allow(clippy::unwrap_used)]

use std::path::Path;

use rand::{Rng, SeedableRng};
use typed_session::fuzz;

type Target = fn(&[u8]);

fn targets() -> [(&'static str, Target); 4] {
    [
        ("cookie_header", fuzz::cookie_header),
        ("session_id", fuzz::session_id),
        ("sealed_cookie", fuzz::sealed_cookie),
        ("stored_record", fuzz::stored_record::<fuzz::Everything>),
    ]
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn the_corpus_replays_without_a_failure() {
    for (name, target) in targets() {
        let inputs = corpus(name);
        assert!(!inputs.is_empty(), "{name} has a corpus");
        for input in &inputs {
            target(input);
        }
        println!("{name}: {} corpus inputs", inputs.len());
    }
}

#[test]
fn bounded_random_mutations_of_the_corpus() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xf022);
    for (name, target) in targets() {
        let inputs = corpus(name);
        for _ in 0..5_000 {
            let mut input = inputs[rng.random_range(0..inputs.len())].clone();
            for _ in 0..rng.random_range(1..5) {
                let at = rng.random_range(0..=input.len());
                match rng.random_range(0..4) {
                    0 if at < input.len() => input[at] = rng.random(),
                    1 => input.insert(at, rng.random()),
                    2 if at < input.len() => {
                        input.truncate(at);
                    }
                    _ => {
                        let other = &inputs[rng.random_range(0..inputs.len())];
                        let from = rng.random_range(0..=other.len());
                        input.splice(at..at, other[from..].iter().copied());
                    }
                }
            }
            input.truncate(8192);
            target(&input);
        }
    }
}
