//! The hand-written rdkafka consume → transform → produce loop: the ceiling
//! for stateless work, and (with an in-memory `HashMap` as its state) the
//! baseline for stateful work. Same work and the same at-least-once rule as
//! the engine: an input offset is committed only after every output of it
//! and of the records before it has been acknowledged.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::orders::{Order, enrich, is_valid};

struct Acks(Mutex<Vec<(usize, bool)>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        if let Ok(mut acks) = self.0.lock() {
            acks.push((id, result.is_ok()));
        }
    }
}

/// Runs the stateless job until `stop` is set.
pub(crate) fn run(
    bootstrap: &str,
    group: &str,
    input: &str,
    output: &str,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let processed_at = "2026-11-25T16:00:01Z";
    run_with(bootstrap, group, input, output, stop, |message, outputs| {
        let order: Option<Order> = message
            .payload()
            .and_then(|p| serde_json::from_slice(p).ok());
        if let Some(order) = order.filter(is_valid) {
            let mut buf = Vec::with_capacity(192);
            serde_json::to_writer(&mut buf, &enrich(order, processed_at))?;
            outputs.push((message.key().map(<[u8]>::to_vec), buf));
        }
        Ok(())
    })
}

/// What a job makes of one input record: outputs as (key, value).
pub(crate) type Outputs = Vec<(Option<Vec<u8>>, Vec<u8>)>;

/// Runs the loop until `stop` is set, with `work` turning each input record
/// into outputs.
pub(crate) fn run_with(
    bootstrap: &str,
    group: &str,
    input: &str,
    output: &str,
    stop: &AtomicBool,
    mut work: impl FnMut(&BorrowedMessage<'_>, &mut Outputs) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "16384")
        // The same prefetch settings as the engine's consumer: with
        // librdkafka's default one-second back-off once that queue is full,
        // either system would idle most of each second.
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let producer: BaseProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "100000")
        .create_with_context(Acks(Mutex::new(Vec::new())))?;
    consumer.subscribe(&[input])?;

    // Per partition: input offsets with unacknowledged outputs, and the next offset.
    let mut pending: HashMap<i32, (BTreeMap<i64, u32>, i64)> = HashMap::new();
    let mut in_flight: Vec<(i32, i64)> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut committed: HashMap<i32, i64> = HashMap::new();
    let mut next_commit = Instant::now() + Duration::from_secs(1);
    let mut outputs: Outputs = Vec::new();
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if first {
                first = false;
                crate::peer::mark_first_consumed();
            }
            let (partition, offset) = (message.partition(), message.offset());
            let entry = pending.entry(partition).or_default();
            entry.1 = offset + 1;
            outputs.clear();
            work(&message, &mut outputs)?;
            for (key, value) in &outputs {
                let id = match free.pop() {
                    Some(id) => {
                        in_flight[id] = (partition, offset);
                        id
                    }
                    None => {
                        in_flight.push((partition, offset));
                        in_flight.len() - 1
                    }
                };
                *entry.0.entry(offset).or_insert(0) += 1;
                let mut record = BaseRecord::with_opaque_to(output, id).payload(value);
                if let Some(key) = key {
                    record = record.key(key);
                }
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            producer.poll(Duration::from_millis(10));
                        }
                        Err((error, _)) => return Err(error.into()),
                    }
                }
            }
        }
        producer.poll(Duration::ZERO);
        let acks = std::mem::take(
            &mut *producer
                .context()
                .0
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?,
        );
        for (id, ok) in acks {
            anyhow::ensure!(ok, "an output was not acknowledged");
            let (partition, offset) = in_flight[id];
            free.push(id);
            if let Some((offsets, _)) = pending.get_mut(&partition)
                && let Some(n) = offsets.get_mut(&offset)
            {
                *n -= 1;
                if *n == 0 {
                    offsets.remove(&offset);
                }
            }
        }
        if Instant::now() >= next_commit {
            commit(
                &consumer,
                input,
                &pending,
                &mut committed,
                CommitMode::Async,
            )?;
            next_commit = Instant::now() + Duration::from_secs(1);
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let acks = std::mem::take(
        &mut *producer
            .context()
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?,
    );
    for (id, _) in acks {
        let (partition, offset) = in_flight[id];
        if let Some((offsets, _)) = pending.get_mut(&partition) {
            offsets.remove(&offset);
        }
    }
    commit(&consumer, input, &pending, &mut committed, CommitMode::Sync)?;
    Ok(())
}

fn commit(
    consumer: &BaseConsumer,
    topic: &str,
    pending: &HashMap<i32, (BTreeMap<i64, u32>, i64)>,
    committed: &mut HashMap<i32, i64>,
    mode: CommitMode,
) -> anyhow::Result<()> {
    let mut list = TopicPartitionList::new();
    for (partition, (offsets, next)) in pending {
        let safe = offsets.keys().next().copied().unwrap_or(*next);
        if committed.get(partition) != Some(&safe) {
            list.add_partition_offset(topic, *partition, Offset::Offset(safe))?;
            committed.insert(*partition, safe);
        }
    }
    if list.count() > 0 {
        consumer.commit(&list, mode)?;
    }
    Ok(())
}
