//! Re-keys orders (keyed by order id) by customer and moves them through a
//! named repartition topic, so all of a customer's orders meet in one
//! partition, and so in one task — the first step of any per-customer
//! aggregate. (Order is kept per input partition; orders of one customer
//! that came from different input partitions may interleave.)
//!
//! Run it on the embedded in-memory cluster (nothing to install):
//!     cargo run --release -p examples --bin customer_orders
//! or on a broker:
//!     KAFKA_BROKERS=127.0.0.1:9092 cargo run --release -p examples --bin customer_orders
//! Print its topology with `-- --describe` (or `-- --describe --mermaid`).

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::Instant;

use clap::Parser;
use engine::serdes::{Json, Utf8};
use engine::{StreamsBuilder, Topology};
use serde::{Deserialize, Serialize};

/// Command-line options.
#[derive(Parser)]
struct Args {
    /// Orders to generate.
    #[arg(long, default_value_t = 20_000)]
    orders: usize,
    /// Distinct customers.
    #[arg(long, default_value_t = 200)]
    customers: usize,
    /// Print the topology and exit.
    #[arg(long)]
    describe: bool,
    /// With --describe: print Mermaid instead of text.
    #[arg(long)]
    mermaid: bool,
}

/// An order, keyed by its id on the input topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    id: String,
    customer: String,
    drink: String,
    /// The customer's n-th order, counted by the generator.
    nth: u32,
}

fn topology() -> engine::Result<Topology> {
    let builder = StreamsBuilder::new();
    builder
        .stream("orders", Utf8, Json::<Order>::new())
        .select_key(|_id, order| order.customer.clone())
        .name("by-customer")
        .repartition("orders-by-customer", Utf8, Json::<Order>::new())
        .map_values(|order| {
            format!(
                "{} ordered a {} (order #{})",
                order.customer, order.drink, order.nth
            )
        })
        .name("describe-order")
        .to("customer-orders", Utf8, Utf8);
    builder.build()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topology = topology()?;
    if args.describe {
        let description = topology.describe();
        if args.mermaid {
            print!("{}", description.to_mermaid());
        } else {
            print!("{description}");
        }
        return Ok(());
    }
    examples::init_logging();
    let cluster = examples::cluster_from_env()?;
    examples::ensure_topics(&cluster, &[("orders", 4), ("customer-orders", 4)])?;

    let drinks = ["Espresso", "Latte", "Cappuccino", "Americano"];
    let mut nth: HashMap<usize, u32> = HashMap::new();
    let orders: Vec<(String, Vec<u8>)> = (0..args.orders)
        .map(|i| {
            let customer = (i * 7919) % args.customers.max(1);
            let n = nth.entry(customer).or_insert(0);
            *n += 1;
            let order = Order {
                id: format!("order-{i:07}"),
                customer: format!("customer-{customer:04}"),
                drink: drinks[i % drinks.len()].to_owned(),
                nth: *n,
            };
            (
                order.id.clone(),
                serde_json::to_vec(&order).unwrap_or_default(),
            )
        })
        .collect();
    let started = Instant::now();
    examples::produce_all(&cluster, "orders", orders).await?;

    let outputs = examples::run_until_outputs(
        &cluster,
        "customer-orders-example",
        topology,
        &["customer-orders"],
        args.orders,
    )
    .await?;

    // Every customer's orders now live in exactly one partition.
    let mut partitions_of: HashMap<String, std::collections::BTreeSet<i32>> = HashMap::new();
    for (_, partition, customer, _) in &outputs {
        partitions_of
            .entry(customer.clone())
            .or_default()
            .insert(*partition);
    }
    let split = partitions_of.values().filter(|p| p.len() > 1).count();
    println!(
        "Re-keyed {} orders of {} customers in {:.2?}; customers found in more than one partition: {split}.",
        outputs.len(),
        partitions_of.len(),
        started.elapsed()
    );
    if let Some((_, _, _, line)) = outputs.last() {
        println!("Last: {}", String::from_utf8_lossy(line));
    }
    Ok(())
}
