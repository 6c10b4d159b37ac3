//! The operators of [`Stream`](crate::Stream), one per file.

mod aggregate;
mod filter;
mod filter_map;
mod flat_map;
pub(crate) mod group;
mod join;
mod map;
mod map_values;
mod merge;
mod peek;
mod repartition;
mod select_key;
mod split;
mod table_source;
mod to;
mod try_map_values;
pub(crate) mod window;

pub use group::GroupedStream;
pub use repartition::Repartitioned;
pub use split::{Branches, Splitter};
pub use window::{Emit, TimeWindows, Windowed, WindowedSerde, WindowedStream};
