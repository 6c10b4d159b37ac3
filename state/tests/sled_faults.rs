//! What the sled backend does with damaged, missing, locked and wiped
//! files. The rule under test: damage surfaces as an error that asks for a
//! rebuild, or the store holds exactly what was written; never wrong data,
//! never a panic out of the backend.
//!
//! Observed with sled 0.34.7 (each test asserts its case):
//! - sled itself recovers its log up to the first damaged or missing byte
//!   and silently drops the rest: truncating `db` to half, or flipping bytes
//!   in it, opens as a *prefix* of the writes; deleting `db` opens as an
//!   empty database. With more data, flipped bytes in the first half of
//!   `db` make `Config::open` panic ("tried to serialize Uninitialized").
//! - The backend turns all of these into `Corrupted` at open: the panic
//!   through `catch_unwind`, the silent rollbacks through its flush record
//!   (the database holds an older flush number than `state-flushed`).
//! - Garbage in `conf` is sled's own `Corruption` error; a `conf` from other
//!   settings is `Unsupported`; both map to `Corrupted`. Deleting `conf`
//!   loses nothing (sled writes it again).
//!
//! sled's background flusher is off here (every write reaches the file at
//! the explicit flush), so the file layout, and what each kind of damage
//! hits, does not depend on timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use state::sled::{FLUSHED_FILE, SLED_DIR, SledBackend, SledConfig};
use state::{Backend, StateError};

/// Enough entries for a db file of several sled segments (~700 KiB), few
/// enough to write in well under sled's 500 ms background flush period.
const ENTRIES: usize = 2000;

/// With this many entries, flipped bytes in the first half of `db` make
/// sled panic at open rather than roll back.
const PANICKING_ENTRIES: usize = 5000;

/// The backend under test, without sled's timer-driven flushes.
fn backend() -> SledBackend {
    SledBackend::new(SledConfig::default().with_flush_every_ms(None))
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(48)).into_bytes()
}

/// Writes `entries` entries to store `s`, flushes, and drops every handle.
fn write_entries(dir: &Path, entries: usize) {
    let task = backend().open(dir).unwrap();
    let store = task.key_value_store("s").unwrap();
    for i in 0..entries {
        store.put(&key(i), &value(i)).unwrap();
    }
    task.flush().unwrap();
}

fn sled_dir(dir: &Path) -> PathBuf {
    dir.join(SLED_DIR)
}

fn largest_file(dir: &Path) -> PathBuf {
    let mut files: Vec<(u64, PathBuf)> = fs::read_dir(sled_dir(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| (fs::metadata(&path).unwrap().len(), path))
        .collect();
    files.sort();
    let (_, largest) = files.pop().unwrap();
    // The rest of these tests assume sled's layout: the log is `db`.
    assert_eq!(largest.file_name().unwrap(), "db");
    largest
}

fn truncate_to_fraction(file: &Path, numerator: u64, denominator: u64) {
    let handle = fs::OpenOptions::new().write(true).open(file).unwrap();
    let len = handle.metadata().unwrap().len();
    handle.set_len(len * numerator / denominator).unwrap();
}

/// Inverts 64 bytes starting at `numerator / denominator` of the file.
fn flip_bytes_at_fraction(file: &Path, numerator: usize, denominator: usize) {
    let mut bytes = fs::read(file).unwrap();
    let at = bytes.len() * numerator / denominator;
    let end = (at + 64).min(bytes.len());
    for byte in &mut bytes[at..end] {
        *byte = !*byte;
    }
    fs::write(file, bytes).unwrap();
}

/// What reopening damaged state gave.
#[derive(Debug)]
enum Outcome {
    /// Opening the task or its store failed.
    ErrorAtOpen(StateError),
    /// A read failed.
    ErrorAtRead(StateError),
    /// Every read worked and the store held the first `n` writes, exactly.
    Prefix(usize),
}

/// Runs a backend call, failing the test if a panic escapes it.
fn no_panic<T>(what: &str, call: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(call))
        .unwrap_or_else(|_| panic!("a panic escaped the backend during {what}"))
}

