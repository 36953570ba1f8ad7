//! When the sync loop acts, as plain data: the coalescing window, the retry with backoff,
//! the periodic drift check and the bounds of a catch-up. No clock and no thread: every
//! decision takes the moment it is made for, so it is tested with made-up instants.
//!
//! ```text
//! event (stamped at) --on_event--> window opens at the first one
//! now --batch_due--> make a batch? --on_applied(now, ok)--> window closes; retry with backoff
//! now --next_deadline--> how long the loop may sleep
//! now --drift_due--> read the live table back?
//! ```
//!
//! A batch starts at most `coalesce` after the first event it holds, however fast events
//! keep coming: the window is a maximum delay, not a quiet period. While a list is
//! incomplete nothing is synced, so neither the window nor a retry may wake the loop:
//! once past, they would make every wait zero and the loop would spin beside the watcher
//! decoding the list.

use std::time::{Duration, Instant};

/// The longest the loop sleeps without beating the heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// The most time a batch spends taking in a backlog before it is made. Above the time a
/// batch costs (tens of milliseconds on a large node), so that when the loop falls
/// behind, each batch takes many events and it catches up; below a liveness period.
pub const CATCH_UP_LIMIT: Duration = Duration::from_millis(250);

/// The first wait after a failed batch; it doubles with each failure in a row.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The sync loop's timers.
#[derive(Debug, Clone)]
pub struct Schedule {
    coalesce: Duration,
    resync: Duration,
    /// When the watcher yielded the first event not yet in a batch.
    window: Option<Instant>,
    /// When the failed batch is tried again.
    retry_at: Option<Instant>,
    backoff: Duration,
    next_resync: Instant,
}

impl Schedule {
    /// A schedule started at `now`: the first drift check is `resync` later.
    pub fn new(now: Instant, coalesce: Duration, resync: Duration) -> Self {
        Schedule {
            coalesce,
            resync,
            window: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            next_resync: now + resync,
        }
    }

    /// An event the watcher yielded at `at` was taken in. The window opens when the first
    /// event of the batch arrived, not when its handling ended: `--coalesce-ms` bounds the
    /// delay from the event, whatever handling it cost.
    pub fn on_event(&mut self, at: Instant) {
        self.window.get_or_insert(at);
    }

    /// Whether events wait for a batch.
    pub fn pending(&self) -> bool {
        self.window.is_some()
    }

    /// The latest the loop may sleep until, at `now`; `listed`: every list is complete
    /// (else only the heartbeat and the drift check wake it).
    pub fn next_deadline(&self, now: Instant, listed: bool) -> Instant {
        let mut deadline = self.next_resync.min(now + HEARTBEAT);
        if listed {
            if let Some(t) = self.window {
                deadline = deadline.min(t + self.coalesce);
            }
            if let Some(t) = self.retry_at {
                deadline = deadline.min(t);
            }
        }
        deadline
    }

    /// Whether a batch is due at `now`: the window has run out, a retry is due, or the
    /// kernel holds nothing of ours yet (`synced` false) and no retry is waiting.
    pub fn batch_due(&self, now: Instant, synced: bool) -> bool {
        self.window.is_some_and(|t| now >= t + self.coalesce)
            || self.retry_at.is_some_and(|t| now >= t)
            || !synced && self.retry_at.is_none()
    }

