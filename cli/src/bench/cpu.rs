//! CPU time of this process, to report what a message costs independently of how the work was
//! spread over cores (throughput alone depends on where the scheduler put the tasks).

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`: 100 in Linux's ABI on every
/// architecture it exposes it for).
const USER_HZ: u64 = 100;

/// CPU time (user and system) of this process so far: the sum over its threads of the
/// nanoseconds they spent on a CPU (`/proc/self/task/*/schedstat`); where that is unavailable,
/// the process's own count in clock ticks (10 ms resolution, which short runs would feel).
/// `None` off Linux. Threads that exit are no longer counted, so a meter should span work whose
/// threads outlive it (the bench's runtimes do).
fn process_cpu() -> Option<Duration> {
    threads_cpu().or_else(process_ticks)
}

fn threads_cpu() -> Option<Duration> {
    let mut total: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let mut path = task.ok()?.path();
        path.push("schedstat");
        // A thread may exit between the listing and the read: it no longer counts.
        let Ok(stat) = std::fs::read_to_string(path) else {
            continue;
        };
        let on_cpu: u64 = stat.split_whitespace().next()?.parse().ok()?;
        total = total.checked_add(on_cpu)?;
    }
    Some(Duration::from_nanos(total))
}

fn process_ticks() -> Option<Duration> {
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
        assert_eq!(
            threads_cpu().is_some(),
            process_ticks().is_some(),
            "both on Linux"
        );
        let Some(_) = process_cpu() else {
            return; // not Linux
        };
        const LIMIT: Duration = Duration::from_secs(10);
        let meter = Meter::start();
        let start = std::time::Instant::now();
        // Until the meter shows 50 ms, or 10 s pass on a machine that never runs us.
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
