//! CPU time of this process, to report what a message costs independently of how the work was
//! spread over cores (throughput alone depends on where the scheduler put the tasks).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`: 100 in Linux's ABI on every
/// architecture it exposes it for).
const USER_HZ: u64 = 100;

/// CPU time (user and system, every thread, including those that have exited) of this process
/// so far; `None` where `/proc/self/stat` is unavailable or unreadable (not Linux).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, then utime (14) and stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_millis(ticks.checked_mul(1000 / USER_HZ)?))
}

/// Measures the process's CPU time over a span.
pub struct Meter(Option<Duration>);

impl Meter {
    pub fn start() -> Meter {
        Meter(process_cpu())
    }

    /// CPU time since `start`, if measurable.
    pub fn stop(self) -> Option<Duration> {
        process_cpu()?.checked_sub(self.0?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter_reads_below(meter: &Meter, cpu: Duration) -> bool {
        let now = Meter(meter.0).stop();
        now.is_some_and(|now| now < cpu)
    }

    #[test]
    fn busy_work_shows_as_cpu_time() {
        let Some(_) = process_cpu() else {
            return; // not Linux
        };
        const LIMIT: Duration = Duration::from_secs(10);
        let meter = Meter::start();
        let start = std::time::Instant::now();
        // Until the meter shows 50 ms (5 ticks), or 10 s pass on a machine that never runs us.
        let mut x = 0u64;
        while meter_reads_below(&meter, Duration::from_millis(50)) && start.elapsed() < LIMIT {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let cpu = meter.stop().expect("measurable on Linux");
        assert!(
            cpu >= Duration::from_millis(50),
            "{cpu:?} of CPU after spinning"
        );
        assert!(
            cpu <= start.elapsed() + Duration::from_millis(20),
            "{cpu:?}"
        );
    }
}
