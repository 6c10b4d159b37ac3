//! The coffee topology: every command about an order is decided by the
//! task that owns the order's partition; decisions feed the customer
//! statistics and the demand per drink per minute.
//!
//! ```text
//! coffee_orders ─▶ validate ─▶ order-status (status table) ─▶ decisions ─▶ processed_orders
//!      │ (malformed, off-menu,        │ (unknown order,         ├─▶ by customer ─▶ customer-stats ─▶ customer_stats
//!      ▼  unknown order …)            ▼  reused id …)           └─▶ by drink ─▶ coffee-demand (1 min) ─▶ coffee_demand
//!   rejected_orders ◀─────────────────┘
//! ```
//!
//! ```
//! use coffee::topology::{TopologyConfig, build};
//! use engine::serdes::{Json, Utf8};
//! use engine::TestDriver;
//! use proto::events::{OrderCommand, ProcessedOrder, Status};
//!
//! let mut driver = TestDriver::new(build(&TopologyConfig::default(), None)?)?;
//! let orders = driver.input_topic("coffee_orders", Utf8, Json::<OrderCommand>::new());
//! let placed = OrderCommand::placed("o-1", "Ada", "latte", chrono::Utc::now());
//! driver.pipe(&orders, "o-1".into(), placed)?;
//! let processed = driver.output_topic("processed_orders", Utf8, Json::<ProcessedOrder>::new());
//! let decisions = driver.read_key_values(&processed)?;
//! assert_eq!(decisions[0].1.status, Status::Processing);
//! assert_eq!((decisions[0].1.coffee_type.as_str(), decisions[0].1.preparation_time), ("Latte", 60));
//! # Ok::<(), engine::EngineError>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::operators::TimeWindows;
use engine::serdes::{Json, Utf8};
use engine::{StreamsBuilder, Topology};
use proto::events::{self, OrderCommand, ProcessedOrder, Status};
use proto::menu::Menu;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::model::{self, CustomerStats, Demand, OrderState};

/// The status table's store: order id → [`OrderState`].
pub const STATUS_STORE: &str = "order-status";
/// The customer statistics' store: customer name → [`CustomerStats`].
pub const STATS_STORE: &str = "customer-stats";
/// The demand windows' store: drink and minute → orders.
pub const DEMAND_STORE: &str = "coffee-demand";
/// The demand windows' size.
pub const DEMAND_WINDOW: Duration = Duration::from_secs(60);

/// What the topology reads and writes, and the menu it checks orders against.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyConfig {
    /// Commands about orders (`KAFKA_INPUT_TOPIC`).
    #[serde(default = "default_input_topic")]
    pub input_topic: String,
    /// Decisions about orders (`KAFKA_OUTPUT_TOPIC`).
    #[serde(default = "default_output_topic")]
    pub output_topic: String,
    /// Commands that could not be accepted, with the reason in headers.
    #[serde(default = "default_rejected_topic")]
    pub rejected_topic: String,
    /// Per-customer statistics.
    #[serde(default = "default_stats_topic")]
    pub stats_topic: String,
    /// Orders per drink per minute.
    #[serde(default = "default_demand_topic")]
    pub demand_topic: String,
    /// Late orders still counted in their minute, in seconds.
    #[serde(default = "default_demand_grace_s")]
    pub demand_grace_s: u64,
    /// How long demand windows stay queryable, in seconds.
    #[serde(default = "default_demand_retention_s")]
    pub demand_retention_s: u64,
    /// Drinks and their preparation times in seconds.
    #[serde(default)]
    pub menu: Menu,
}

pub(crate) fn default_input_topic() -> String {
    events::ORDERS_TOPIC.into()
}
pub(crate) fn default_output_topic() -> String {
    events::PROCESSED_TOPIC.into()
}
pub(crate) fn default_rejected_topic() -> String {
    events::REJECTED_TOPIC.into()
}
pub(crate) fn default_stats_topic() -> String {
    events::CUSTOMER_STATS_TOPIC.into()
}
pub(crate) fn default_demand_topic() -> String {
    events::DEMAND_TOPIC.into()
}
pub(crate) fn default_demand_grace_s() -> u64 {
    10
}
pub(crate) fn default_demand_retention_s() -> u64 {
    24 * 60 * 60
}