    /// The batch due at `now` was made (`ok`: the kernel took it): its window closes, and
    /// a failure is retried after a backoff that doubles with each failure in a row.
    pub fn on_applied(&mut self, now: Instant, ok: bool) {
        self.window = None;
        if ok {
            self.retry_at = None;
            self.backoff = FIRST_BACKOFF;
        } else {
            self.retry_at = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Whether the live table is to be read back at `now`; if so, the next check is
    /// `resync` later.
    pub fn drift_due(&mut self, now: Instant) -> bool {
        if now < self.next_resync {
            return false;
        }
        self.next_resync = now + self.resync;
        true
    }
}

/// Which messages a batch about to be made takes in. Behind a busy loop the channel
/// holds a backlog, and taking it whole is what lets the loop catch up (one batch, not
/// one per handful of events). Bounded by the time of arrival, so a producer faster than
/// the loop cannot starve the kernel: the first message that arrived after `until` is
/// handed back to open the next window; and by [`CATCH_UP_LIMIT`] of work, so that even
/// a loop that cannot keep up at all (events cost more to handle than the time between
/// them) still programs the kernel.
#[derive(Debug, Clone, Copy)]
pub struct CatchUp {
    until: Instant,
    stop: Instant,
}

impl CatchUp {
    /// A catch-up for the batch due at `until`, begun at `started`.
    pub fn new(until: Instant, started: Instant) -> Self {
        CatchUp {
            until,
            stop: started + CATCH_UP_LIMIT,
        }
    }

    /// Whether there is still time, at `now`, to take another message.
    pub fn working(&self, now: Instant) -> bool {
        now < self.stop
    }

    /// Whether a message the watcher yielded at `at` belongs to this batch.
    pub fn takes(&self, at: Instant) -> bool {
        at <= self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COALESCE: Duration = Duration::from_millis(5);
    const RESYNC: Duration = Duration::from_secs(300);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_window_is_a_maximum_delay_not_a_quiet_period() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, COALESCE, RESYNC);
        s.on_event(t0 + ms(1));
        // Events keep coming every millisecond: the window stays where the first opened it.
        for i in 2..=6 {
            s.on_event(t0 + ms(i));
            assert_eq!(s.batch_due(t0 + ms(i), true), i >= 6, "at {i} ms");
        }
        assert_eq!(s.next_deadline(t0 + ms(2), true), t0 + ms(6));
        s.on_applied(t0 + ms(6), true);
        assert!(!s.pending());
        assert!(!s.batch_due(t0 + ms(100), true), "nothing pending");
        // The next window opens with the next event, stamped when the watcher yielded it.
        s.on_event(t0 + ms(7));
        assert!(s.batch_due(t0 + ms(12), true));
    }

    #[test]
    fn an_incomplete_list_wakes_the_loop_only_for_the_heartbeat_and_drift() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, COALESCE, RESYNC);
        s.on_event(t0);
        s.on_applied(t0, false);
        s.on_event(t0 + ms(1));
        let later = t0 + ms(300);
        // Window and retry long past: while listing, the loop sleeps a heartbeat.
        assert_eq!(s.next_deadline(later, false), later + HEARTBEAT);
        assert_eq!(
            s.next_deadline(later, true),
            t0 + ms(6),
            "listed: the window's end, long past (no wait)"
        );
        let short = Schedule::new(t0, COALESCE, ms(500));
        assert_eq!(short.next_deadline(later, false), t0 + ms(500));
    }

    #[test]
    fn the_first_sync_is_due_at_once_and_failures_back_off() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, COALESCE, RESYNC);
        assert!(s.batch_due(t0, false), "the kernel holds nothing of ours");
        assert!(!s.batch_due(t0, true));
        let mut now = t0;
        for wait in [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000] {
            s.on_applied(now, false);
            assert!(!s.batch_due(now, false), "a retry waits its backoff");
            assert!(!s.batch_due(now + ms(wait - 1), false));
            assert_eq!(s.next_deadline(now, true), now + ms(wait).min(HEARTBEAT));
            now += ms(wait);
            assert!(s.batch_due(now, false), "retry after {wait} ms");
        }
        s.on_applied(now, true);
        assert!(
            !s.batch_due(now + ms(40_000), true),
            "no retry once it worked"
        );
        s.on_applied(now, false);
        assert!(s.batch_due(now + ms(250), false), "the backoff starts over");
    }

    #[test]
    fn drift_is_checked_every_resync() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, COALESCE, ms(1000));
        assert!(!s.drift_due(t0 + ms(999)));
        assert!(s.drift_due(t0 + ms(1200)));
        assert!(!s.drift_due(t0 + ms(2100)), "counted from the check");
        assert!(s.drift_due(t0 + ms(2200)));
        assert_eq!(s.next_deadline(t0 + ms(2900), false), t0 + ms(3200));
    }

    #[test]
    fn a_catch_up_takes_what_arrived_before_the_batch_for_a_bounded_time() {
        let t0 = Instant::now();
        let c = CatchUp::new(t0 + ms(10), t0 + ms(11));
        assert!(c.takes(t0) && c.takes(t0 + ms(10)));
        assert!(
            !c.takes(t0 + ms(10) + Duration::from_nanos(1)),
            "later: next window"
        );
        assert!(c.working(t0 + ms(11) + CATCH_UP_LIMIT - Duration::from_nanos(1)));
        assert!(!c.working(t0 + ms(11) + CATCH_UP_LIMIT));
    }
}
