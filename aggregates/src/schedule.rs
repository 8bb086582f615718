//! The refresh scheduler that runs inside `shop-analytics serve`.
//!
//! - A cron expression (UTC, five fields; default `0 1 * * *`) fires a refresh of the day before
//!   the fire time, and of the dimensions.
//! - At start it marks runs that an earlier scheduler left `running` as `interrupted`, then
//!   catches up: every day of the last `catch_up_days` (up to yesterday) without a successful run
//!   of all aggregates that started after the day ended (and, with ClickHouse configured, wrote
//!   to it) is refreshed.
//! - A failed run is retried after a backoff that doubles from `retry_initial` up to
//!   `retry_max`, at most `max_attempts` times in all; later days do not wait for it.
//! - Every run is recorded in `system.refresh_runs`.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use croner::Cron;

use crate::refresh::{Refresher, Selection};
use crate::runs::{self, Status, Trigger};
use crate::{Error, Result};

/// When and how the scheduler refreshes.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub cron: Cron,
    /// Days before today checked for a missing successful run at start (0: no catch-up).
    pub catch_up_days: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Tries of one day in all, the first included.
    pub max_attempts: u32,
}

/// The default schedule: daily at 01:00 UTC.
pub const DEFAULT_CRON: &str = "0 1 * * *";

impl ScheduleConfig {
    /// Defaults with the cron expression `cron`.
    pub fn new(cron: &str) -> Result<Self> {
        Ok(Self {
            cron: parse_cron(cron)?,
            catch_up_days: 7,
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            max_attempts: 8,
        })
    }

    /// Wait before try `attempt + 1` after try `attempt` failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.retry_initial
            .saturating_mul(factor)
            .min(self.retry_max)
    }
}

/// Parses a five-field cron expression (minute hour day-of-month month day-of-week), in UTC.
pub fn parse_cron(expression: &str) -> Result<Cron> {
    Cron::from_str(expression).map_err(|e| {
        Error::Invalid(format!(
            "invalid refresh schedule {expression:?}: {e} (expected five cron fields, e.g. \"0 1 * * *\")"
        ))
    })
}

