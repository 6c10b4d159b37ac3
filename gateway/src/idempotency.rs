//! `Idempotency-Key` handling: a deterministic order id per key, and
//! single-flight placing within a process.
//!
//! The order id is the UUID v5 of the key in [`ORDER_ID_NAMESPACE`], so
//! every replica derives the same id for the same key and the pipeline,
//! which ignores a second `placed` for an id it knows, never creates a
//! second order. Within one process, concurrent requests with one key
//! share one attempt ([`Slot::placed`]) and get the identical order; a key
//! seen with a different body is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use proto::coffee::v1::Order;
use uuid::Uuid;

use crate::error::{ApiError, ErrorKind};

/// The namespace of order ids derived from idempotency keys
/// (`6d1f5c1e-7a0b-5c8e-9f3a-c0ffee000001`).
pub(crate) const ORDER_ID_NAMESPACE: Uuid =
    Uuid::from_u128(0x6d1f_5c1e_7a0b_5c8e_9f3a_c0ff_ee00_0001);

/// The order id an idempotency key stands for.
pub(crate) fn order_id_for(key: &str) -> String {
    Uuid::new_v5(&ORDER_ID_NAMESPACE, key.as_bytes()).to_string()
}

/// The message for a key reused with another body.
pub(crate) fn reused(key: &str) -> ApiError {
    ApiError::new(
        ErrorKind::IdempotencyKeyReused,
        format!(
            "Idempotency-Key {:?} was already used for a different order; use a new key for a new order",
            crate::validate::truncate(key, 64)
        ),
    )
}

/// One key's order: what it was for, and the placed order once placed.
pub(crate) struct Slot {
    pub(crate) order_id: String,
    pub(crate) customer_name: String,
    pub(crate) coffee_type: String,
    /// Fixed when the key is first seen, so a retry after an unknown
    /// outcome writes the same record.
    pub(crate) created_at: DateTime<Utc>,
    /// Set once Kafka acknowledged; concurrent requests wait on the first
    /// attempt, and a failed attempt leaves it empty for the next one.
    pub(crate) placed: tokio::sync::OnceCell<Order>,
    inserted: Instant,
}

impl Slot {
    /// Whether an order request is the one this key was first used for.
    pub(crate) fn matches(&self, customer_name: &str, coffee_type: &str) -> bool {
        self.customer_name == customer_name && self.coffee_type == coffee_type
    }
}

struct Inner {
    slots: HashMap<String, Arc<Slot>>,
    /// Keys in insertion order, for expiry and the size bound.
    order: VecDeque<(Instant, String)>,
}

/// Keys seen recently by this process, bounded in number and age.
pub(crate) struct IdempotencyCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

impl IdempotencyCache {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// The slot for `key`, created for this body if the key is new.
    ///
    /// # Errors
    ///
    /// `idempotency_key_reused` when the key was seen with another body.
    pub(crate) fn claim(
        &self,
        key: &str,
        customer_name: &str,
        coffee_type: &str,
    ) -> Result<Arc<Slot>, ApiError> {
        self.claim_at(key, customer_name, coffee_type, Instant::now())
    }

    fn claim_at(
        &self,
        key: &str,
        customer_name: &str,
        coffee_type: &str,
        now: Instant,
    ) -> Result<Arc<Slot>, ApiError> {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.evict(&mut inner, now);
        if let Some(slot) = inner.slots.get(key) {
            return if slot.matches(customer_name, coffee_type) {
                Ok(Arc::clone(slot))
            } else {
                Err(reused(key))
            };
        }
        let slot = Arc::new(Slot {
            order_id: order_id_for(key),
            customer_name: customer_name.to_owned(),
            coffee_type: coffee_type.to_owned(),
            created_at: Utc::now(),
            placed: tokio::sync::OnceCell::new(),
            inserted: now,
        });
        inner.slots.insert(key.to_owned(), Arc::clone(&slot));
        inner.order.push_back((now, key.to_owned()));
        Ok(slot)
    }

    /// Forgets `key` if it still maps to `slot` (the key turned out to
    /// belong to another body, known elsewhere).
    pub(crate) fn forget(&self, key: &str, slot: &Arc<Slot>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            inner.slots.remove(key);
        }
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((inserted, key)) = inner.order.front() {
            let expired = now.duration_since(*inserted) > self.ttl;
            if !expired && inner.slots.len() < self.capacity {
                break;
            }
            // Remove the map entry only if it is this queue entry's slot
            // (a forgotten key may have been claimed again since).
            if inner
                .slots
                .get(key)
                .is_some_and(|slot| slot.inserted == *inserted)
            {
                inner.slots.remove(key);
            }
            inner.order.pop_front();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|inner| inner.slots.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(order_id_for("k1"), order_id_for("k1"));
        assert_ne!(order_id_for("k1"), order_id_for("k2"));
        assert_eq!(
            Uuid::parse_str(&order_id_for("k1"))
                .unwrap()
                .get_version_num(),
            5
        );
    }

    #[test]
    fn a_key_is_bound_to_its_first_body() {
        let cache = IdempotencyCache::new(10, Duration::from_secs(60));
        let first = cache.claim("k", "Ada", "Latte").unwrap();
        let again = cache.claim("k", "Ada", "Latte").unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        let error = cache.claim("k", "Ada", "Espresso").err().unwrap();
        assert_eq!(error.kind, ErrorKind::IdempotencyKeyReused);
        cache.forget("k", &first);
        assert!(cache.claim("k", "Ada", "Espresso").is_ok());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = IdempotencyCache::new(3, Duration::from_secs(60));
        for i in 0..10 {
            cache.claim(&format!("k{i}"), "Ada", "Latte").unwrap();
        }
        assert_eq!(cache.len(), 3);
        let cache = IdempotencyCache::new(100, Duration::from_secs(60));
        let start = Instant::now();
        cache.claim_at("old", "Ada", "Latte", start).unwrap();
        cache
            .claim_at("new", "Ada", "Latte", start + Duration::from_secs(61))
            .unwrap();
        assert_eq!(cache.len(), 1);
    }
}
