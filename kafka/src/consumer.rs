//! The one consumer loop of the shop's workers, with pluggable sinks.
//!
//! [`run`] owns everything a worker does with Kafka: the client configuration, subscribing,
//! polling, rebalances, when to flush, committing offsets, measuring lag, touching the health
//! file, and a final flush and close on shutdown. What happens to the messages is a [`Sink`]'s
//! job: where each partition starts, what a message becomes, what a flush makes durable and what
//! a revoke drops.
//!
//! The destination, not Kafka, is the truth about progress: a partition is assigned at the
//! offset [`Sink::start_offsets`] reads from the destination, and the loop commits to the group
//! only what a flush reports as durable, so that lag tools see the progress. Rebalances happen
//! inside `poll`; the loop hands them to the sink right after it, between polls, so no flush is
//! ever in progress when partitions are revoked.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::Error;

/// How a worker consumes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    /// librdkafka's `client.id`, which names the worker in the broker's logs.
    pub client_id: String,
    pub session_timeout_ms: u32,
    /// How often the sink's counters and the lag are logged and the health file is touched.
    pub metrics_interval: Duration,
    /// Extra librdkafka settings (`key=value`), e.g. security settings.
    pub extra: Vec<(String, String)>,
    /// Touched at every metrics tick while the loop runs (container healthchecks).
    pub health_file: Option<PathBuf>,
}

impl ConsumerConfig {
    pub fn new(brokers: &str, topic: &str, group: &str, client_id: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group: group.to_string(),
            client_id: client_id.to_string(),
            session_timeout_ms: 10_000,
            metrics_interval: Duration::from_secs(10),
            extra: Vec::new(),
            health_file: None,
        }
    }
}

/// Where a partition starts when it is assigned. Called inside `poll` (the rebalance
/// callback), so it may block but must not poll the consumer.
pub type StartOffset = Box<dyn Fn(i32) -> Offset + Send + Sync>;

/// What a flush made durable: the next offset to read of each partition it covered, committed
/// to the group by the loop.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flushed {
    pub positions: Vec<(i32, i64)>,
}

/// A destination of the consumer loop.
pub trait Sink {
    type Error: From<Error>;

    /// Where each newly assigned partition starts: the destination's own record of progress.
    fn start_offsets(&self) -> StartOffset;

    /// `partitions` were assigned: recover what the destination holds about them (messages
    /// below that are skipped). `stop` is set when the worker is asked to stop, for sinks that
    /// retry.
    fn assigned(&mut self, partitions: &[i32], stop: &AtomicBool) -> Result<(), Self::Error>;

    /// `partitions` were revoked: drop what was not made durable; their next owner reads it
    /// again from the destination's progress.
    fn revoked(&mut self, partitions: &[i32]);

    /// One message of the topic, from an assigned partition.
    fn accept(&mut self, message: &BorrowedMessage<'_>) -> Result<(), Self::Error>;

    /// Makes durable what is due (everything when `all`, at shutdown).
    fn flush(&mut self, all: bool, stop: &AtomicBool) -> Result<Flushed, Self::Error>;

    /// The next offset to read of each partition held: for the lag, and committed at shutdown,
    /// so after `flush(true, …)` returned every message below them must be durable.
    fn positions(&self) -> Vec<(i32, i64)>;

    /// Logs the sink's counters with the lag (`None`: unknown), every metrics interval.
    fn report(&self, lag: Option<i64>, elapsed: Duration);
}

/// The consumer context: partitions start where the sink says, and rebalances are recorded for
/// the loop to hand to the sink right after `poll`.
struct GroupContext {
    events: Mutex<Vec<Rebalance>>,
    topic: String,
    start: StartOffset,
}

enum Rebalance {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
    /// A rebalance error: librdkafka drops every partition, and so must the sink.
    RevokedAll,
}

impl GroupContext {
    fn record(&self, event: Rebalance) {
        self.events.lock().expect("rebalance log lock").push(event);
    }

    fn take_events(&self) -> Vec<Rebalance> {
        std::mem::take(&mut *self.events.lock().expect("rebalance log lock"))
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    /// An asynchronous commit that failed: the destination still holds the position, so this is
    /// only worth a warning (lag tools see an older offset until the next commit).
    fn commit_callback(&self, result: rdkafka::error::KafkaResult<()>, _: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(cause = %e, "offset commit failed; the destination still holds the position");
        }
    }

    /// Eager rebalancing, with one change to the default: partitions start where the
    /// destination says, not at the group's committed offset (the destination is the truth; the
    /// commit can lag behind it, or be ahead of it for a destination that was restored).
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let partitions = self.partitions(tpl);
                for &p in &partitions {
                    let offset = (self.start)(p);
                    if let Err(e) = tpl.set_partition_offset(&self.topic, p, offset) {
                        tracing::error!(partition = p, cause = %e, "cannot set the start offset");
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(cause = %e, "assigning partitions failed");
                }
                self.record(Rebalance::Assigned(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.record(Rebalance::Revoked(self.partitions(tpl)));
                if let Err(e) = consumer.unassign() {
                    tracing::error!(cause = %e, "unassigning partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; releasing every partition");
                self.record(Rebalance::RevokedAll);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(cause = %e, "unassigning partitions failed");
                }
            }
        }
    }
}

/// The loop's state between polls.
struct Loop<'a, S: Sink> {
    config: &'a ConsumerConfig,
    consumer: &'a BaseConsumer<GroupContext>,
    sink: &'a mut S,
    held: BTreeSet<i32>,
    stop: &'a AtomicBool,
}

