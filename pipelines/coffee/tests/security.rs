//! Kafka security settings pass through to every client of every service:
//! the whole system runs on a broker that accepts only SASL/SCRAM-SHA-512
//! logins, and on one that accepts only TLS connections with a client
//! certificate, configured the way operators do (environment variables); a
//! wrong password or a missing certificate stops it at start-up with a
//! clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use coffee::config::Config;
use coffee::system::System;
use common::{eventually, http, json, system_layers};

const USER: &str = "coffee";
const PASSWORD: &str = "s3cret-pass";

fn env(password: &'static str) -> impl Fn(&str) -> Option<String> {
    move |name| {
        let value = match name {
            "KAFKA_SECURITY_PROTOCOL" => "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM" => "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME" => USER,
            "KAFKA_SASL_PASSWORD" => password,
            _ => return None,
        };
        Some(value.to_owned())
    }
}

/// The settings for a broker's TLS listener, as environment variables;
/// without the client certificate and key when `with_certificate` is false.
fn tls_env(files: testkit::TlsFiles, with_certificate: bool) -> impl Fn(&str) -> Option<String> {
    move |name| {
        let path = |path: &std::path::Path| Some(path.display().to_string());
        match name {
            "KAFKA_SECURITY_PROTOCOL" => Some("SSL".to_owned()),
            "KAFKA_SSL_CA_LOCATION" => path(&files.ca),
            "KAFKA_SSL_CERTIFICATE_LOCATION" if with_certificate => path(&files.certificate),
            "KAFKA_SSL_KEY_LOCATION" if with_certificate => path(&files.key),
            "KAFKA_SSL_KEY_PASSWORD" if with_certificate => Some(files.key_password.clone()),
            _ => None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_system_runs_on_a_broker_that_requires_scram_logins() {
    let broker = testkit::OwnBroker::start_with_scram(USER, PASSWORD);
    let scram = broker.scram_bootstrap_servers().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = system_layers(&scram, state.path())
        .env(env(PASSWORD))
        .unwrap()
        .load()
        .unwrap();
    // The password is in the settings, and in no printout of them.
    assert_eq!(config.kafka.client["sasl.password"], PASSWORD);
    assert!(!format!("{config:?}").contains(PASSWORD));
    place_an_order_and_see_it_complete(config, "SCRAM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_system_runs_on_a_broker_that_requires_client_certificates() {
    let broker = testkit::OwnBroker::start_with_tls();
    let tls = broker.tls_bootstrap_servers().unwrap();
    let files = broker.tls_files().unwrap();
    let password = files.key_password.clone();
    let state = tempfile::tempdir().unwrap();
    let config = system_layers(&tls, state.path())
        .env(tls_env(files, true))
        .unwrap()
        .load()
        .unwrap();
    // The key's password is in the settings, and in no printout of them.
    assert_eq!(config.kafka.client["ssl.key.password"], password);
    assert!(!format!("{config:?}").contains(&password));
    place_an_order_and_see_it_complete(config, "TLS").await;
}

/// Starts the whole system on `config`, places an order through the
/// gateway and waits until the barista has completed it: every service's
/// clients reached the broker.
async fn place_an_order_and_see_it_complete(config: Config, over: &str) {
    let system = System::start(config).await.unwrap();
    let gateway = system.addresses.gateway.port();
    let body = r#"{"customer_name":"Ada","coffee_type":"Espresso"}"#;
    let (status, placed) =
        tokio::task::spawn_blocking(move || http(gateway, "POST", "/order", body))
            .await
            .unwrap();
    assert_eq!(status, 200, "{placed}");
    let id = json(&placed)["order"]["id"].as_str().unwrap().to_owned();
    eventually(
        &format!("the order to complete over {over}"),
        Duration::from_secs(60),
        || {
            let id = id.clone();
            async move {
                let (_, body) = tokio::task::spawn_blocking(move || {
                    http(gateway, "GET", &format!("/order/{id}"), "")
                })
                .await
                .unwrap();
                (json(&body)["order"]["status"] == "completed").then_some(())
            }
        },
    )
    .await;
    system.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_stops_the_system_at_start_with_a_clear_error() {
    let broker = testkit::OwnBroker::start_with_scram(USER, PASSWORD);
    let scram = broker.scram_bootstrap_servers().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = system_layers(&scram, state.path())
        .env(env("not-the-password"))
        .unwrap()
        .load()
        .unwrap();
    let error = start_fails(config, "with a wrong password").await;
    assert!(
        error.to_lowercase().contains("authentication"),
        "the error does not say what is wrong: {error}"
    );
    assert!(!error.contains("not-the-password"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_client_certificate_stops_the_system_at_start_with_a_clear_error() {
    let broker = testkit::OwnBroker::start_with_tls();
    let tls = broker.tls_bootstrap_servers().unwrap();
    let state = tempfile::tempdir().unwrap();
    let config = system_layers(&tls, state.path())
        .env(tls_env(broker.tls_files().unwrap(), false))
        .unwrap()
        .load()
        .unwrap();
    let error = start_fails(config, "without a client certificate").await;
    assert!(
        error.contains("SSL") && error.contains("certificate"),
        "the error does not say what is wrong: {error}"
    );
}

/// Starts the system on `config`, which must fail within 90 s; returns the
/// error's message. `how` says what is wrong with `config`.
async fn start_fails(config: Config, how: &str) -> String {
    match tokio::time::timeout(Duration::from_secs(90), System::start(config)).await {
        Ok(Ok(system)) => {
            let _ = system.stop().await;
            panic!("the system started {how}");
        }
        Ok(Err(error)) => error.to_string(),
        Err(_) => panic!("starting {how} did not fail within 90 s"),
    }
}
