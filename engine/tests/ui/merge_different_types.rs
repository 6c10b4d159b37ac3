//! Merging a stream of `String` values with a stream of `u32` values must not compile.

use engine::StreamsBuilder;
use engine::serdes::{Json, Utf8};

fn main() {
    let builder = StreamsBuilder::new();
    let text = builder.stream("text", Utf8, Utf8);
    let numbers = builder.stream("numbers", Utf8, Json::<u32>::new());
    text.merge(numbers).to("out", Utf8, Utf8);
}
