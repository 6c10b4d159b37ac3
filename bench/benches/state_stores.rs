//! State store throughput, sled next to the in-memory backend: `put`,
//! `get`, a full `range` scan, and a restore (replaying a changelog's
//! records into an empty store, one put at a time and in batches through
//! `write_batch`), per key-value pair.
//!
//!     cargo bench -p bench --bench state_stores
//!
//! Keys are 16-byte customer names and values 48-byte aggregates, like the
//! stateful benchmark job's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use state::memory::MemoryBackend;
use state::sled::{SledBackend, SledConfig};
use state::{Backend, KeyValueStore, TaskState};

/// Pairs per measured batch.
const N: u64 = 10_000;

fn pairs() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..N)
        .map(|i| {
            (
                format!("customer-{:07}", i * 7919 % N).into_bytes(),
                format!("{{\"orders\":{i:6},\"preparation_seconds\":{:10}}}", i * 60).into_bytes(),
            )
        })
        .collect()
}

struct Opened {
    _dir: tempfile::TempDir,
    _task: Arc<dyn TaskState>,
    store: Arc<dyn KeyValueStore>,
}

fn open(backend: &dyn Backend) -> Opened {
    let dir = tempfile::tempdir().expect("temp dir");
    let task = backend.open(dir.path()).expect("open task");
    let store = task.key_value_store("bench").expect("open store");
    Opened {
        _dir: dir,
        _task: task,
        store,
    }
}

fn filled(backend: &dyn Backend, pairs: &[(Vec<u8>, Vec<u8>)]) -> Opened {
    let opened = open(backend);
    for (k, v) in pairs {
        opened.store.put(k, v).expect("put");
    }
    opened
}

fn benches(c: &mut Criterion) {
    let pairs = pairs();
    let backends: [(&str, Box<dyn Backend>); 2] = [
        ("memory", Box::new(MemoryBackend)),
        ("sled", Box::new(SledBackend::new(SledConfig::default()))),
    ];
    for (name, backend) in &backends {
        let mut group = c.benchmark_group(format!("state/{name}"));
        group.throughput(Throughput::Elements(N));
        // Updates of existing keys, as an aggregation does.
        let store = filled(backend.as_ref(), &pairs);
        group.bench_function("put", |b| {
            b.iter(|| {
                for (k, v) in &pairs {
                    store.store.put(k, v).expect("put");
                }
            });
        });
        group.bench_function("get", |b| {
            b.iter(|| {
                for (k, _) in &pairs {
                    black_box(store.store.get(k).expect("get"));
                }
            });
        });
        group.bench_function("range (full scan)", |b| {
            b.iter(|| {
                let mut n = 0u64;
                for entry in store.store.range(None, None).expect("range") {
                    black_box(entry.expect("entry"));
                    n += 1;
                }
                assert_eq!(n, N);
            });
        });
        drop(store);
        // A restore: every changelog record into a new, empty store, one
        // put at a time and as the engine does it, in batches.
        group.bench_function("restore, one put per record", |b| {
            b.iter_batched(
                || open(backend.as_ref()),
                |opened| {
                    for (k, v) in &pairs {
                        opened.store.put(k, v).expect("put");
                    }
                    opened
                },
                BatchSize::PerIteration,
            );
        });
        group.bench_function("restore, write_batch of 1,000", |b| {
            b.iter_batched(
                || open(backend.as_ref()),
                |opened| {
                    for chunk in pairs.chunks(1_000) {
                        let mut writes = chunk
                            .iter()
                            .map(|(k, v)| (k.as_slice(), Some(v.as_slice())));
                        opened.store.write_batch(&mut writes).expect("write_batch");
                    }
                    opened
                },
                BatchSize::PerIteration,
            );
        });
        group.finish();
    }
}

criterion_group! {
    name = stores;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(stores);
