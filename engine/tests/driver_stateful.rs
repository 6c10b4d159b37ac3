//! Stateful operators on the test driver: counts, reductions and aggregates
//! per key across partitions, re-keying through a repartition named after
//! the store, changelog records in the task's partition, and store writes
//! that only take effect when their record is fully processed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use engine::serdes::{Json, U64, Utf8};
use engine::{ErrorPolicy, StreamsBuilder, TestDriver};

/// 1,000 orders over 4 partitions, counted per drink after a re-key: the
/// store holds the true counts, the aggregation repartitioned through a
/// topic named after its store, and each update was emitted in order.
#[test]
fn count_after_group_by_repartitions_by_the_new_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .group_by(|_id: &String, drink: &String| drink.clone(), Utf8, Utf8)
        .count("orders-per-drink")
        .to_stream()
        .to("drink-counts", Utf8, U64);
    let topology = builder.build().unwrap();
    let description = topology.describe().to_string();
    assert!(
        description.contains("${application.id}-orders-per-drink-repartition"),
        "{description}"
    );
    let mut driver = TestDriver::builder(topology)
        .default_partitions(4)
        .build()
        .unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    let drinks = ["latte", "mocha", "espresso", "americano", "cappuccino"];
    for i in 0..1_000 {
        driver
            .pipe(&orders, format!("order-{i}"), drinks[i % 5].to_owned())
            .unwrap();
    }
    for drink in drinks {
        let count = driver
            .store_get("orders-per-drink", &drink.to_owned(), Utf8, U64)
            .unwrap();
        assert_eq!(count, Some(200), "{drink}");
    }
    let counts = driver
        .read_records(&driver.output_topic("drink-counts", Utf8, U64))
        .unwrap();
    assert_eq!(counts.len(), 1_000, "one update per record");
    for drink in drinks {
        let updates: Vec<u64> = counts
            .iter()
            .filter(|r| r.key == drink)
            .map(|r| r.value)
            .collect();
        assert_eq!(
            updates,
            (1..=200).collect::<Vec<u64>>(),
            "{drink}: updates in order"
        );
    }
}

/// Every store write also lands in `<application-id>-<store>-changelog`,
/// in the partition of the task that wrote it, with the latest value.
#[test]
fn store_writes_go_to_the_changelog_in_the_task_partition() {
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .group_by_key(Utf8, Utf8)
        .count("per-customer");
    let mut driver = TestDriver::builder(builder.build().unwrap())
        .application_id("shop")
        .default_partitions(3)
        .build()
        .unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    for customer in ["ada", "bob", "ada", "cy", "ada"] {
        driver
            .pipe(&orders, customer.into(), "latte".into())
            .unwrap();
    }
    let changelog = driver.output_topic("shop-per-customer-changelog", Utf8, U64);
    let records = driver.read_records(&changelog).unwrap();
    assert_eq!(records.len(), 5);
    let ada: Vec<_> = records.iter().filter(|r| r.key == "ada").collect();
    assert_eq!(ada.iter().map(|r| r.value).collect::<Vec<_>>(), [1, 2, 3]);
    let input_partition = engine::partitioner::partition_for_key(b"ada", 3);
    assert!(
        ada.iter().all(|r| r.partition == input_partition),
        "changelog partition = task partition"
    );
}

/// One record that updates the same key twice (a flat_map fan-out) sees its
/// own first write: the count goes up by two, not one.
#[test]
fn a_record_reads_its_own_pending_writes() {
    let builder = StreamsBuilder::new();
    builder
        .stream("pairs", Utf8, Utf8)
        .flat_map(|key: String, _| vec![(key.clone(), 1u8), (key, 2u8)])
        .group_by_key(Utf8, Json::<u8>::new())
        .count("hits");
    let mut driver = TestDriver::new(builder.build().unwrap()).unwrap();
    let pairs = driver.input_topic("pairs", Utf8, Utf8);
    driver.pipe(&pairs, "k".into(), "v".into()).unwrap();
    assert_eq!(
        driver
            .store_get("hits", &"k".to_owned(), Utf8, U64)
            .unwrap(),
        Some(2)
    );
}

