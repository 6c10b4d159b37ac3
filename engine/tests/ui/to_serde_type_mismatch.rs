//! A value serde for `u32` on a stream of `String` values must not compile.

use engine::StreamsBuilder;
use engine::serdes::{Json, Utf8};

fn main() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .to("out", Utf8, Json::<u32>::new());
}
