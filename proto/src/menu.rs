//! The menu: which drinks can be ordered and how long each takes.
//!
//! Shared by the producer (which refuses drinks not on it) and the
//! pipeline (which enriches orders with preparation times). It is
//! configuration: deserialise it from `{ "Latte" = 60, … }`.
//!
//! ```
//! use proto::menu::Menu;
//!
//! let menu = Menu::default();
//! assert_eq!(menu.find("latte"), Some(("Latte", 60)));
//! assert_eq!(menu.find("Tea"), None);
//! assert_eq!(menu.names(), "Americano, Cappuccino, Espresso, Latte");
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Drinks and their preparation times in seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Menu {
    items: BTreeMap<String, u32>,
}

impl Default for Menu {
    /// Espresso 30 s, Latte 60 s, Cappuccino 90 s, Americano 45 s.
    fn default() -> Self {
        Self::new([
            ("Espresso", 30),
            ("Latte", 60),
            ("Cappuccino", 90),
            ("Americano", 45),
        ])
    }
}

impl Menu {
    /// A menu of `(name, seconds)` items.
    pub fn new<'a>(items: impl IntoIterator<Item = (&'a str, u32)>) -> Self {
        Self {
            items: items
                .into_iter()
                .map(|(name, seconds)| (name.to_owned(), seconds))
                .collect(),
        }
    }

    /// Checks the menu: at least one drink, names not blank, not two names
    /// that differ only in case.
    pub fn validate(&self) -> Result<(), String> {
        if self.items.is_empty() {
            return Err("the menu has no drinks".into());
        }
        let mut seen = std::collections::HashSet::new();
        for name in self.items.keys() {
            if name.trim().is_empty() || name.trim() != name {
                return Err(format!("menu item {name:?} has a blank or padded name"));
            }
            if !seen.insert(name.to_lowercase()) {
                return Err(format!("menu item {name:?} is listed twice"));
            }
        }
        Ok(())
    }

    /// The menu's name for `drink` (matched ignoring case and surrounding
    /// blanks) and its preparation time in seconds.
    pub fn find(&self, drink: &str) -> Option<(&str, u32)> {
        let drink = drink.trim();
        self.items
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(drink))
            .map(|(name, seconds)| (name.as_str(), *seconds))
    }

    /// The drinks' names, comma-separated, for error messages.
    pub fn names(&self) -> String {
        self.items.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// The drinks and their preparation times, in name order.
    pub fn items(&self) -> impl Iterator<Item = (&str, u32)> {
        self.items.iter().map(|(name, s)| (name.as_str(), *s))
    }
}
