//! A filter closure taking `&u32` values on a stream of `String` values must not compile.

use engine::StreamsBuilder;
use engine::serdes::Utf8;

fn main() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Utf8, Utf8)
        .filter(|_key: &String, value: &u32| *value > 3)
        .to("out", Utf8, Utf8);
}
