//! The operators of [`Stream`](crate::Stream), one per file.

mod filter;
mod filter_map;
mod flat_map;
mod map;
mod map_values;
mod merge;
mod peek;
mod repartition;
mod select_key;
mod split;
mod to;
mod try_map_values;

pub use repartition::Repartitioned;
pub use split::{Branches, Splitter};
