//! The coffee topology on the engine's test driver, with several
//! partitions: the order lifecycle, cancels and claims racing, repeated
//! commands, rejected records, statistics and demand.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use coffee::model::{CustomerStats, Demand, OrderState};
use coffee::topology::{self, STATS_STORE, STATUS_STORE, TopologyConfig};
use engine::serdes::{Json, Utf8};
use engine::{TestDriver, TestInputTopic, TestOutputTopic};
use proto::events::{CommandKind, OrderCommand, ProcessedOrder, Status};

struct Shop {
    driver: TestDriver,
    orders: TestInputTopic<String, OrderCommand>,
    processed: TestOutputTopic<String, ProcessedOrder>,
}

/// 2026-01-01T08:00:00Z plus `seconds`.
fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_254_400 + seconds, 0).unwrap()
}

impl Shop {
    fn new() -> Self {
        let topology = topology::build(&TopologyConfig::default(), None).unwrap();
        let driver = TestDriver::builder(topology)
            .default_partitions(3)
            .build()
            .unwrap();
        let orders = driver.input_topic("coffee_orders", Utf8, Json::<OrderCommand>::new());
        let processed =
            driver.output_topic("processed_orders", Utf8, Json::<ProcessedOrder>::new());
        Self {
            driver,
            orders,
            processed,
        }
    }

    fn send(&mut self, command: OrderCommand) {
        let timestamp = command.updated_at.timestamp_millis();
        self.driver
            .pipe_at(&self.orders, command.id.clone(), command, timestamp)
            .unwrap();
    }

    fn place(&mut self, id: &str, customer: &str, drink: &str, second: i64) {
        self.send(OrderCommand::placed(id, customer, drink, at(second)));
    }

    fn command(&mut self, kind: CommandKind, id: &str, second: i64) {
        let command = OrderCommand::about(kind, id, at(second));
        let command = match kind {
            CommandKind::Claimed | CommandKind::Brewed => command.by("barista-1"),
            _ => command,
        };
        self.send(command);
    }

    fn decisions(&mut self) -> Vec<ProcessedOrder> {
        self.driver
            .read_key_values(&self.processed)
            .unwrap()
            .into_iter()
            .map(|(key, decision)| {
                assert_eq!(key, decision.order_id, "decisions are keyed by order id");
                decision
            })
            .collect()
    }

    fn status(&self, id: &str) -> Option<Status> {
        self.driver
            .store_get(
                STATUS_STORE,
                &id.to_owned(),
                Utf8,
                Json::<OrderState>::new(),
            )
            .unwrap()
            .map(|order| order.status)
    }
}

fn statuses(decisions: &[ProcessedOrder]) -> Vec<(Status, Option<CommandKind>)> {
    decisions.iter().map(|d| (d.status, d.refused)).collect()
}

#[test]
fn an_order_is_accepted_claimed_brewed_and_completed() {
    let mut shop = Shop::new();
    shop.place("o-1", "Ada", "cappuccino", 0);
    shop.command(CommandKind::Claimed, "o-1", 1);
    shop.command(CommandKind::Brewed, "o-1", 2);
    let decisions = shop.decisions();
    assert_eq!(
        statuses(&decisions),
        [
            (Status::Processing, None),
            (Status::Brewing, None),
            (Status::Completed, None)
        ]
    );
    assert!(
        decisions
            .iter()
            .all(|d| d.coffee_type == "Cappuccino" && d.preparation_time == 90)
    );
    assert_eq!(decisions[0].created_at, Some(at(0)));
    assert_eq!(shop.status("o-1"), Some(Status::Completed));
}

