//! A [`WindowStore`] built on any two [`KeyValueStore`]s.
//!
//! Both backends use this, so windows behave the same whatever holds the
//! bytes. Two stores are needed because windows are read two ways:
//!
//! - the *primary* store answers "the windows of one key" ([`fetch`]) with a
//!   single range scan, so it is keyed by key first, then start:
//!   `u32 BE key length ++ key ++ ordered start`. The length prefix keeps a
//!   key from bleeding into the range of a longer key it is a prefix of
//!   (`ab` and `abc` differ in their first four bytes).
//! - the *time index* answers "every window in a time span" ([`fetch_all`],
//!   [`expire`]) with one range scan, so it is keyed by start first:
//!   `ordered start ++ key`, with an empty value (the value lives once, in
//!   the primary).
//!
//! "Ordered start" is the `i64` with its sign bit flipped, big-endian
//! ([`encode_start`]): that makes byte order equal numeric order, negative
//! starts and `i64::MIN`/`i64::MAX` included.
//!
//! # Two stores, no transaction
//! The two stores are written one after the other, not atomically. The
//! order of writes makes a crash in between harmless: a put writes the index
//! entry before the value and a delete removes the value before the index
//! entry, so the only possible leftover is an index entry without a value,
//! which reads skip and [`expire`] cleans up. (The changelog restore
//! overwrites the store anyway.)
//!
//! [`fetch`]: WindowStore::fetch
//! [`fetch_all`]: WindowStore::fetch_all
//! [`expire`]: WindowStore::expire

use std::sync::Arc;

use crate::{KeyValueStore, Result, StateError, WindowStore};

/// Length of an encoded window start.
const START_LEN: usize = 8;
/// Length of the key-length prefix of a primary key.
const LEN_PREFIX: usize = 4;

