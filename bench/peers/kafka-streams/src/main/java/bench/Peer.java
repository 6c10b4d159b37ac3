package bench;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.ObjectReader;
import com.fasterxml.jackson.databind.ObjectWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The Kafka Streams side of the benchmark: the same three jobs as the Rust engine
 * (bench/src/peer.rs), written the way a careful Kafka Streams user would — typed
 * serdes with one reused Jackson reader/writer each, no per-record allocations beyond
 * the records themselves, the DSL's own repartitioning and stores.
 *
 * <pre>
 * java -cp 'target/kafka-streams-peer.jar:target/lib/*' bench.Peer \
 *     --bootstrap HOST:PORT --job stateless|stateful|windowed --input T --output T \
 *     --app-id ID --state-dir DIR [--eos] [--profile default|latency]
 * </pre>
 *
 * <p>Prints {@code bench-first-consumed <unix ms>} on stdout when the first record
 * reaches the topology (the harness's start of the clock) and runs until SIGTERM.
 */
public final class Peer {
  private Peer() {}

  /** Drinks on the menu and their preparation time in seconds (bench/src/orders.rs). */
  static final Map<String, Integer> MENU =
      Map.of("Espresso", 30, "Latte", 60, "Cappuccino", 90, "Americano", 45);

  static final String PROCESSED_AT = "2026-11-25T16:00:01Z";

  /** An order as the generator writes it. */
  public static final class Order {
    @JsonProperty("id")
    public String id;

    @JsonProperty("customer_name")
    public String customerName;

    @JsonProperty("coffee_type")
    public String coffeeType;

    @JsonProperty("status")
    public String status;

    @JsonProperty("created_at")
    public String createdAt;

    @JsonProperty("updated_at")
    public String updatedAt;
  }

  /** The stateless job's output. */
  public static final class ProcessedOrder {
    @JsonProperty("order_id")
    public String orderId;

    @JsonProperty("customer_name")
    public String customerName;

    @JsonProperty("coffee_type")
    public String coffeeType;

    @JsonProperty("status")
    public String status;

    @JsonProperty("processed_at")
    public String processedAt;

    @JsonProperty("preparation_time")
    public int preparationTime;
  }

  /** The stateful job's aggregate per customer. */
  public static final class Stats {
    @JsonProperty("orders")
    public long orders;

    @JsonProperty("preparation_seconds")
    public long preparationSeconds;
  }

  static final ObjectMapper MAPPER =
      new ObjectMapper().configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false);

  /** A JSON serde over one reused reader and writer (both thread-safe). */
  static <T> Serde<T> json(Class<T> type) {
    ObjectReader reader = MAPPER.readerFor(type);
    ObjectWriter writer = MAPPER.writerFor(type);
    Serializer<T> serializer =
        (topic, value) -> {
          if (value == null) {
            return null;
          }
          try {
            return writer.writeValueAsBytes(value);
          } catch (IOException e) {
            throw new UncheckedIOException(e);
          }
        };
    Deserializer<T> deserializer =
        (topic, bytes) -> {
          if (bytes == null) {
            return null;
          }
          try {
            return reader.readValue(bytes);
          } catch (IOException e) {
            // A record that does not decode is dropped by the filter below,
            // like the engine's skip-and-count policy.
            return null;
          }
        };
    return Serdes.serdeFrom(serializer, deserializer);
  }

  static boolean isValid(Order order) {
    return order != null
        && order.customerName != null
        && !order.customerName.isBlank()
        && order.coffeeType != null
        && MENU.containsKey(order.coffeeType);
  }

  static ProcessedOrder enrich(Order order) {
    ProcessedOrder out = new ProcessedOrder();
    out.orderId = order.id;
    out.customerName = order.customerName;
    out.coffeeType = order.coffeeType;
    out.status = "processing";
    out.processedAt = PROCESSED_AT;
    out.preparationTime = MENU.getOrDefault(order.coffeeType, 0);
    return out;
  }

  /** Set once the first record reached the topology. */
  private static volatile boolean firstSeen = false;

  static void markFirst() {
    if (!firstSeen) {
      synchronized (Peer.class) {
        if (!firstSeen) {
          firstSeen = true;
          System.out.println("bench-first-consumed " + System.currentTimeMillis());
          System.out.flush();
        }
      }
    }
  }

  static Topology topology(String job, String input, String output) {
    Serde<Order> orderSerde = json(Order.class);
    StreamsBuilder builder = new StreamsBuilder();
    KStream<String, Order> orders =
        builder.stream(input, Consumed.with(Serdes.String(), orderSerde)).peek((k, v) -> markFirst());
    switch (job) {
      case "stateless" ->
          orders
              .filter((id, order) -> isValid(order))
              .mapValues(Peer::enrich)
              .to(output, Produced.with(Serdes.String(), json(ProcessedOrder.class)));
      case "stateful" -> {
        Serde<Stats> statsSerde = json(Stats.class);
        orders
            .filter((id, order) -> order != null && order.customerName != null)
            .groupBy(
                (id, order) -> order.customerName,
                Grouped.with("customer-stats", Serdes.String(), orderSerde))
            .aggregate(
                Stats::new,
                (customer, order, stats) -> {
                  stats.orders += 1;
                  stats.preparationSeconds += MENU.getOrDefault(order.coffeeType, 0);
                  return stats;
                },
                Materialized.<String, Stats, KeyValueStore<Bytes, byte[]>>as("customer-stats")
                    .withKeySerde(Serdes.String())
                    .withValueSerde(statsSerde))
            .toStream()
            .to(output, Produced.with(Serdes.String(), statsSerde));
      }
      case "windowed" ->
          orders
              .filter((id, order) -> order != null && order.coffeeType != null)
              .groupBy(
                  (id, order) -> order.coffeeType,
                  Grouped.with("coffee-demand", Serdes.String(), orderSerde))
              .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ofHours(1)))
              .count(
                  Materialized.<String, Long, WindowStore<Bytes, byte[]>>as("coffee-demand")
                      .withKeySerde(Serdes.String())
                      .withValueSerde(Serdes.Long()))
              .toStream((window, count) -> window.key() + "@" + window.window().start())
              .mapValues(count -> Long.toString(count))
              .to(output, Produced.with(Serdes.String(), Serdes.String()));
      default -> throw new IllegalArgumentException("unknown job '" + job + "'");
    }
    return builder.build();
  }

  public static void main(String[] args) throws InterruptedException {
    String bootstrap = null;
    String job = null;
    String input = null;
    String output = null;
    String appId = null;
    String stateDir = null;
    String profile = "default";
    boolean eos = false;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--bootstrap" -> bootstrap = args[++i];
        case "--job" -> job = args[++i];
        case "--input" -> input = args[++i];
        case "--output" -> output = args[++i];
        case "--app-id" -> appId = args[++i];
        case "--state-dir" -> stateDir = args[++i];
        case "--profile" -> profile = args[++i];
        case "--eos" -> eos = true;
        default -> throw new IllegalArgumentException("unknown argument '" + args[i] + "'");
      }
    }
    if (bootstrap == null || job == null || input == null || output == null || appId == null) {
      System.err.println(
          "usage: Peer --bootstrap B --job J --input T --output T --app-id ID [--state-dir D]"
              + " [--eos] [--profile default|latency]");
      System.exit(2);
    }

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    if (stateDir != null) {
      props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    }
    if (eos) {
      props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    }
    switch (profile) {
      case "default" -> {}
      case "latency" -> {
        // Latency-matched with the engine: commit every 100 ms, no record
        // cache (every update goes downstream at once), 5 ms producer linger
        // (Kafka Streams' own default is 100 ms).
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
      }
      default -> throw new IllegalArgumentException("unknown profile '" + profile + "'");
    }

    KafkaStreams streams = new KafkaStreams(topology(job, input, output), props);
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  streams.close(Duration.ofSeconds(30));
                  stopped.countDown();
                }));
    streams.setUncaughtExceptionHandler(
        e -> {
          System.err.println("kafka-streams peer: stream thread failed: " + e);
          return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler
              .StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
    // A peer never outlives the harness that started it, however that ended.
    ProcessHandle.current().parent().ifPresent(parent -> parent.onExit().thenRun(() -> System.exit(0)));
    streams.start();
    stopped.await();
  }
}