/// Reopens `dir`, where `entries` entries were written, and reads
/// everything back, asserting that the result is acceptable: an error that
/// asks for a rebuild, or a prefix of the writes.
fn reopen_and_read_everything(dir: &Path, entries: usize) -> Outcome {
    let task = match no_panic("open", || backend().open(dir)) {
        Ok(task) => task,
        Err(error) => {
            assert!(
                error.needs_rebuild(),
                "open failed without asking for a rebuild: {error:?}"
            );
            return Outcome::ErrorAtOpen(error);
        }
    };
    let store = match no_panic("store open", || task.key_value_store("s")) {
        Ok(store) => store,
        Err(error) => {
            assert!(
                error.needs_rebuild(),
                "store open failed without a rebuild: {error:?}"
            );
            return Outcome::ErrorAtOpen(error);
        }
    };
    let scanned: Result<Vec<_>, _> = no_panic("scan", || {
        store.range(None, None).and_then(|iter| iter.collect())
    });
    let scanned = match scanned {
        Ok(scanned) => scanned,
        Err(error) => {
            assert!(
                error.needs_rebuild(),
                "scan failed without a rebuild: {error:?}"
            );
            return Outcome::ErrorAtRead(error);
        }
    };
    let kept = scanned.len();
    let expected: Vec<_> = (0..kept).map(|i| (key(i), value(i))).collect();
    assert!(
        scanned == expected,
        "the scan is not a prefix of the writes ({kept} entries)"
    );
    for i in 0..entries {
        match no_panic("get", || store.get(&key(i))) {
            Ok(got) => assert_eq!(got, (i < kept).then(|| value(i)), "get of entry {i}"),
            Err(error) => {
                assert!(
                    error.needs_rebuild(),
                    "get failed without a rebuild: {error:?}"
                );
                return Outcome::ErrorAtRead(error);
            }
        }
    }
    assert_eq!(store.approximate_len(), kept as u64);
    Outcome::Prefix(kept)
}

/// Asserts `outcome` is `Corrupted` at open, with a message containing
/// `needle`.
fn assert_corrupted_at_open(outcome: Outcome, needle: &str) {
    match outcome {
        Outcome::ErrorAtOpen(StateError::Corrupted { message, .. }) => {
            assert!(
                message.contains(needle),
                "expected {needle:?} in {message:?}"
            );
        }
        other => panic!("expected Corrupted at open, got {other:?}"),
    }
}

#[test]
fn undamaged_state_reads_back_every_write() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    assert!(matches!(
        reopen_and_read_everything(dir.path(), ENTRIES),
        Outcome::Prefix(ENTRIES)
    ));
}

#[test]
fn truncating_the_db_file_to_half_is_corrupted_at_open_not_silently_shorter() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    truncate_to_fraction(&largest_file(dir.path()), 1, 2);
    assert_corrupted_at_open(
        reopen_and_read_everything(dir.path(), ENTRIES),
        "flushed writes were lost",
    );
}

#[test]
fn flipping_bytes_in_the_middle_of_the_db_file_is_corrupted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    flip_bytes_at_fraction(&largest_file(dir.path()), 1, 2);
    // sled drops the log from the damaged buffer on; the flush record
    // notices.
    assert_corrupted_at_open(
        reopen_and_read_everything(dir.path(), ENTRIES),
        "flushed writes were lost",
    );
}

#[test]
fn flipping_bytes_early_in_a_larger_db_file_panics_in_sled_and_is_corrupted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), PANICKING_ENTRIES);
    flip_bytes_at_fraction(&largest_file(dir.path()), 1, 8);
    assert_corrupted_at_open(
        reopen_and_read_everything(dir.path(), PANICKING_ENTRIES),
        "sled panicked",
    );
}

#[test]
fn deleting_the_db_file_is_corrupted_at_open_not_silently_empty() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    fs::remove_file(largest_file(dir.path())).unwrap();
    assert_corrupted_at_open(
        reopen_and_read_everything(dir.path(), ENTRIES),
        "flushed writes were lost",
    );
}

#[test]
fn deleting_the_conf_file_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    fs::remove_file(sled_dir(dir.path()).join("conf")).unwrap();
    assert!(matches!(
        reopen_and_read_everything(dir.path(), ENTRIES),
        Outcome::Prefix(ENTRIES)
    ));
}

#[test]
fn garbage_in_the_conf_file_is_sleds_corruption_error_mapped_to_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    fs::write(
        sled_dir(dir.path()).join("conf"),
        b"this is not a sled config file\n",
    )
    .unwrap();
    assert_corrupted_at_open(
        reopen_and_read_everything(dir.path(), ENTRIES),
        "sled found corrupted data",
    );
}

#[test]
fn a_conf_file_with_other_settings_is_unsupported_mapped_to_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    let conf = sled_dir(dir.path()).join("conf");
    // Text lines, then a 4-byte checksum, which sled only warns about.
    let bytes = fs::read(&conf).unwrap();
    let (text, checksum) = bytes.split_at(bytes.len() - 4);
    let text = std::str::from_utf8(text).unwrap();
    assert!(text.contains("segment_size: 524288\n"), "{text:?}");
    let mut changed = text
        .replace("segment_size: 524288\n", "segment_size: 1048576\n")
        .into_bytes();
    changed.extend_from_slice(checksum);
    fs::write(&conf, changed).unwrap();
    assert_corrupted_at_open(
        reopen_and_read_everything(dir.path(), ENTRIES),
        "cannot change the io buffer size",
    );
}

