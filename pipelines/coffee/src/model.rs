//! The coffee system's state and the rules that change it, as plain
//! functions the topology folds records through.
//!
//! [`decide`] is the one place an order's status changes: it takes the
//! order's current state and a command from `coffee_orders`, and returns
//! the new state with what the command did ([`Outcome`]). Replaying the
//! same command is harmless (a second `placed`, `claimed` or `brewed` leaves
//! the state unchanged), which keeps at-least-once redelivery from
//! repeating decisions.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use proto::events::{CommandKind, OrderCommand, ProcessedOrder, Status};
use proto::menu::Menu;
use serde::{Deserialize, Serialize};

/// Longest customer name the pipeline accepts, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// An order as the status table keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// The order id.
    pub id: String,
    /// Who ordered.
    pub customer_name: String,
    /// The drink, as the menu names it.
    pub coffee_type: String,
    /// Where the order is.
    pub status: Status,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When its status last changed.
    pub updated_at: DateTime<Utc>,
    /// Seconds the drink takes, from the menu when the order was accepted.
    pub preparation_time: u32,
    /// The barista whose claim was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barista: Option<String>,
    /// What the latest command did.
    pub last: Outcome,
}

/// What a command did to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The status changed.
    Changed,
    /// The command was refused; the status is as it was.
    Refused {
        /// The refused command.
        command: CommandKind,
        /// Why.
        reason: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// A repeat of a command already applied: nothing to say.
    Unchanged,
}

/// Checks a command read from `coffee_orders`: the fields its kind needs,
/// and for a new order a drink on the menu (renamed as the menu names it).
/// An `Err` says why, and the record is set aside as rejected.
pub fn validate(mut command: OrderCommand, menu: &Menu) -> Result<OrderCommand, String> {
    command.id = command.id.trim().to_owned();
    if command.id.is_empty() {
        return Err("the order id is empty".into());
    }
    if command.kind == CommandKind::Placed {
        let name = command.customer_name.trim();
        if name.is_empty() {
            return Err("customer_name is empty".into());
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(format!(
                "customer_name is longer than {MAX_NAME_CHARS} characters"
            ));
        }
        command.customer_name = name.to_owned();
        let Some((drink, _)) = menu.find(&command.coffee_type) else {
            return Err(format!(
                "{:?} is not on the menu; choose one of {}",
                command.coffee_type,
                menu.names()
            ));
        };
        command.coffee_type = drink.to_owned();
    }
    if matches!(command.kind, CommandKind::Claimed | CommandKind::Brewed)
        && command
            .barista
            .as_deref()
            .is_none_or(|b| b.trim().is_empty())
    {
        return Err(format!("a {} command must name its barista", command.kind));
    }
    Ok(command)
}

/// Applies `command` (keyed `key`) to the order's current state, at `now`.
/// An `Err` rejects the command outright (it names no known order, or its
/// key and id disagree, or it reuses an order id for another order); a
/// refusal that the customer or barista must hear about is an `Ok` state
/// with [`Outcome::Refused`].
pub fn decide(
    key: &str,
    command: OrderCommand,
    current: Option<OrderState>,
    menu: &Menu,
    now: DateTime<Utc>,
) -> Result<OrderState, String> {
    if command.id != key {
        return Err(format!(
            "the record key {key:?} is not the order id {:?}",
            command.id
        ));
    }
    let Some(mut order) = current else {
        if command.kind != CommandKind::Placed {
            return Err(format!(
                "{} for order {key}, which was never placed",
                command.kind
            ));
        }
        let Some((drink, seconds)) = menu.find(&command.coffee_type) else {
            return Err(format!("{:?} is not on the menu", command.coffee_type));
        };
        return Ok(OrderState {
            id: command.id,
            customer_name: command.customer_name,
            coffee_type: drink.to_owned(),
            status: Status::Processing,
            created_at: command.created_at.unwrap_or(command.updated_at),
            updated_at: now,
            preparation_time: seconds,
            barista: None,
            last: Outcome::Changed,
        });
    };
    let refuse = |order: &mut OrderState, reason: String| {
        order.last = Outcome::Refused {
            command: command.kind,
            reason,
            at: now,
        };
    };
    match (command.kind, order.status) {
        (CommandKind::Placed, _) => {
            if command.customer_name != order.customer_name
                || !command.coffee_type.eq_ignore_ascii_case(&order.coffee_type)
            {
                return Err(format!(
                    "order {key} already exists for another customer or drink; an \
                     Idempotency-Key was reused for a different order"
                ));
            }
            order.last = Outcome::Unchanged;
        }
        (CommandKind::CancelRequested, status) if status.cancellable() => {
            order.status = Status::Cancelled;
            order.updated_at = now;
            order.last = Outcome::Changed;
        }
        (CommandKind::CancelRequested, Status::Cancelled) => {
            refuse(&mut order, "the order is already cancelled".into());
        }
        (CommandKind::CancelRequested, status) => {
            refuse(
                &mut order,
                format!("the order is already {status}; it can no longer be cancelled"),
            );
        }
        (CommandKind::Claimed, Status::Processing) => {
            order.status = Status::Brewing;
            order.barista = command.barista;
            order.updated_at = now;
            order.last = Outcome::Changed;
        }
        (CommandKind::Claimed, Status::Brewing) if command.barista == order.barista => {
            order.last = Outcome::Unchanged;
        }
        (CommandKind::Claimed, status) => {
            refuse(
                &mut order,
                format!("the order is {status}; it cannot be claimed"),
            );
        }
        (CommandKind::Brewed, Status::Brewing) => {
            order.status = Status::Completed;
            order.updated_at = now;
            order.last = Outcome::Changed;
        }
        (CommandKind::Brewed, Status::Completed) => order.last = Outcome::Unchanged,
        (CommandKind::Brewed, status) => {
            refuse(
                &mut order,
                format!("the order is {status}; it was not being brewed"),
            );
        }
    }
    Ok(order)
}