#[test]
fn a_cancel_before_the_claim_wins_and_the_claim_is_refused() {
    let mut shop = Shop::new();
    shop.place("o-1", "Ada", "Latte", 0);
    shop.command(CommandKind::CancelRequested, "o-1", 1);
    shop.command(CommandKind::Claimed, "o-1", 2);
    shop.command(CommandKind::Brewed, "o-1", 3);
    assert_eq!(
        statuses(&shop.decisions()),
        [
            (Status::Processing, None),
            (Status::Cancelled, None),
            (Status::Cancelled, Some(CommandKind::Claimed)),
            (Status::Cancelled, Some(CommandKind::Brewed)),
        ]
    );
    assert_eq!(shop.status("o-1"), Some(Status::Cancelled));
}

#[test]
fn a_cancel_after_the_claim_or_completion_is_refused_with_a_reason() {
    let mut shop = Shop::new();
    shop.place("o-1", "Ada", "Latte", 0);
    shop.command(CommandKind::Claimed, "o-1", 1);
    shop.command(CommandKind::CancelRequested, "o-1", 2);
    shop.command(CommandKind::Brewed, "o-1", 3);
    shop.command(CommandKind::CancelRequested, "o-1", 4);
    let decisions = shop.decisions();
    assert_eq!(
        statuses(&decisions),
        [
            (Status::Processing, None),
            (Status::Brewing, None),
            (Status::Brewing, Some(CommandKind::CancelRequested)),
            (Status::Completed, None),
            (Status::Completed, Some(CommandKind::CancelRequested)),
        ]
    );
    assert_eq!(
        decisions[4].reason.as_deref(),
        Some("the order is already completed; it can no longer be cancelled")
    );
}

#[test]
fn repeated_commands_add_no_decisions() {
    let mut shop = Shop::new();
    for _ in 0..3 {
        shop.place("o-1", "Ada", "Latte", 0);
    }
    shop.command(CommandKind::Claimed, "o-1", 1);
    shop.command(CommandKind::Claimed, "o-1", 1);
    shop.command(CommandKind::Brewed, "o-1", 2);
    shop.command(CommandKind::Brewed, "o-1", 2);
    assert_eq!(
        statuses(&shop.decisions()),
        [
            (Status::Processing, None),
            (Status::Brewing, None),
            (Status::Completed, None)
        ]
    );
    assert!(shop.driver.dead_letters().is_empty());
}

#[test]
fn bad_records_are_rejected_with_their_reason_and_do_not_block_others() {
    let mut shop = Shop::new();
    let raw = |shop: &mut Shop, key: &str, value: &[u8]| {
        shop.driver
            .pipe_raw(
                "coffee_orders",
                None,
                Some(key.as_bytes().to_vec()),
                Some(value.to_vec()),
                0,
            )
            .unwrap();
    };
    raw(&mut shop, "o-1", b"{not json");
    raw(
        &mut shop,
        "o-2",
        br#"{"id":"o-2","customer_name":"Ada","coffee_type":"Tea","updated_at":"2026-01-01T08:00:00Z"}"#,
    );
    raw(
        &mut shop,
        "o-3",
        br#"{"id":"o-3","customer_name":"  ","coffee_type":"Latte","updated_at":"2026-01-01T08:00:00Z"}"#,
    );
    shop.command(CommandKind::CancelRequested, "o-4", 0);
    shop.place("o-5", "Ada", "Latte", 0);
    raw(
        &mut shop,
        "o-5",
        br#"{"id":"o-5","customer_name":"Bob","coffee_type":"Latte","updated_at":"2026-01-01T08:00:00Z"}"#,
    );
    raw(
        &mut shop,
        "o-6",
        br#"{"id":"o-7","customer_name":"Bob","coffee_type":"Latte","updated_at":"2026-01-01T08:00:00Z"}"#,
    );
    // The one good order still went through.
    assert_eq!(statuses(&shop.decisions()), [(Status::Processing, None)]);
    let rejected: Vec<(String, String)> = shop
        .driver
        .dead_letters()
        .into_iter()
        .map(|d| (String::from_utf8(d.key.unwrap()).unwrap(), d.message))
        .collect();
    let reasons: Vec<&str> = rejected.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(rejected.len(), 6, "{rejected:?}");
    assert!(reasons[0].contains("value"), "{reasons:?}");
    assert!(reasons[1].contains("not on the menu"), "{reasons:?}");
    assert!(reasons[2].contains("customer_name is empty"), "{reasons:?}");
    assert!(reasons[3].contains("never placed"), "{reasons:?}");
    assert!(reasons[4].contains("Idempotency-Key"), "{reasons:?}");
    assert!(reasons[5].contains("not the order id"), "{reasons:?}");
    // Rejected records keep their original key, for tracing them back.
    assert_eq!(rejected[3].0, "o-4");
}