impl<S: Sink> Loop<'_, S> {
    fn rebalanced(&mut self) -> Result<(), S::Error> {
        for event in self.consumer.context().take_events() {
            match event {
                Rebalance::Assigned(partitions) => {
                    self.held.extend(&partitions);
                    self.sink.assigned(&partitions, self.stop)?;
                }
                Rebalance::Revoked(partitions) => {
                    for p in &partitions {
                        self.held.remove(p);
                    }
                    self.sink.revoked(&partitions);
                }
                Rebalance::RevokedAll => {
                    let partitions: Vec<i32> = std::mem::take(&mut self.held).into_iter().collect();
                    self.sink.revoked(&partitions);
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, all: bool) -> Result<(), S::Error> {
        let flushed = self.sink.flush(all, self.stop)?;
        // At shutdown everything the sink holds is durable: the positions of every partition
        // are committed, and waited for, so that the group's offsets are current when it
        // leaves (also when the last flush in the loop had already written everything).
        let positions = if all {
            self.sink.positions()
        } else {
            flushed.positions
        };
        if positions.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (p, next) in positions {
            offsets
                .add_partition_offset(&self.config.topic, p, Offset::Offset(next))
                .map_err(Error::kafka(
                    &self.config.brokers,
                    "building the offsets to commit",
                ))?;
        }
        // The destination holds the truth; the commit only reports progress (lag tools read it)
        // and saves re-reading after a restart. The last one waits, so it is not lost in close;
        // the others report failures through `commit_callback`.
        let mode = if all {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        if let Err(e) = self.consumer.commit(&offsets, mode) {
            tracing::warn!(cause = %e, "offset commit failed; the destination still holds the position");
        }
        Ok(())
    }

    /// Messages behind the high watermarks of the partitions held (`None`: unknown).
    fn lag(&self) -> Option<i64> {
        let mut lag = 0;
        for (partition, next) in self.sink.positions() {
            let (_, high) = self
                .consumer
                .fetch_watermarks(&self.config.topic, partition, Duration::from_secs(1))
                .ok()?;
            lag += (high - next).max(0);
        }
        Some(lag)
    }

    fn tick(&self, started: Instant) {
        self.sink.report(self.lag(), started.elapsed());
        if let Some(path) = &self.config.health_file
            && let Err(e) = std::fs::write(path, b"ok\n")
        {
            tracing::warn!(path = %path.display(), cause = %e, "cannot touch the health file");
        }
    }

    fn consume(&mut self) -> Result<(), S::Error> {
        let started = Instant::now();
        let mut last_tick = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let message = self.consumer.poll(Duration::from_millis(100));
            self.rebalanced()?;
            match message {
                None => {}
                Some(Err(e)) => tracing::warn!(cause = %e, "Kafka error while polling"),
                Some(Ok(m))
                    if m.topic() == self.config.topic && self.held.contains(&m.partition()) =>
                {
                    self.sink.accept(&m)?;
                }
                Some(Ok(_)) => {}
            }
            self.flush(false)?;
            if last_tick.elapsed() >= self.config.metrics_interval {
                last_tick = Instant::now();
                self.tick(started);
            }
        }
        self.rebalanced()?;
        self.flush(true)
    }
}

fn consumer(
    config: &ConsumerConfig,
    start: StartOffset,
) -> Result<BaseConsumer<GroupContext>, Error> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set("client.id", &config.client_id);
    for (k, v) in &config.extra {
        client.set(k, v);
    }
    let context = GroupContext {
        events: Mutex::default(),
        topic: config.topic.clone(),
        start,
    };
    let consumer: BaseConsumer<GroupContext> = client
        .create_with_context(context)
        .map_err(Error::kafka(&config.brokers, "creating the consumer"))?;
    consumer
        .subscribe(&[&config.topic])
        .map_err(Error::kafka(&config.brokers, "subscribing"))?;
    Ok(consumer)
}

/// Consumes `config.topic` into `sink` until `stop` is set, then flushes everything and leaves
/// the group. Blocking: run it on a thread of its own (`spawn_blocking`).
pub fn run<S: Sink>(
    config: &ConsumerConfig,
    sink: &mut S,
    stop: &AtomicBool,
) -> Result<(), S::Error> {
    let consumer = consumer(config, sink.start_offsets())?;
    tracing::info!(
        topic = %config.topic,
        group = %config.group,
        brokers = %config.brokers,
        client = %config.client_id,
        "consuming"
    );
    let result = Loop {
        config,
        consumer: &consumer,
        sink,
        held: BTreeSet::new(),
        stop,
    }
    .consume();
    close(consumer);
    result
}

/// Closes the consumer (leaving the group), giving up after 10 s: a close once hung on tansu.
fn close(consumer: BaseConsumer<GroupContext>) {
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        consumer.unsubscribe();
        drop(consumer);
        let _ = done.send(());
    });
    if wait.recv_timeout(Duration::from_secs(10)).is_err() {
        tracing::warn!("the Kafka consumer did not close within 10 s; leaving it behind");
    }
}