/// The `system.refresh_runs` filter of the runs that make a day between `first` and `last` done:
/// a successful run of `tables` that started after the day ended (an earlier one saw part of the
/// day) and, when `clickhouse`, wrote to ClickHouse.
pub fn done_filter(first: NaiveDate, last: NaiveDate, tables: &[&str], clickhouse: bool) -> String {
    format!(
        "status = 'succeeded' AND day BETWEEN DATE '{first}' AND DATE '{last}' \
         AND tables = '{}' AND CAST(started_at AS DATE) > day{}",
        tables.join(","),
        if clickhouse {
            " AND clickhouse_rows IS NOT NULL"
        } else {
            ""
        }
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    Day(NaiveDate),
    Dimensions,
}

#[derive(Debug, Clone)]
struct Job {
    work: Work,
    trigger: Trigger,
    attempt: u32,
    due: DateTime<Utc>,
}

/// Runs refreshes on a schedule until stopped.
pub struct Scheduler {
    refresher: Refresher,
    config: ScheduleConfig,
    selection: Selection,
}

impl Scheduler {
    pub fn new(refresher: Refresher, config: ScheduleConfig) -> Self {
        Self {
            refresher,
            config,
            selection: Selection::all(),
        }
    }

    /// Runs forever; stop it by dropping (aborting) the future. A run in progress is then
    /// abandoned: its record stays `running` and is marked `interrupted` by the next start, and
    /// the lake and ClickHouse keep the old day.
    pub async fn run(self) {
        self.schedule().await
    }

    async fn schedule(&self) {
        let mut queue = self.startup_jobs().await;
        let mut next_fire = self.next_fire(Utc::now());
        tracing::info!(
            schedule = %self.config.cron.pattern,
            next = ?next_fire,
            catch_up = queue.iter().filter(|j| matches!(j.work, Work::Day(_))).count(),
            "refresh scheduler started"
        );
        loop {
            let now = Utc::now();
            if let Some(fire) = next_fire.filter(|fire| *fire <= now) {
                let day = fire.date_naive().pred_opt().expect("a day before");
                queue.extend(self.jobs_for(&[day], Trigger::Schedule, now));
                next_fire = self.next_fire(now);
                continue;
            }
            let due = queue
                .iter()
                .enumerate()
                .filter(|(_, j)| j.due <= now)
                .min_by_key(|(_, j)| j.due)
                .map(|(i, _)| i);
            if let Some(index) = due {
                let job = queue.remove(index);
                if let Some(retry) = self.execute(job).await {
                    queue.push(retry);
                }
                continue;
            }
            let wake = queue
                .iter()
                .map(|j| j.due)
                .chain(next_fire)
                .min()
                .map(|at| (at - now).to_std().unwrap_or_default())
                .unwrap_or(Duration::from_secs(3600));
            tokio::time::sleep(wake.min(Duration::from_secs(3600))).await;
        }
    }

    fn next_fire(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.config.cron.find_next_occurrence(&after, false) {
            Ok(at) => Some(at),
            Err(e) => {
                tracing::error!(cause = %e, "the refresh schedule has no next time");
                None
            }
        }
    }

    /// A day job per day, and one dimensions job first when ClickHouse is configured.
    fn jobs_for(&self, days: &[NaiveDate], trigger: Trigger, due: DateTime<Utc>) -> Vec<Job> {
        let dimensions =
            (self.refresher.clickhouse().is_some() && !days.is_empty()).then_some(Work::Dimensions);
        dimensions
            .into_iter()
            .chain(days.iter().map(|d| Work::Day(*d)))
            .map(|work| Job {
                work,
                trigger,
                attempt: 1,
                due,
            })
            .collect()
    }

    /// Marks runs left `running` by earlier schedulers as interrupted and returns the catch-up
    /// jobs.
    async fn startup_jobs(&self) -> Vec<Job> {
        let ctx = match self.refresher.context().await {
            Ok(ctx) => ctx,
            Err(e) => {
                tracing::error!(cause = %e, "cannot read the lake at scheduler start; no catch-up");
                return Vec::new();
            }
        };
        let filter = format!(
            "status = 'running' AND trigger <> 'manual' AND process <> '{}'",
            runs::process_id()
        );
        match runs::read(&ctx, &filter).await {
            Ok(stale) => {
                for mut record in stale {
                    record.status = Status::Interrupted;
                    record.error = Some("its process stopped before the run ended".into());
                    if let Err(e) = record.write(self.refresher.lake()).await {
                        tracing::warn!(run_id = %record.run_id, cause = %e, "cannot mark the run interrupted");
                    }
                }
            }
            Err(e) => tracing::warn!(cause = %e, "cannot read the run history"),
        }
        if self.config.catch_up_days == 0 {
            return Vec::new();
        }
        let yesterday = Utc::now().date_naive().pred_opt().expect("a day before");
        let first = yesterday - chrono::Duration::days(i64::from(self.config.catch_up_days) - 1);
        let filter = done_filter(
            first,
            yesterday,
            &self.selection.aggregate_names(),
            self.refresher.clickhouse().is_some(),
        );
        let done: BTreeSet<NaiveDate> = match runs::read(&ctx, &filter).await {
            Ok(records) => records.into_iter().filter_map(|r| r.day).collect(),
            Err(e) => {
                tracing::warn!(cause = %e, "cannot read the run history; catching up every day");
                BTreeSet::new()
            }
        };
        let missed: Vec<NaiveDate> = first
            .iter_days()
            .take_while(|d| *d <= yesterday)
            .filter(|d| !done.contains(d))
            .collect();
        self.jobs_for(&missed, Trigger::CatchUp, Utc::now())
    }

    /// Runs a job; returns its retry when it failed and may be tried again.
    async fn execute(&self, job: Job) -> Option<Job> {
        let (record, result) = match self.refresher.context().await {
            Ok(ctx) => match job.work {
                Work::Day(day) => {
                    self.refresher
                        .run_day(&ctx, day, &self.selection, job.trigger, job.attempt)
                        .await
                }
                Work::Dimensions => {
                    self.refresher
                        .run_dimensions(&ctx, &self.selection, job.trigger, job.attempt)
                        .await
                }
            },
            Err(e) => {
                tracing::error!(work = ?job.work, attempt = job.attempt, cause = %e, "cannot read the lake for a refresh");
                return self.retry(job);
            }
        };
        match result {
            Ok(_) => {
                tracing::info!(
                    work = ?job.work,
                    trigger = job.trigger.as_str(),
                    attempt = job.attempt,
                    lake_rows = ?record.lake_rows,
                    clickhouse_rows = ?record.clickhouse_rows,
                    run_id = %record.run_id,
                    "refresh succeeded"
                );
                None
            }
            Err(e) => {
                tracing::error!(
                    work = ?job.work,
                    trigger = job.trigger.as_str(),
                    attempt = job.attempt,
                    run_id = %record.run_id,
                    cause = %e,
                    "refresh failed"
                );
                self.retry(job)
            }
        }
    }

    fn retry(&self, job: Job) -> Option<Job> {
        if job.attempt >= self.config.max_attempts {
            tracing::error!(work = ?job.work, attempts = job.attempt, "giving up on the refresh until the next start or a manual run");
            return None;
        }
        let wait = self.config.backoff(job.attempt);
        tracing::info!(work = ?job.work, in_secs = wait.as_secs_f64(), "refresh retry scheduled");
        Some(Job {
            work: job.work,
            trigger: Trigger::Retry,
            attempt: job.attempt + 1,
            due: Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut config = ScheduleConfig::new(DEFAULT_CRON).unwrap();
        config.retry_initial = Duration::from_secs(10);
        config.retry_max = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=5).map(|a| config.backoff(a).as_secs()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        assert_eq!(config.backoff(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn the_default_fires_daily_at_one_utc() {
        let config = ScheduleConfig::new(DEFAULT_CRON).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let next = config.cron.find_next_occurrence(&now, false).unwrap();
        assert_eq!(next.to_rfc3339(), "2026-11-26T01:00:00+00:00");
        let err = ScheduleConfig::new("every day").unwrap_err().to_string();
        assert!(err.contains("invalid refresh schedule"), "{err}");
    }
}
