//! The runtime that plans and runs queries, apart from the one that serves the network.
//!
//! DataFusion's operators are CPU-bound and yield only between batches. On the runtime that also
//! drives gRPC, REST and the timers, a join that computes for seconds between two yields starves
//! every other call, and the deadline timers that would stop it cannot fire. So, as InfluxDB 3
//! does with its `DedicatedExecutor`, every query is planned and executed here, on threads of its
//! own, and the network runtime only forwards batches and keeps the clocks:
//!
//! - [`QueryExecutor::spawn`] runs a future on the query runtime and returns a [`QueryTask`] that
//!   aborts it when dropped: a client that goes away stops its query.
//! - A watchdog on the *network* runtime aborts the task at its deadline whether or not anybody
//!   polls the result (a client that stops reading does not keep its query, or its permit).
//! - The query threads have large stacks (deep expressions recurse in the parser, the planner and
//!   the evaluators), and there are more of them than cores, so that a small query finds a free
//!   thread while long ones compute and the operating system shares the cores between them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::task::{AbortHandle, JoinError, JoinHandle};
use tokio::time::Instant;

/// Stack of one query thread. Only touched pages use memory.
pub const QUERY_THREAD_STACK: usize = 256 << 20;

/// A multi-threaded tokio runtime for query work.
#[derive(Debug)]
pub struct QueryExecutor {
    handle: Handle,
    runtime: Mutex<Option<Runtime>>,
}

impl QueryExecutor {
    /// A runtime with `threads` worker threads named `shop-query`.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("shop-query")
            .thread_stack_size(QUERY_THREAD_STACK)
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
        })
    }

    /// The worker threads a server with `max_concurrent_queries` gets: two per query slot plus
    /// two, so that a new query finds an idle thread while the others compute.
    pub fn threads_for(max_concurrent_queries: usize) -> usize {
        max_concurrent_queries.saturating_mul(2).saturating_add(2)
    }

    /// Runs `future` on the query runtime. The task is aborted when the returned [`QueryTask`]
    /// is dropped, and at `deadline` by a watchdog on the caller's runtime.
    pub fn spawn<F>(&self, deadline: Instant, future: F) -> QueryTask<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let join = self.handle.spawn(future);
        let abort = join.abort_handle();
        let watchdog = {
            let abort = abort.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                abort.abort();
            })
        };
        QueryTask {
            join,
            abort,
            watchdog: watchdog.abort_handle(),
            deadline,
        }
    }

    /// Stops the runtime without waiting for its threads: queries still running are abandoned
    /// at their next yield (used when the process exits).
    pub fn shutdown(&self) {
        if let Some(runtime) = self.runtime.lock().expect("executor lock").take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for QueryExecutor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A query's task on the [`QueryExecutor`]; dropping it aborts the task.
#[derive(Debug)]
pub struct QueryTask<T> {
    join: JoinHandle<T>,
    abort: AbortHandle,
    watchdog: AbortHandle,
    deadline: Instant,
}

/// How a query task ended when it did not return a value.
#[derive(Debug)]
pub enum TaskEnd {
    /// Aborted at its deadline.
    TimedOut,
    /// Aborted because it was cancelled (the server is stopping, or an operator killed it).
    Cancelled,
    /// The task panicked: a bug, reported as an internal error.
    Panicked(String),
}

impl<T> QueryTask<T> {
    /// Aborts the task (at its next yield point).
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    fn end_of(&self, error: JoinError) -> TaskEnd {
        if error.is_panic() {
            let payload = error.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a query task panicked".into());
            TaskEnd::Panicked(message)
        } else if Instant::now() >= self.deadline {
            TaskEnd::TimedOut
        } else {
            TaskEnd::Cancelled
        }
    }
}

impl<T> Future for QueryTask<T> {
    type Output = Result<T, TaskEnd>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.join).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(value)) => Poll::Ready(Ok(value)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.end_of(e))),
        }
    }
}

impl<T> Drop for QueryTask<T> {
    fn drop(&mut self) {
        self.abort.abort();
        self.watchdog.abort();
    }
}

/// Time left until `deadline`, zero when it has passed.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_end_at_their_deadline_and_on_drop() {
        let executor = QueryExecutor::new(2).unwrap();
        let done = executor
            .spawn(Instant::now() + Duration::from_secs(5), async { 7 })
            .await;
        assert!(matches!(done, Ok(7)));

        let late = executor
            .spawn(Instant::now() + Duration::from_millis(50), async {
                tokio::time::sleep(Duration::from_secs(60)).await;
            })
            .await;
        assert!(matches!(late, Err(TaskEnd::TimedOut)), "{late:?}");

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = executor.spawn(Instant::now() + Duration::from_secs(60), async move {
            let _keep = tx;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        drop(task);
        // The sender is dropped with the aborted task.
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .expect("the task was aborted")
            .unwrap_err();

        let panicked = executor
            .spawn(Instant::now() + Duration::from_secs(5), async {
                panic!("boom");
            })
            .await;
        assert!(
            matches!(&panicked, Err(TaskEnd::Panicked(m)) if m == "boom"),
            "{panicked:?}"
        );
    }

    #[tokio::test]
    async fn query_threads_have_deep_stacks() {
        fn depth(n: u64) -> u64 {
            let pad = [n; 64];
            if n == 0 {
                0
            } else {
                std::hint::black_box(pad)[0].min(1) + depth(n - 1)
            }
        }
        let executor = QueryExecutor::new(1).unwrap();
        // ~600 bytes a frame × 100,000 frames: far more than a default 2 MiB stack holds.
        let got = executor
            .spawn(Instant::now() + Duration::from_secs(30), async {
                depth(100_000)
            })
            .await
            .unwrap();
        assert_eq!(got, 100_000);
    }
}