/// A record that fails after updating a store leaves the store untouched:
/// no half-applied state, no changelog record, and the dead letter holds it.
#[test]
fn a_failing_record_leaves_the_store_untouched() {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream("orders", Utf8, Utf8)
        .group_by_key(Utf8, Utf8)
        .count("per-customer")
        .to_stream();
    counts
        .map_values(|count: u64| {
            assert!(
                count != 2,
                "the second order of a customer fails downstream"
            );
            count
        })
        .name("check")
        .to("counts", Utf8, U64);
    builder.default_error_policy(ErrorPolicy::DeadLetter);
    let mut driver = TestDriver::builder(builder.build().unwrap())
        .application_id("app")
        .build()
        .unwrap();
    let orders = driver.input_topic("orders", Utf8, Utf8);
    driver.pipe(&orders, "ada".into(), "latte".into()).unwrap();
    driver.pipe(&orders, "ada".into(), "mocha".into()).unwrap();
    assert_eq!(
        driver
            .store_get("per-customer", &"ada".to_owned(), Utf8, U64)
            .unwrap(),
        Some(1)
    );
    assert_eq!(driver.dead_letters().len(), 1);
    assert_eq!(driver.dead_letters()[0].class, "panic");
    let changelog = driver.output_topic("app-per-customer-changelog", Utf8, U64);
    assert_eq!(
        driver.read_key_values(&changelog).unwrap(),
        [("ada".to_string(), 1)]
    );
    // The count went on from 1: the next order makes it 2 and fails again,
    // so nothing was double counted or lost.
    driver.pipe(&orders, "ada".into(), "tea".into()).unwrap();
    assert_eq!(
        driver
            .store_get("per-customer", &"ada".to_owned(), Utf8, U64)
            .unwrap(),
        Some(1)
    );
}

/// reduce and aggregate keep their own types and serdes; a table filter
/// and map_values transform the change stream.
#[test]
fn reduce_aggregate_and_table_operators() {
    #[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Default)]
    struct Stats {
        orders: u32,
        largest: u32,
    }
    let builder = StreamsBuilder::new();
    let amounts = builder.stream("amounts", Utf8, Json::<u32>::new());
    amounts
        .clone()
        .group_by_key(Utf8, Json::<u32>::new())
        .reduce("totals", |a, b| a + b)
        .filter(|_, total| *total >= 10)
        .map_values(|total| format!("big spender: {total}"))
        .to_stream()
        .to("big-spenders", Utf8, Utf8);
    amounts.group_by_key(Utf8, Json::<u32>::new()).aggregate(
        "stats",
        Json::<Stats>::new(),
        Stats::default,
        |_, amount, stats| Stats {
            orders: stats.orders + 1,
            largest: stats.largest.max(amount),
        },
    );
    let mut driver = TestDriver::builder(builder.build().unwrap())
        .default_partitions(2)
        .build()
        .unwrap();
    let input = driver.input_topic("amounts", Utf8, Json::<u32>::new());
    for (customer, amount) in [("ada", 4), ("bob", 1), ("ada", 7), ("bob", 2)] {
        driver.pipe(&input, customer.into(), amount).unwrap();
    }
    assert_eq!(
        driver
            .store_get("totals", &"ada".to_owned(), Utf8, Json::<u32>::new())
            .unwrap(),
        Some(11)
    );
    assert_eq!(
        driver
            .store_entries("stats", Utf8, Json::<Stats>::new())
            .unwrap(),
        [
            (
                "ada".to_string(),
                Stats {
                    orders: 2,
                    largest: 7
                }
            ),
            (
                "bob".to_string(),
                Stats {
                    orders: 2,
                    largest: 2
                }
            )
        ]
    );
    let big = driver.output_topic("big-spenders", Utf8, Utf8);
    assert_eq!(
        driver.read_key_values(&big).unwrap(),
        [("ada".to_string(), "big spender: 11".to_string())]
    );
    assert!(
        driver
            .store_get("no-such-store", &"ada".to_owned(), Utf8, U64)
            .is_err()
    );
}

/// Two stores with one name, or an invalid store name, fail `build()`.
#[test]
fn store_names_are_checked_at_build() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream("orders", Utf8, Utf8);
    stream.clone().group_by_key(Utf8, Utf8).count("same");
    stream.group_by_key(Utf8, Utf8).count("same");
    assert!(builder.build().is_err());

    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .group_by_key(Utf8, Utf8)
        .count("bad name!");
    let error = builder.build().err().unwrap().to_string();
    assert!(error.contains("bad name!"), "{error}");
}

/// Stream–table joins see the table as it is when each stream record is
/// processed: updates before a record join it, updates after do not
/// rewrite it; a left join passes unmatched records with `None`; a deleted
/// key no longer joins.
#[test]
fn joins_see_table_updates_before_and_not_after_each_record() {
    let builder = StreamsBuilder::new();
    let prices = builder.table("prices", Utf8, Utf8, "prices-by-drink");
    let orders = builder.stream("orders", Utf8, Utf8);
    orders
        .clone()
        .join(&prices, |customer: String, price: String| {
            format!("{customer}:{price}")
        })
        .to("inner", Utf8, Utf8);
    orders
        .left_join(&prices, |customer: String, price: Option<String>| {
            format!("{customer}:{}", price.unwrap_or_else(|| "none".into()))
        })
        .to("left", Utf8, Utf8);
    let mut driver = TestDriver::builder(builder.build().unwrap())
        .default_partitions(3)
        .build()
        .unwrap();
    let (orders, prices) = (
        driver.input_topic("orders", Utf8, Utf8),
        driver.input_topic("prices", Utf8, Utf8),
    );
    driver.pipe(&orders, "latte".into(), "ada".into()).unwrap();
    driver.pipe(&prices, "latte".into(), "3.20".into()).unwrap();
    driver.pipe(&orders, "latte".into(), "bob".into()).unwrap();
    driver.pipe(&prices, "latte".into(), "3.40".into()).unwrap();
    driver.pipe(&orders, "latte".into(), "cy".into()).unwrap();
    driver
        .pipe_raw("prices", None, Some(b"latte".to_vec()), None, 0)
        .unwrap();
    driver.pipe(&orders, "latte".into(), "dee".into()).unwrap();
    let inner: Vec<String> = driver
        .read_key_values(&driver.output_topic("inner", Utf8, Utf8))
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(inner, ["bob:3.20", "cy:3.40"]);
    let left: Vec<String> = driver
        .read_key_values(&driver.output_topic("left", Utf8, Utf8))
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(left, ["ada:none", "bob:3.20", "cy:3.40", "dee:none"]);
}