/// The record for `processed_orders` that `order`'s latest command calls
/// for: its new status, or a refusal; none for a repeated command.
pub fn decision(order: &OrderState) -> Option<ProcessedOrder> {
    let (refused, reason, at) = match &order.last {
        Outcome::Changed => (None, None, order.updated_at),
        Outcome::Refused {
            command,
            reason,
            at,
        } => (Some(*command), Some(reason.clone()), *at),
        Outcome::Unchanged => return None,
    };
    Some(ProcessedOrder {
        order_id: order.id.clone(),
        customer_name: order.customer_name.clone(),
        coffee_type: order.coffee_type.clone(),
        status: order.status,
        processed_at: at,
        preparation_time: order.preparation_time,
        created_at: Some(order.created_at),
        refused,
        reason,
    })
}

/// A customer's statistics, as `customer_stats` carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerStats {
    /// The customer.
    pub customer_name: String,
    /// Orders accepted.
    pub orders_placed: u64,
    /// Orders brewed.
    pub orders_completed: u64,
    /// Orders cancelled.
    pub orders_cancelled: u64,
    /// The drink ordered most (ties: the first by name).
    pub favourite_drink: String,
    /// Orders per drink.
    pub drinks: BTreeMap<String, u64>,
}

/// Whether a decision changes a customer's statistics.
pub fn counts_for_stats(decision: &ProcessedOrder) -> bool {
    decision.refused.is_none()
        && matches!(
            decision.status,
            Status::Processing | Status::Completed | Status::Cancelled
        )
}

/// Adds one decision to a customer's statistics.
pub fn add_to_stats(mut stats: CustomerStats, decision: &ProcessedOrder) -> CustomerStats {
    stats.customer_name.clone_from(&decision.customer_name);
    match decision.status {
        Status::Processing => {
            stats.orders_placed += 1;
            *stats
                .drinks
                .entry(decision.coffee_type.clone())
                .or_insert(0) += 1;
            // Highest count wins; on a tie, the first name in order.
            if let Some((drink, _)) = stats.drinks.iter().rev().max_by_key(|(_, count)| **count) {
                stats.favourite_drink.clone_from(drink);
            }
        }
        Status::Completed => stats.orders_completed += 1,
        Status::Cancelled => stats.orders_cancelled += 1,
        Status::Pending | Status::Brewing => {}
    }
    stats
}

