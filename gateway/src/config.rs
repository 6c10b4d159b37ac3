//! Checks and types shared by the services' configurations.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// Extra librdkafka client settings (TLS, SASL and the like), passed
/// through as they are.
///
/// Values of keys that may hold secrets (`*password*`, `*secret*`,
/// `*key*`, `*token*`, `*jaas*`, `*credential*`) are printed as
/// `<redacted>` by `Debug`, so a logged configuration never leaks one.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KafkaSettings(pub BTreeMap<String, String>);

impl KafkaSettings {
    /// Whether the value of `key` may be a secret.
    pub fn is_sensitive(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        ["password", "secret", "key", "token", "jaas", "credential"]
            .iter()
            .any(|word| key.contains(word))
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let shown = if Self::is_sensitive(key) {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (key, shown)
            }))
            .finish()
    }
}

/// Checks a bind host: not blank, no spaces.
pub(crate) fn check_host(key: &str, host: &str) -> Result<(), ConfigError> {
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(ConfigError::new(
            key,
            format!("{host:?}"),
            "an IP address or host name to listen on, such as 0.0.0.0 or 127.0.0.1",
        ));
    }
    Ok(())
}

/// Checks that `value` lies in `range`.
pub(crate) fn check_range<T>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<(), ConfigError>
where
    T: PartialOrd + fmt::Display + Copy,
{
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            value,
            format!("{unit} from {} to {}", range.start(), range.end()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let settings = KafkaSettings(BTreeMap::from([
            ("sasl.password".to_owned(), "hunter2".to_owned()),
            ("ssl.key.pem".to_owned(), "-----BEGIN".to_owned()),
            ("sasl.mechanism".to_owned(), "SCRAM-SHA-512".to_owned()),
        ]));
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("BEGIN"), "{shown}");
        assert!(shown.contains("SCRAM-SHA-512"), "{shown}");
    }
}