impl Default for TopologyConfig {
    fn default() -> Self {
        Self {
            input_topic: default_input_topic(),
            output_topic: default_output_topic(),
            rejected_topic: default_rejected_topic(),
            stats_topic: default_stats_topic(),
            demand_topic: default_demand_topic(),
            demand_grace_s: default_demand_grace_s(),
            demand_retention_s: default_demand_retention_s(),
            menu: Menu::default(),
        }
    }
}

/// Builds the coffee topology. Every decision is also sent to `watchers`
/// when given (the query service's `WatchOrders`); sending never blocks.
pub fn build(
    config: &TopologyConfig,
    watchers: Option<broadcast::Sender<ProcessedOrder>>,
) -> engine::Result<Topology> {
    let menu = Arc::new(config.menu.clone());
    let builder = StreamsBuilder::new();
    builder.dead_letter_topic(&config.rejected_topic);

    let validating = Arc::clone(&menu);
    let commands = builder
        .stream(&config.input_topic, Utf8, Json::<OrderCommand>::new())
        .try_map_values(move |command| model::validate(command, &validating))
        .name("validate");

    let deciding = Arc::clone(&menu);
    let decisions = commands
        .group_by_key(Utf8, Json::<OrderCommand>::new())
        .try_aggregate(
            STATUS_STORE,
            Json::<OrderState>::new(),
            move |id: &String, command, current| {
                model::decide(id, command, current, &deciding, Utc::now())
            },
        )
        .to_stream()
        .filter_map(|id, order| model::decision(&order).map(|decision| (id, decision)))
        .name("decisions");
    let decisions = match watchers {
        Some(watchers) => decisions
            .peek(move |_id, decision| {
                // No receiver is fine: nobody is watching.
                let _ = watchers.send(decision.clone());
            })
            .name("notify-watchers"),
        None => decisions,
    };
    decisions
        .clone()
        .to(&config.output_topic, Utf8, Json::<ProcessedOrder>::new());

    decisions
        .clone()
        .filter(|_id, decision| model::counts_for_stats(decision))
        .name("stats-events")
        .select_key(|_id, decision| decision.customer_name.clone())
        .name("by-customer")
        .group_by_key(Utf8, Json::<ProcessedOrder>::new())
        .aggregate(
            STATS_STORE,
            Json::<CustomerStats>::new(),
            CustomerStats::default,
            |_customer, decision, stats| model::add_to_stats(stats, &decision),
        )
        .to_stream()
        .to(&config.stats_topic, Utf8, Json::<CustomerStats>::new());

    let windows = TimeWindows::tumbling(DEMAND_WINDOW)
        .grace(Duration::from_secs(config.demand_grace_s))
        .retention(Duration::from_secs(config.demand_retention_s));
    decisions
        .filter(|_id, decision| decision.status == Status::Processing && decision.refused.is_none())
        .name("accepted-orders")
        .select_key(|_id, decision| decision.coffee_type.clone())
        .name("by-drink")
        .group_by_key(Utf8, Json::<ProcessedOrder>::new())
        .windowed_by(windows)
        .count(DEMAND_STORE)
        .to_stream()
        .map(|window, orders| {
            let demand = Demand {
                coffee_type: window.key,
                window_start: millis_to_time(window.start),
                window_end: millis_to_time(window.end),
                orders,
            };
            let key = format!(
                "{}@{}",
                demand.coffee_type,
                demand
                    .window_start
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            (key, demand)
        })
        .name("demand-records")
        .to(&config.demand_topic, Utf8, Json::<Demand>::new());

    builder.build()
}

/// A time from milliseconds since the epoch (clamped to what chrono holds).
pub fn millis_to_time(millis: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::<Utc>::MIN_UTC)
}
