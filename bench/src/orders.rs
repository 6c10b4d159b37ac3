//! The benchmark's data: coffee orders from a seeded generator, and the
//! stateless job's logic shared by every system under test.

use serde::{Deserialize, Serialize};

/// Drinks on the menu and their preparation time in seconds.
pub(crate) const MENU: [(&str, u32); 4] = [
    ("Espresso", 30),
    ("Latte", 60),
    ("Cappuccino", 90),
    ("Americano", 45),
];

/// An order as the producer writes it (~150 bytes of JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Order {
    /// Order id, the record key.
    pub(crate) id: String,
    /// Who ordered.
    pub(crate) customer_name: String,
    /// What they ordered.
    pub(crate) coffee_type: String,
    /// Always `pending` when placed.
    pub(crate) status: String,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339.
    pub(crate) updated_at: String,
}

/// The stateless job's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProcessedOrder {
    /// The order's id.
    pub(crate) order_id: String,
    /// Who ordered.
    pub(crate) customer_name: String,
    /// What they ordered.
    pub(crate) coffee_type: String,
    /// `processing`.
    pub(crate) status: String,
    /// When it was processed, RFC 3339.
    pub(crate) processed_at: String,
    /// Seconds to prepare, from the menu.
    pub(crate) preparation_time: u32,
}

/// A small, fast, seeded generator (xorshift64*), so every run loads the same data.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `count` orders as (key, JSON), from `customers` customers; one in 200
/// names a drink not on the menu, which the job filters out.
pub(crate) fn generate(count: u64, customers: u64, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| {
            let customer = rng.next_u64() % customers;
            let r = rng.next_u64();
            let coffee_type = if r.is_multiple_of(200) {
                "Mocha"
            } else {
                MENU[(r % 4) as usize].0
            };
            let order = Order {
                id: format!("ord-{i:010}"),
                customer_name: format!("customer-{customer:05}"),
                coffee_type: coffee_type.to_owned(),
                status: "pending".to_owned(),
                created_at: "2026-11-25T16:00:00Z".to_owned(),
                updated_at: "2026-11-25T16:00:00Z".to_owned(),
            };
            (
                order.id.clone(),
                serde_json::to_vec(&order).unwrap_or_default(),
            )
        })
        .collect()
}

/// How many of `generate(count, …, seed)` are valid.
pub(crate) fn expected_valid(count: u64, customers: u64, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    (0..count)
        .filter(|_| {
            let _customer = rng.next_u64() % customers;
            !rng.next_u64().is_multiple_of(200)
        })
        .count() as u64
}

/// Validation: a customer, and a drink on the menu.
pub(crate) fn is_valid(order: &Order) -> bool {
    !order.customer_name.trim().is_empty()
        && MENU.iter().any(|(drink, _)| *drink == order.coffee_type)
}

/// Enrichment: the preparation time from the menu.
pub(crate) fn enrich(order: Order, processed_at: &str) -> ProcessedOrder {
    let preparation_time = MENU
        .iter()
        .find(|(drink, _)| *drink == order.coffee_type)
        .map_or(0, |(_, s)| *s);
    ProcessedOrder {
        order_id: order.id,
        customer_name: order.customer_name,
        coffee_type: order.coffee_type,
        status: "processing".to_owned(),
        processed_at: processed_at.to_owned(),
        preparation_time,
    }
}