/// Orders of one drink in one minute, as `coffee_demand` carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    /// The drink.
    pub coffee_type: String,
    /// The minute's start.
    pub window_start: DateTime<Utc>,
    /// The minute's end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Orders accepted in it.
    pub orders: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
    }

    fn placed(id: &str) -> OrderCommand {
        OrderCommand::placed(id, "Ada", "Latte", at(0))
    }

    fn apply(state: Option<OrderState>, command: OrderCommand) -> Result<OrderState, String> {
        decide(&command.id.clone(), command, state, &Menu::default(), at(1))
    }

    fn command(kind: CommandKind) -> OrderCommand {
        let command = OrderCommand::about(kind, "o-1", at(1));
        match kind {
            CommandKind::Claimed | CommandKind::Brewed => command.by("barista-1"),
            _ => command,
        }
    }

    #[test]
    fn an_order_goes_from_processing_to_brewing_to_completed() {
        let order = apply(None, placed("o-1")).unwrap();
        assert_eq!(order.status, Status::Processing);
        assert_eq!(order.preparation_time, 60);
        let order = apply(Some(order), command(CommandKind::Claimed)).unwrap();
        assert_eq!(order.status, Status::Brewing);
        assert_eq!(order.barista.as_deref(), Some("barista-1"));
        let order = apply(Some(order), command(CommandKind::Brewed)).unwrap();
        assert_eq!(order.status, Status::Completed);
        assert_eq!(decision(&order).unwrap().status, Status::Completed);
    }

    #[test]
    fn a_cancel_wins_before_the_claim_and_the_claim_is_then_refused() {
        let order = apply(None, placed("o-1")).unwrap();
        let order = apply(Some(order), command(CommandKind::CancelRequested)).unwrap();
        assert_eq!(order.status, Status::Cancelled);
        let order = apply(Some(order), command(CommandKind::Claimed)).unwrap();
        assert_eq!(order.status, Status::Cancelled);
        let refusal = decision(&order).unwrap();
        assert_eq!(refusal.refused, Some(CommandKind::Claimed));
        assert!(refusal.reason.unwrap().contains("cancelled"));
    }

    #[test]
    fn a_cancel_after_the_claim_is_refused_with_the_reason() {
        let order = apply(None, placed("o-1")).unwrap();
        let order = apply(Some(order), command(CommandKind::Claimed)).unwrap();
        let order = apply(Some(order), command(CommandKind::CancelRequested)).unwrap();
        assert_eq!(order.status, Status::Brewing);
        let refusal = decision(&order).unwrap();
        assert_eq!(refusal.refused, Some(CommandKind::CancelRequested));
        assert_eq!(
            refusal.reason.as_deref(),
            Some("the order is already brewing; it can no longer be cancelled")
        );
    }

    #[test]
    fn repeated_commands_decide_nothing_new() {
        let order = apply(None, placed("o-1")).unwrap();
        let again = apply(Some(order.clone()), placed("o-1")).unwrap();
        assert_eq!(decision(&again), None);
        assert_eq!(again.status, Status::Processing);
        let claimed = apply(Some(order), command(CommandKind::Claimed)).unwrap();
        let claimed_again = apply(Some(claimed), command(CommandKind::Claimed)).unwrap();
        assert_eq!(decision(&claimed_again), None);
        let done = apply(Some(claimed_again), command(CommandKind::Brewed)).unwrap();
        let done_again = apply(Some(done), command(CommandKind::Brewed)).unwrap();
        assert_eq!(decision(&done_again), None);
        assert_eq!(done_again.status, Status::Completed);
    }

    #[test]
    fn commands_for_unknown_or_mismatched_orders_are_rejected() {
        assert!(apply(None, command(CommandKind::CancelRequested)).is_err());
        let order = apply(None, placed("o-1")).unwrap();
        let other = OrderCommand::placed("o-1", "Bob", "Latte", at(0));
        assert!(
            apply(Some(order), other)
                .unwrap_err()
                .contains("Idempotency-Key")
        );
        let mismatched = decide("o-2", placed("o-1"), None, &Menu::default(), at(1));
        assert!(mismatched.unwrap_err().contains("not the order id"));
    }

    #[test]
    fn validation_names_the_menu_and_normalises_drinks() {
        let menu = Menu::default();
        let mut command = placed("o-1");
        command.coffee_type = " latte ".into();
        command.customer_name = "  Ada ".into();
        let valid = validate(command, &menu).unwrap();
        assert_eq!(
            (valid.coffee_type.as_str(), valid.customer_name.as_str()),
            ("Latte", "Ada")
        );
        let mut tea = placed("o-1");
        tea.coffee_type = "Tea".into();
        assert!(
            validate(tea, &menu)
                .unwrap_err()
                .contains("Americano, Cappuccino")
        );
        let mut long = placed("o-1");
        long.customer_name = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(validate(long, &menu).is_err());
        let anonymous_claim = OrderCommand::about(CommandKind::Claimed, "o-1", at(0));
        assert!(validate(anonymous_claim, &menu).is_err());
    }

    #[test]
    fn stats_count_accepted_completed_and_cancelled_orders_and_the_favourite() {
        let mut stats = CustomerStats::default();
        let mut processing = decision(&apply(None, placed("o-1")).unwrap()).unwrap();
        stats = add_to_stats(stats, &processing);
        processing.coffee_type = "Espresso".into();
        stats = add_to_stats(stats, &processing);
        assert_eq!(stats.favourite_drink, "Espresso");
        stats = add_to_stats(stats, &processing);
        processing.status = Status::Completed;
        stats = add_to_stats(stats, &processing);
        processing.status = Status::Cancelled;
        stats = add_to_stats(stats, &processing);
        assert_eq!(
            (
                stats.orders_placed,
                stats.orders_completed,
                stats.orders_cancelled
            ),
            (3, 1, 1)
        );
        assert_eq!(stats.favourite_drink, "Espresso");
    }
}
