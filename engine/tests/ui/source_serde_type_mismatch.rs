//! A key serde for `u32` where the stream's key is declared `String` must not compile.

use engine::serdes::{Json, Utf8};
use engine::{Stream, StreamsBuilder};

fn main() {
    let builder = StreamsBuilder::new();
    let stream: Stream<String, String> = builder.stream("in", Json::<u32>::new(), Utf8);
    stream.to("out", Utf8, Utf8);
}