#[test]
fn without_the_flush_record_sled_alone_silently_keeps_a_prefix_after_truncation() {
    // What sled does on its own, and why the flush record exists.
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    fs::remove_file(sled_dir(dir.path()).join(FLUSHED_FILE)).unwrap();
    truncate_to_fraction(&largest_file(dir.path()), 1, 2);
    match reopen_and_read_everything(dir.path(), ENTRIES) {
        Outcome::Prefix(kept) => assert!(kept < ENTRIES, "truncation lost nothing"),
        other => panic!("expected sled to open a prefix, got {other:?}"),
    }
}

#[test]
fn damage_anywhere_in_the_db_file_gives_an_error_or_all_the_data() {
    // Flushed writes are never silently lost, whatever the position. Two
    // sizes, because sled reacts differently: with 2000 entries it rolls
    // back at every position, with 5000 it panics for flips in the first
    // half.
    for entries in [ENTRIES, PANICKING_ENTRIES] {
        for sixteenth in 0..16 {
            for damage in ["truncate", "flip"] {
                let dir = tempfile::tempdir().unwrap();
                write_entries(dir.path(), entries);
                let file = largest_file(dir.path());
                if damage == "truncate" {
                    truncate_to_fraction(&file, sixteenth, 16);
                } else {
                    flip_bytes_at_fraction(&file, sixteenth as usize, 16);
                }
                match reopen_and_read_everything(dir.path(), entries) {
                    Outcome::Prefix(kept) => assert_eq!(
                        kept, entries,
                        "{damage} at {sixteenth}/16 of {entries} entries silently lost writes"
                    ),
                    Outcome::ErrorAtOpen(error) | Outcome::ErrorAtRead(error) => assert!(
                        matches!(error, StateError::Corrupted { .. }),
                        "{damage} at {sixteenth}/16 of {entries} entries: {error:?}"
                    ),
                }
            }
        }
    }
}

#[test]
fn wipe_after_corruption_lets_the_state_be_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), PANICKING_ENTRIES);
    flip_bytes_at_fraction(&largest_file(dir.path()), 1, 8);
    let backend = backend();
    let error = backend
        .open(dir.path())
        .err()
        .expect("damaged state opened");
    assert!(error.needs_rebuild());

    backend.wipe(dir.path()).unwrap();
    let task = backend.open(dir.path()).unwrap();
    let store = task.key_value_store("s").unwrap();
    assert_eq!(store.approximate_len(), 0);
    assert_eq!(store.get(&key(0)).unwrap(), None);
    store.put(&key(0), &value(0)).unwrap();
    task.flush().unwrap();
    drop((store, task));
    let task = backend.open(dir.path()).unwrap();
    assert_eq!(
        task.key_value_store("s").unwrap().get(&key(0)).unwrap(),
        Some(value(0))
    );
}

#[test]
fn opening_a_directory_that_is_already_open_is_locked_and_needs_no_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend();
    let first = backend.open(dir.path()).unwrap();
    first.key_value_store("s").unwrap().put(b"k", b"v").unwrap();

    let error = backend
        .open(dir.path())
        .err()
        .expect("second open succeeded");
    assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
    assert!(!error.needs_rebuild());

    // The refused open did not disturb the first, and dropping the first
    // releases the lock.
    assert_eq!(
        first.key_value_store("s").unwrap().get(b"k").unwrap(),
        Some(b"v".to_vec())
    );
    drop(first);
    let reopened = backend.open(dir.path()).unwrap();
    assert_eq!(
        reopened.key_value_store("s").unwrap().get(b"k").unwrap(),
        Some(b"v".to_vec())
    );
}