#[test]
fn statistics_follow_each_customers_orders() {
    let mut shop = Shop::new();
    shop.place("o-1", "Ada", "Latte", 0);
    shop.place("o-2", "Ada", "Espresso", 1);
    shop.place("o-3", "Ada", "Espresso", 2);
    shop.place("o-4", "Bob", "Americano", 3);
    shop.command(CommandKind::Claimed, "o-1", 4);
    shop.command(CommandKind::Brewed, "o-1", 5);
    shop.command(CommandKind::CancelRequested, "o-2", 6);
    shop.command(CommandKind::CancelRequested, "o-1", 7); // refused: not counted
    let stats = |shop: &Shop, customer: &str| {
        shop.driver
            .store_get(
                STATS_STORE,
                &customer.to_owned(),
                Utf8,
                Json::<CustomerStats>::new(),
            )
            .unwrap()
            .unwrap()
    };
    let ada = stats(&shop, "Ada");
    assert_eq!(
        (
            ada.orders_placed,
            ada.orders_completed,
            ada.orders_cancelled
        ),
        (3, 1, 1)
    );
    assert_eq!(ada.favourite_drink, "Espresso");
    let bob = stats(&shop, "Bob");
    assert_eq!(
        (bob.orders_placed, bob.favourite_drink.as_str()),
        (1, "Americano")
    );
    let published = shop
        .driver
        .output_topic("customer_stats", Utf8, Json::<CustomerStats>::new());
    let last_for_ada = shop
        .driver
        .read_key_values(&published)
        .unwrap()
        .into_iter()
        .rfind(|(customer, _)| customer == "Ada")
        .unwrap();
    assert_eq!(last_for_ada.1, ada);
}

#[test]
fn demand_is_counted_per_drink_per_minute_from_accepted_orders() {
    let mut shop = Shop::new();
    shop.place("o-1", "Ada", "Latte", 0);
    shop.place("o-2", "Bob", "Latte", 30);
    shop.place("o-3", "Cy", "Espresso", 59);
    shop.place("o-4", "Di", "Latte", 61);
    shop.place("o-4", "Di", "Latte", 61); // a repeat: not counted twice
    shop.send({
        let mut off_menu = OrderCommand::placed("o-5", "Ed", "Tea", at(62));
        off_menu.coffee_type = "Tea".into();
        off_menu
    });
    let demand = shop
        .driver
        .output_topic("coffee_demand", Utf8, Json::<Demand>::new());
    let mut latest = std::collections::BTreeMap::new();
    for (key, record) in shop.driver.read_key_values(&demand).unwrap() {
        latest.insert(key, record.orders);
    }
    assert_eq!(
        latest.into_iter().collect::<Vec<_>>(),
        [
            ("Espresso@2026-01-01T08:00:00Z".to_owned(), 1),
            ("Latte@2026-01-01T08:00:00Z".to_owned(), 2),
            ("Latte@2026-01-01T08:01:00Z".to_owned(), 1),
        ]
    );
}

#[test]
fn the_topology_description_matches_the_golden_files() {
    let topology = topology::build(&TopologyConfig::default(), None).unwrap();
    let description = topology.describe();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (file, text) in [
        ("coffee.txt", description.to_string()),
        ("coffee.mmd", description.to_mermaid()),
    ] {
        let path = dir.join(file);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{} is missing; run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            text, expected,
            "{file} changed; review and run with UPDATE_GOLDEN=1"
        );
    }
}
