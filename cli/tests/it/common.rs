//! Helpers of the process-level tests.

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_shop-analytics");

/// Sends SIGTERM (a graceful stop) and waits for the exit, failing the test after `within`.
pub fn sigterm_and_wait(child: &mut Child, within: Duration) -> ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("the child can be waited for") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "no exit within {within:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that is killed when dropped, so a failing test leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Kills workers at random points: for each target in turn, starts a worker with `spawn`, waits
/// until `progress` (events made durable, read from the destination) reaches the target, but at
/// least one more than before, so that every worker is killed only after it wrote something
/// itself, and SIGKILLs it. Returns the progress after each kill; fails the test if a target is
/// not reached within 120 s.
pub async fn kill_at_targets(
    targets: &[u64],
    mut spawn: impl FnMut() -> KillOnDrop,
    progress: impl AsyncFn() -> u64,
    what: &str,
) -> Vec<u64> {
    let mut after_kills = Vec::new();
    for target in targets {
        let target = (*target).max(progress().await + 1);
        let mut child = spawn();
        let deadline = Instant::now() + Duration::from_secs(120);
        while progress().await < target {
            assert!(
                Instant::now() < deadline,
                "the {what} did not reach {target} in 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        after_kills.push(progress().await);
    }
    after_kills
}