/// Joins that cannot work are refused at build time (a derived table, a
/// re-keyed stream) or when partitions do not match.
#[test]
fn impossible_joins_are_errors() {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream("visits", Utf8, Utf8)
        .group_by_key(Utf8, Utf8)
        .count("visits");
    let derived = counts.filter(|_, n| *n > 1);
    builder
        .stream("orders", Utf8, Utf8)
        .join(&derived, |a: String, _n: u64| a)
        .to("out", Utf8, Utf8);
    let error = builder.build().err().unwrap().to_string();
    assert!(
        error.contains("only a table kept in its own store"),
        "{error}"
    );

    let builder = StreamsBuilder::new();
    let prices = builder.table("prices", Utf8, Utf8, "prices");
    builder
        .stream("orders", Utf8, Utf8)
        .select_key(|_, drink: &String| drink.clone())
        .join(&prices, |a: String, b: String| a + &b)
        .to("out", Utf8, Utf8);
    let error = builder.build().err().unwrap().to_string();
    assert!(error.contains("repartition it first"), "{error}");

    let builder = StreamsBuilder::new();
    let prices = builder.table("prices", Utf8, Utf8, "prices");
    builder
        .stream("orders", Utf8, Utf8)
        .join(&prices, |a: String, b: String| a + &b)
        .to("out", Utf8, Utf8);
    let error = TestDriver::builder(builder.build().unwrap())
        .partitions("orders", 4)
        .partitions("prices", 2)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("orders") && error.contains("prices"),
        "{error}"
    );
}

type Headers = Vec<(String, Vec<u8>)>;

/// An input record's headers (a request id, say) reach every record it
/// leads to — across a re-key, a repartition and an aggregation — while
/// the store's changelog records carry none of them.
#[test]
fn headers_travel_through_repartitions_and_aggregations() {
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Utf8)
        .group_by(|_id: &String, drink: &String| drink.clone(), Utf8, Utf8)
        .count("per-drink")
        .to_stream()
        .to("counts", Utf8, U64);
    let mut driver = TestDriver::builder(builder.build().unwrap())
        .default_partitions(3)
        .build()
        .unwrap();
    for (id, request) in [("o-1", "req-1"), ("o-2", "req-2")] {
        let headers = vec![("x-request-id".to_owned(), request.as_bytes().to_vec())];
        driver
            .pipe_raw_with_headers(
                "orders",
                None,
                Some(id.as_bytes().to_vec()),
                Some(b"latte".to_vec()),
                0,
                headers,
            )
            .unwrap();
    }
    let counts = driver.output_topic("counts", Utf8, U64);
    let records = driver.read_records(&counts).unwrap();
    let seen: Vec<(u64, Headers)> = records
        .into_iter()
        .map(|record| (record.value, record.headers))
        .collect();
    assert_eq!(
        seen,
        [
            (1, vec![("x-request-id".to_owned(), b"req-1".to_vec())]),
            (2, vec![("x-request-id".to_owned(), b"req-2".to_vec())]),
        ]
    );
    let changelog = driver.output_topic(
        &format!("{}-per-drink-changelog", driver.application_id()),
        Utf8,
        U64,
    );
    let logged = driver.read_records(&changelog).unwrap();
    assert_eq!(logged.len(), 2);
    assert!(logged.iter().all(|record| record.headers.is_empty()));

    // A dead letter keeps the record's own headers before the engine's.
    let request = ("x-request-id".to_owned(), b"req-3".to_vec());
    driver
        .pipe_raw_with_headers(
            "orders",
            None,
            None,
            Some(vec![0xff]),
            0,
            vec![request.clone()],
        )
        .unwrap();
    let dead = driver.output_topic(
        &format!("{}-dead-letters", driver.application_id()),
        engine::serdes::RawBytes,
        engine::serdes::RawBytes,
    );
    let dead = driver.read_records(&dead).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers[0], request);
    assert!(
        dead[0].headers[1..]
            .iter()
            .any(|(name, _)| name == "dead-letter.error.message")
    );
}
