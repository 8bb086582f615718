//! The baseline of the Kafka ingest benchmark: a plain rdkafka consumer that only counts
//! messages (no decoding, no writing), with the same client settings as the worker.
//!
//! cargo run --release -p shop-ingest --example kafka_count -- BROKERS TOPIC GROUP EXPECTED
//!
//! Prints one JSON line: messages, seconds from the first to the last message, messages/s.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, group, expected] = args.as_slice() else {
        eprintln!("usage: kafka_count BROKERS TOPIC GROUP EXPECTED");
        std::process::exit(2);
    };
    let expected: u64 = expected.parse().expect("EXPECTED is a number");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut count = 0_u64;
    let mut bytes = 0_u64;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < expected && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                count += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => eprintln!("poll error: {e}"),
            None => {}
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!(
        "{{\"messages\": {count}, \"bytes\": {bytes}, \"seconds\": {secs:.3}, \"per_sec\": {:.0}}}",
        count as f64 / secs.max(1e-9)
    );
}
