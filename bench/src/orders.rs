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

/// How orders are spread over customers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Keys {
    /// Every customer equally likely (the same orders as [`generate`]).
    Uniform,
    /// Zipf-distributed customers (exponent 1): customer 0 places about
    /// 10 % of 10,000 customers' orders, the top 1 % of customers about 40 %.
    Zipf,
}

impl Keys {
    /// The name used in topic names and tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Zipf => "zipf",
        }
    }
}

/// One generated record: key, JSON value, timestamp (ms).
pub(crate) struct Generated {
    /// Order id.
    pub(crate) key: String,
    /// The order as JSON.
    pub(crate) value: Vec<u8>,
    /// The record's timestamp.
    pub(crate) timestamp: i64,
}

/// What a correct system writes for a data set.
#[derive(Debug, Default)]
pub(crate) struct Expected {
    /// Stateless: how many orders pass validation.
    pub(crate) valid: u64,
    /// Stateful: (orders, preparation seconds) per customer.
    pub(crate) per_customer: std::collections::HashMap<String, (u64, u64)>,
    /// Windowed: orders per `<coffee type>@<window start ms>`.
    pub(crate) per_window: std::collections::HashMap<String, u64>,
}

/// The windowed job's window size.
pub(crate) const WINDOW_MS: i64 = 60_000;

/// `count` orders from `customers` customers with `keys`, timestamped from
/// `start_ms` (a multiple of [`WINDOW_MS`]) at even steps over at most 50
/// minutes (the broker refuses timestamps more than an hour ahead), and
/// what every job must output for them.
pub(crate) fn dataset(
    count: u64,
    customers: u64,
    seed: u64,
    keys: Keys,
    start_ms: i64,
) -> (Vec<Generated>, Expected) {
    let customers = customers.max(1);
    let zipf_cdf: Vec<f64> = match keys {
        Keys::Uniform => Vec::new(),
        Keys::Zipf => {
            let mut acc = 0.0;
            let mut cdf: Vec<f64> = (1..=customers)
                .map(|rank| {
                    acc += 1.0 / rank as f64;
                    acc
                })
                .collect();
            for p in &mut cdf {
                *p /= acc;
            }
            cdf
        }
    };
    let span_ms = count.min(3_000_000) as i64;
    let mut rng = Rng::new(seed);
    let mut expected = Expected::default();
    let records = (0..count)
        .map(|i| {
            let draw = rng.next_u64();
            let customer = match keys {
                Keys::Uniform => draw % customers,
                Keys::Zipf => {
                    let u = (draw >> 11) as f64 / (1u64 << 53) as f64;
                    zipf_cdf
                        .partition_point(|p| *p < u)
                        .min(customers as usize - 1) as u64
                }
            };
            let r = rng.next_u64();
            let (coffee_type, seconds) = if r.is_multiple_of(200) {
                ("Mocha", 0)
            } else {
                MENU[(r % 4) as usize]
            };
            let order = Order {
                id: format!("ord-{i:010}"),
                customer_name: format!("customer-{customer:05}"),
                coffee_type: coffee_type.to_owned(),
                status: "pending".to_owned(),
                created_at: "2026-11-25T16:00:00Z".to_owned(),
                updated_at: "2026-11-25T16:00:00Z".to_owned(),
            };
            let timestamp = start_ms + (i as i64 * span_ms) / count.max(1) as i64;
            if seconds > 0 {
                expected.valid += 1;
            }
            let stats = expected
                .per_customer
                .entry(order.customer_name.clone())
                .or_default();
            stats.0 += 1;
            stats.1 += u64::from(seconds);
            let window = timestamp - timestamp.rem_euclid(WINDOW_MS);
            *expected
                .per_window
                .entry(format!("{coffee_type}@{window}"))
                .or_default() += 1;
            Generated {
                key: order.id.clone(),
                value: serde_json::to_vec(&order).unwrap_or_default(),
                timestamp,
            }
        })
        .collect();
    (records, expected)
}

/// The stateful job's aggregate per customer, as every system writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stats {
    /// Orders counted.
    pub(crate) orders: u64,
    /// Their preparation time, seconds.
    pub(crate) preparation_seconds: u64,
}

/// Preparation seconds of a drink (0 when it is not on the menu).
pub(crate) fn preparation_seconds(coffee_type: &str) -> u32 {
    MENU.iter()
        .find(|(drink, _)| *drink == coffee_type)
        .map_or(0, |(_, s)| *s)
}