#[test]
fn a_database_locked_by_another_holder_is_locked_and_needs_no_rebuild() {
    // A plain sled handle, outside the backend, stands in for another
    // process: `flock` locks belong to open files, so sled refuses the
    // backend's open exactly as it would across processes.
    let dir = tempfile::tempdir().unwrap();
    let other = sled::Config::new()
        .path(dir.path().join(SLED_DIR))
        .flush_every_ms(None)
        .open()
        .unwrap();
    let error = backend().open(dir.path()).err().expect("open succeeded");
    assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
    assert!(!error.needs_rebuild());
    // The refused open left the holder's data alone.
    other.insert(b"k", b"v").unwrap();
    assert_eq!(other.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn reopening_right_after_dropping_waits_out_sleds_lingering_lock() {
    // sled 0.34 releases its lock from a background thread a moment after
    // the last handle is dropped; an immediate reopen (a task moving back
    // to this process) must not fail with Locked.
    let dir = tempfile::tempdir().unwrap();
    let backend = backend();
    for round in 0..50_u32 {
        let task = backend.open(dir.path()).unwrap_or_else(|error| {
            panic!("reopen in round {round} failed: {error:?}");
        });
        let store = task.key_value_store("s").unwrap();
        if round > 0 {
            assert_eq!(
                store.get(b"round").unwrap(),
                Some((round - 1).to_be_bytes().to_vec())
            );
        }
        store.put(b"round", &round.to_be_bytes()).unwrap();
        task.flush().unwrap();
    }
}

#[test]
fn wipe_while_the_state_is_open_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let backend = backend();
    let task = backend.open(dir.path()).unwrap();
    task.key_value_store("s").unwrap().put(b"k", b"v").unwrap();
    let error = backend.wipe(dir.path()).expect_err("wipe succeeded");
    assert!(matches!(error, StateError::Locked { .. }), "{error:?}");
    assert_eq!(
        task.key_value_store("s").unwrap().get(b"k").unwrap(),
        Some(b"v".to_vec())
    );
    drop(task);
    backend.wipe(dir.path()).unwrap();
    assert!(!sled_dir(dir.path()).exists());
}

#[test]
fn a_store_handle_outliving_its_task_state_keeps_the_lock() {
    // Stores hold the database open: the engine must drop them all before
    // reopening or wiping.
    let dir = tempfile::tempdir().unwrap();
    let backend = backend();
    let task = backend.open(dir.path()).unwrap();
    let store = task.key_value_store("s").unwrap();
    drop(task);
    assert!(matches!(
        backend.open(dir.path()),
        Err(StateError::Locked { .. })
    ));
    drop(store);
    backend.open(dir.path()).unwrap();
}

#[test]
fn wipe_then_open_gives_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    let backend = backend();
    backend.wipe(dir.path()).unwrap();
    assert!(!sled_dir(dir.path()).exists());
    let task = backend.open(dir.path()).unwrap();
    let store = task.key_value_store("s").unwrap();
    assert_eq!(store.approximate_len(), 0);
    assert_eq!(store.range(None, None).unwrap().count(), 0);
}

#[test]
fn wipe_of_missing_state_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    backend().wipe(&dir.path().join("never-created")).unwrap();
    backend().wipe(dir.path()).unwrap();
}

#[test]
fn wipe_removes_a_stray_file_where_the_state_directory_belongs() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(sled_dir(dir.path()), b"not a directory").unwrap();
    let backend = backend();
    let error = backend.open(dir.path()).err().expect("opened over a file");
    assert!(matches!(error, StateError::Io { .. }), "{error:?}");
    assert!(error.needs_rebuild());
    backend.wipe(dir.path()).unwrap();
    backend.open(dir.path()).unwrap();
}

#[test]
fn a_clean_drop_without_flush_keeps_every_write() {
    // sled 0.34 flushes all dirty pages when the last handle is dropped.
    let dir = tempfile::tempdir().unwrap();
    let backend = backend();
    {
        let task = backend.open(dir.path()).unwrap();
        let store = task.key_value_store("s").unwrap();
        let windows = task.window_store("w").unwrap();
        for i in 0..100 {
            store.put(&key(i), &value(i)).unwrap();
            windows.put(&key(i), -(i as i64), &value(i)).unwrap();
        }
    }
    let task = backend.open(dir.path()).unwrap();
    let store = task.key_value_store("s").unwrap();
    let windows = task.window_store("w").unwrap();
    assert_eq!(store.approximate_len(), 100);
    assert_eq!(windows.approximate_len(), 100);
    assert_eq!(store.get(&key(99)).unwrap(), Some(value(99)));
    assert_eq!(windows.get(&key(99), -99).unwrap(), Some(value(99)));
}

#[test]
fn size_on_disk_reports_the_written_state() {
    let dir = tempfile::tempdir().unwrap();
    write_entries(dir.path(), ENTRIES);
    let task = backend().open(dir.path()).unwrap();
    // At least the values' bytes are on disk.
    assert!(task.size_on_disk() >= (ENTRIES * value(0).len()) as u64);
}

#[test]
fn key_value_and_window_stores_of_one_name_do_not_share_data() {
    let dir = tempfile::tempdir().unwrap();
    let task = backend().open(dir.path()).unwrap();
    let kv = task.key_value_store("x").unwrap();
    let windows = task.window_store("x").unwrap();
    // Nor can a key-value store reach a window store's trees.
    assert!(task.key_value_store("x/windows").is_err());
    kv.put(b"k", b"v").unwrap();
    windows.put(b"k", 1, b"w").unwrap();
    assert_eq!(kv.approximate_len(), 1);
    assert_eq!(windows.fetch_all(i64::MIN, i64::MAX).unwrap().len(), 1);
    assert_eq!(kv.range(None, None).unwrap().count(), 1);
}
