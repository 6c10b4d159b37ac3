//! Prometheus metrics, named as the original system named them.
//!
//! Every family carries a constant `service` label (`producer`, `gateway`),
//! so a process that runs several services can register them all in one
//! registry.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Latency buckets in seconds: fine below 10 ms, where ingest should be.
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

/// HTTP request counts and durations, by method, route template and status.
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers `http_requests_total` and `http_request_duration_seconds`
    /// for `service` in `registry`.
    ///
    /// # Errors
    ///
    /// Fails when `registry` already holds these families for `service`.
    pub fn new(registry: &Registry, service: &str) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered.")
                .const_label("service", service),
            &["method", "endpoint", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from receiving an HTTP request to answering it.",
            )
            .const_label("service", service)
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "endpoint"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    /// Counts one answered request. `endpoint` is a route template (never a
    /// raw path, which would make the label unbounded).
    pub(crate) fn observe(&self, method: &http::Method, endpoint: &str, status: u16, seconds: f64) {
        let method = method_label(method);
        let digits = itoa_status(status);
        let status = std::str::from_utf8(&digits).unwrap_or("other");
        self.requests
            .with_label_values(&[method, endpoint, status])
            .inc();
        self.duration
            .with_label_values(&[method, endpoint])
            .observe(seconds);
    }
}

/// A bounded label for a method: clients can send any token as a method.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The three ASCII digits of an HTTP status, without allocating.
fn itoa_status(status: u16) -> [u8; 3] {
    let status = status.min(999);
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}

/// Order outcomes: received, placed, failed, and how long placing took.
#[derive(Debug, Clone)]
pub(crate) struct OrderMetrics {
    /// `coffee_orders_total`: valid order requests received.
    pub(crate) received: IntCounter,
    /// `coffee_orders_success_total`: orders placed (acknowledged by Kafka).
    pub(crate) placed: IntCounter,
    /// `coffee_orders_failed_total`: valid orders that could not be placed.
    pub(crate) failed: IntCounter,
    /// `coffee_order_processing_seconds`: time to place an order.
    pub(crate) processing: Histogram,
}

impl OrderMetrics {
    pub(crate) fn new(registry: &Registry, service: &str) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(Opts::new(name, help).const_label("service", service))
        };
        let metrics = Self {
            received: counter("coffee_orders_total", "Valid order requests received.")?,
            placed: counter(
                "coffee_orders_success_total",
                "Orders placed: acknowledged by Kafka.",
            )?,
            failed: counter(
                "coffee_orders_failed_total",
                "Valid order requests that could not be placed (Kafka, overload, upstream).",
            )?,
            processing: Histogram::with_opts(
                HistogramOpts::new(
                    "coffee_order_processing_seconds",
                    "Time to place an order, from a valid request to the acknowledged write.",
                )
                .const_label("service", service)
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
        };
        registry.register(Box::new(metrics.received.clone()))?;
        registry.register(Box::new(metrics.placed.clone()))?;
        registry.register(Box::new(metrics.failed.clone()))?;
        registry.register(Box::new(metrics.processing.clone()))?;
        Ok(metrics)
    }
}

/// Kafka writes: acknowledged, and failed by reason.
#[derive(Debug, Clone)]
pub(crate) struct KafkaMetrics {
    /// `kafka_messages_sent_total`: records Kafka acknowledged.
    pub(crate) sent: IntCounter,
    /// `kafka_messages_failed_total{reason}`: `queue_full`, `timeout`, `error`.
    pub(crate) failed: IntCounterVec,
}

impl KafkaMetrics {
    pub(crate) fn new(registry: &Registry, service: &str) -> Result<Self, prometheus::Error> {
        let metrics = Self {
            sent: IntCounter::with_opts(
                Opts::new(
                    "kafka_messages_sent_total",
                    "Records written to Kafka and acknowledged.",
                )
                .const_label("service", service),
            )?,
            failed: IntCounterVec::new(
                Opts::new(
                    "kafka_messages_failed_total",
                    "Records Kafka did not acknowledge, by reason.",
                )
                .const_label("service", service),
                &["reason"],
            )?,
        };
        // Every reason starts at zero, so an alert on `increase()` sees
        // the first failure and dashboards show the series before one.
        for reason in ["queue_full", "timeout", "error"] {
            metrics.failed.with_label_values(&[reason]);
        }
        registry.register(Box::new(metrics.sent.clone()))?;
        registry.register(Box::new(metrics.failed.clone()))?;
        Ok(metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_services_share_one_registry() {
        let registry = Registry::new();
        let producer = HttpMetrics::new(&registry, "producer").unwrap();
        let gateway = HttpMetrics::new(&registry, "gateway").unwrap();
        producer.observe(&http::Method::POST, "/order", 200, 0.001);
        gateway.observe(
            &http::Method::from_bytes(b"BREW").unwrap(),
            "unmatched",
            405,
            0.001,
        );
        OrderMetrics::new(&registry, "producer").unwrap();
        OrderMetrics::new(&registry, "gateway").unwrap();
        assert!(HttpMetrics::new(&registry, "producer").is_err());
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains(
            r#"http_requests_total{endpoint="/order",method="POST",service="producer",status="200"} 1"#
        ));
        assert!(text.contains(r#"method="OTHER""#));
    }
}