/// Encodes a window start so that byte order is numeric order: flipping the
/// sign bit maps `i64::MIN..=i64::MAX` onto `0..=u64::MAX` monotonically,
/// and big-endian bytes compare like the number.
pub fn encode_start(start: i64) -> [u8; START_LEN] {
    ((start as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`encode_start`].
pub fn decode_start(bytes: [u8; START_LEN]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The length prefix and key shared by all primary keys of `key`: every
/// window of `key` lives under it, and no other key's windows do.
fn primary_prefix(key: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(key.len()).map_err(|_| {
        StateError::Invalid(format!("window key of {} bytes exceeds 4 GiB", key.len()))
    })?;
    let mut out = Vec::with_capacity(LEN_PREFIX + key.len() + START_LEN);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key);
    Ok(out)
}

/// The primary-store key of `key`'s window starting at `start`:
/// `u32 BE key length ++ key ++ ordered start`.
pub fn encode_primary_key(key: &[u8], start: i64) -> Result<Vec<u8>> {
    let mut out = primary_prefix(key)?;
    out.extend_from_slice(&encode_start(start));
    Ok(out)
}

/// Splits a primary-store key into `(key, start)`; `None` if it is not one
/// (which means the store's bytes are damaged).
pub fn decode_primary_key(bytes: &[u8]) -> Option<(&[u8], i64)> {
    let (len, rest) = bytes.split_first_chunk::<LEN_PREFIX>()?;
    let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
    if rest.len() != len.checked_add(START_LEN)? {
        return None;
    }
    let (key, start) = rest.split_at(len);
    Some((key, decode_start(start.try_into().ok()?)))
}

/// The time-index key of `key`'s window starting at `start`:
/// `ordered start ++ key`.
pub fn encode_index_key(start: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(START_LEN + key.len());
    out.extend_from_slice(&encode_start(start));
    out.extend_from_slice(key);
    out
}

/// Splits a time-index key into `(start, key)`; `None` if it is too short
/// to be one.
pub fn decode_index_key(bytes: &[u8]) -> Option<(i64, &[u8])> {
    let (start, key) = bytes.split_first_chunk::<START_LEN>()?;
    Some((decode_start(*start), key))
}

/// The exclusive upper bound for starts `<= to`: the encoding of `to + 1`,
/// or no bound when `to` is `i64::MAX` (nothing is above it).
fn index_upper_bound(to: i64) -> Option<Vec<u8>> {
    to.checked_add(1).map(|next| encode_start(next).to_vec())
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` if there is none (all bytes are `0xff`).
fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut out = prefix.to_vec();
    while let Some(last) = out.pop() {
        if last < u8::MAX {
            out.push(last + 1);
            return Some(out);
        }
    }
    None
}

/// A [`WindowStore`] over a primary store and a time index (see the
/// [module docs](self) for the layout).
pub struct WindowedStore {
    name: String,
    primary: Arc<dyn KeyValueStore>,
    index: Arc<dyn KeyValueStore>,
}

impl std::fmt::Debug for WindowedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedStore")
            .field("name", &self.name)
            .field("primary", &self.primary.name())
            .field("index", &self.index.name())
            .finish()
    }
}

impl WindowedStore {
    /// A window store named `name` keeping its values in `primary` and its
    /// time index in `index`. The two must be distinct, empty or written
    /// only by a `WindowedStore`, and not shared with anything else.
    pub fn new(
        name: impl Into<String>,
        primary: Arc<dyn KeyValueStore>,
        index: Arc<dyn KeyValueStore>,
    ) -> Self {
        Self {
            name: name.into(),
            primary,
            index,
        }
    }

    /// The error for a stored key that does not decode: the bytes were not
    /// written by this code, so the store cannot be trusted.
    fn damaged(&self, part: Part, bytes: &[u8]) -> StateError {
        let store = match part {
            Part::Primary => self.primary.name(),
            Part::Index => self.index.name(),
        };
        StateError::Corrupted {
            location: format!("window store {} ({store})", self.name),
            message: format!("undecodable key {bytes:02x?}"),
        }
    }
}

/// Which of the two underlying stores a damaged key was found in.
#[derive(Clone, Copy)]
enum Part {
    Primary,
    Index,
}

impl WindowStore for WindowedStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn put(&self, key: &[u8], window_start: i64, value: &[u8]) -> Result<()> {
        let primary_key = encode_primary_key(key, window_start)?;
        // Index first: a crash between the writes leaves an index entry
        // without a value, which reads skip and expire removes. The other
        // order could leave a value that expire never finds.
        self.index.put(&encode_index_key(window_start, key), &[])?;
        self.primary.put(&primary_key, value)
    }

    fn get(&self, key: &[u8], window_start: i64) -> Result<Option<Vec<u8>>> {
        self.primary.get(&encode_primary_key(key, window_start)?)
    }

    fn delete(&self, key: &[u8], window_start: i64) -> Result<()> {
        // Value first, for the same reason as in `put`.
        self.primary
            .delete(&encode_primary_key(key, window_start)?)?;
        self.index.delete(&encode_index_key(window_start, key))
    }

    fn fetch(&self, key: &[u8], from: i64, to: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let prefix = primary_prefix(key)?;
        let lower = encode_primary_key(key, from)?;
        let upper = match to.checked_add(1) {
            Some(next) => Some(encode_primary_key(key, next)?),
            // Every start of `key` is <= i64::MAX: stop at the next key.
            None => prefix_successor(&prefix),
        };
        let mut out = Vec::new();
        for entry in self.primary.range(Some(&lower), upper.as_deref())? {
            let (stored, value) = entry?;
            match decode_primary_key(&stored) {
                Some((k, start)) if k == key => out.push((start, value)),
                _ => return Err(self.damaged(Part::Primary, &stored)),
            }
        }
        Ok(out)
    }

    fn fetch_all(&self, from: i64, to: i64) -> Result<Vec<(Vec<u8>, i64, Vec<u8>)>> {
        if from > to {
            return Ok(Vec::new());
        }
        let lower = encode_start(from);
        let upper = index_upper_bound(to);
        let mut out = Vec::new();
        for entry in self.index.range(Some(&lower), upper.as_deref())? {
            let (stored, _) = entry?;
            let Some((start, key)) = decode_index_key(&stored) else {
                return Err(self.damaged(Part::Index, &stored));
            };
            // An index entry without a value is a leftover of an
            // interrupted put or delete (see the module docs): skip it.
            if let Some(value) = self.primary.get(&encode_primary_key(key, start)?)? {
                out.push((key.to_vec(), start, value));
            }
        }
        Ok(out)
    }

    fn expire(&self, before: i64) -> Result<u64> {
        // Collect first: deleting while iterating would hold the memory
        // store's snapshot needlessly and is not defined for every store.
        let upper = encode_start(before);
        let mut expired = Vec::new();
        for entry in self.index.range(None, Some(&upper))? {
            let (stored, _) = entry?;
            let Some((start, key)) = decode_index_key(&stored) else {
                return Err(self.damaged(Part::Index, &stored));
            };
            expired.push((encode_primary_key(key, start)?, stored));
        }
        let mut removed = 0;
        for (primary_key, index_key) in expired {
            // Count only windows that had a value, so leftovers of an
            // interrupted put (see the module docs) are cleaned but not
            // counted.
            if self.primary.get(&primary_key)?.is_some() {
                self.primary.delete(&primary_key)?;
                removed += 1;
            }
            self.index.delete(&index_key)?;
        }
        Ok(removed)
    }

    fn approximate_len(&self) -> u64 {
        self.primary.approximate_len()
    }

    fn clear(&self) -> Result<()> {
        // Values first, so an interruption leaves only index leftovers.
        self.primary.clear()?;
        self.index.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_starts_sort_like_the_numbers_across_the_sign_boundary() {
        let starts = [
            i64::MIN,
            i64::MIN + 1,
            -1_000,
            -1,
            0,
            1,
            1_000,
            i64::MAX - 1,
            i64::MAX,
        ];
        for pair in starts.windows(2) {
            assert!(
                encode_start(pair[0]) < encode_start(pair[1]),
                "{} should encode below {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn encoded_start_round_trips_extremes() {
        for start in [i64::MIN, -1, 0, 1, i64::MAX] {
            assert_eq!(decode_start(encode_start(start)), start);
        }
        assert_eq!(encode_start(i64::MIN), [0; 8]);
        assert_eq!(encode_start(i64::MAX), [0xff; 8]);
        assert_eq!(encode_start(0), [0x80, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn primary_key_round_trips_including_empty_key() {
        for (key, start) in [(&b""[..], i64::MIN), (b"a", -5), (b"latte", i64::MAX)] {
            let encoded = encode_primary_key(key, start).unwrap();
            assert_eq!(encoded.len(), 4 + key.len() + 8);
            assert_eq!(decode_primary_key(&encoded), Some((key, start)));
        }
    }

    #[test]
    fn primary_keys_group_by_key_then_order_by_start() {
        // All of "ab"'s windows sort before any of "abc"'s: the length
        // prefix separates a key from longer keys it is a prefix of.
        let ab_late = encode_primary_key(b"ab", i64::MAX).unwrap();
        let abc_early = encode_primary_key(b"abc", i64::MIN).unwrap();
        assert!(ab_late < abc_early);
        let ab_neg = encode_primary_key(b"ab", -1).unwrap();
        let ab_pos = encode_primary_key(b"ab", 1).unwrap();
        assert!(ab_neg < ab_pos);
        // And "ab" at any start never falls in the range of "a".
        let a_upper = prefix_successor(&primary_prefix(b"a").unwrap()).unwrap();
        assert!(encode_primary_key(b"ab", i64::MIN).unwrap() >= a_upper);
    }

    #[test]
    fn index_keys_order_by_start_then_key() {
        let a = encode_index_key(-1, b"zzz");
        let b = encode_index_key(0, b"a");
        let c = encode_index_key(0, b"ab");
        assert!(a < b && b < c);
        assert_eq!(decode_index_key(&c), Some((0, &b"ab"[..])));
    }

    #[test]
    fn malformed_keys_do_not_decode() {
        assert_eq!(decode_index_key(&[1, 2, 3]), None);
        assert_eq!(decode_primary_key(&[0, 0]), None);
        // Length says 5 bytes of key, but only 1 + 8 follow.
        let mut bad = 5u32.to_be_bytes().to_vec();
        bad.extend_from_slice(&[b'a'; 9]);
        assert_eq!(decode_primary_key(&bad), None);
        // Length near u32::MAX must not overflow.
        let mut huge = u32::MAX.to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 8]);
        assert_eq!(decode_primary_key(&huge), None);
    }

    #[test]
    fn prefix_successor_carries_past_ff_bytes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_successor(&[0xff, 0xff]), None);
        assert_eq!(prefix_successor(b""), None);
    }

    /// A window store over two memory stores, with the index reachable
    /// for planting leftovers.
    fn memory_windows() -> (WindowedStore, Arc<crate::memory::MemoryStore>) {
        let index = Arc::new(crate::memory::MemoryStore::new("w/by-time"));
        let primary = Arc::new(crate::memory::MemoryStore::new("w/windows"));
        (
            WindowedStore::new("w", primary, Arc::clone(&index) as _),
            index,
        )
    }

    #[test]
    fn an_index_entry_left_by_an_interrupted_put_is_skipped_and_expired_uncounted() {
        let (windows, index) = memory_windows();
        windows.put(b"k", 5, b"v").unwrap();
        // What a crash between a put's two writes leaves behind.
        index.put(&encode_index_key(3, b"lost"), &[]).unwrap();

        assert_eq!(
            windows.fetch_all(i64::MIN, i64::MAX).unwrap(),
            vec![(b"k".to_vec(), 5, b"v".to_vec())]
        );
        assert_eq!(windows.fetch(b"lost", i64::MIN, i64::MAX).unwrap(), vec![]);
        // Expire removes the leftover but counts only the real window.
        assert_eq!(windows.expire(10).unwrap(), 1);
        assert_eq!(index.approximate_len(), 0);
        assert_eq!(windows.approximate_len(), 0);
    }

    #[test]
    fn an_undecodable_index_key_is_reported_as_corruption() {
        let (windows, index) = memory_windows();
        index.put(&[1, 2, 3], &[]).unwrap();
        let error = windows.fetch_all(i64::MIN, i64::MAX).unwrap_err();
        assert!(matches!(error, StateError::Corrupted { .. }), "{error:?}");
        assert!(error.needs_rebuild());
        assert!(matches!(
            windows.expire(i64::MAX),
            Err(StateError::Corrupted { .. })
        ));
    }

    #[test]
    fn extreme_and_negative_starts_fetch_in_numeric_order() {
        let (windows, _) = memory_windows();
        for start in [i64::MAX, 0, -1, i64::MIN, 1] {
            windows.put(b"k", start, &start.to_be_bytes()).unwrap();
        }
        let starts: Vec<i64> = windows
            .fetch(b"k", i64::MIN, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(starts, vec![i64::MIN, -1, 0, 1, i64::MAX]);
        assert_eq!(windows.fetch(b"k", -1, 0).unwrap().len(), 2);
        assert_eq!(windows.fetch(b"k", i64::MAX, i64::MAX).unwrap().len(), 1);
        assert_eq!(windows.fetch(b"k", 1, -1).unwrap(), vec![]);
        assert_eq!(windows.expire(i64::MIN).unwrap(), 0);
        assert_eq!(windows.expire(0).unwrap(), 2);
        let all: Vec<i64> = windows
            .fetch_all(i64::MIN, i64::MAX)
            .unwrap()
            .into_iter()
            .map(|(_, s, _)| s)
            .collect();
        assert_eq!(all, vec![0, 1, i64::MAX]);
    }

    #[test]
    fn keys_that_prefix_each_other_keep_their_windows_apart() {
        let (windows, _) = memory_windows();
        for key in [&b""[..], b"a", b"ab", b"a\0", b"a\xff", b"b"] {
            windows.put(key, 7, key).unwrap();
        }
        for key in [&b""[..], b"a", b"ab", b"a\0", b"a\xff", b"b"] {
            assert_eq!(
                windows.fetch(key, i64::MIN, i64::MAX).unwrap(),
                vec![(7, key.to_vec())]
            );
        }
        // Same start: ordered by key bytes.
        let keys: Vec<Vec<u8>> = windows
            .fetch_all(7, 7)
            .unwrap()
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        let expected: [&[u8]; 6] = [b"", b"a", b"a\0", b"ab", b"a\xff", b"b"];
        assert_eq!(keys, expected.map(<[u8]>::to_vec));
    }

    #[test]
    fn index_upper_bound_is_unbounded_only_at_max() {
        assert_eq!(index_upper_bound(i64::MAX), None);
        assert_eq!(index_upper_bound(-1), Some(encode_start(0).to_vec()));
    }
}
