//! `lb drain-director`: after every VIP is withdrawn, when the routers have
//! moved the flows away. The packet count through the director's VIPs is
//! sampled; the drain ends once it has stayed (nearly) flat for a quiet
//! period, or at the timeout. Plain arithmetic on samples: the caller reads
//! the counters and keeps the clock.

use std::time::{Duration, Instant};

/// How long the packet count must stay flat.
pub const QUIET: Duration = Duration::from_secs(2);
/// How often the caller samples.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Packets per second that still count as flat: a straggler retransmitting
/// to a withdrawn VIP, a router's probe.
pub const FLAT_PPS: u64 = 20;
/// The drain's limit when the operator names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// The count stayed flat for [`QUIET`].
    Quiet,
    /// The timeout came first: flows may still arrive.
    TimedOut,
}

#[derive(Clone, Debug)]
pub struct Drain {
    started: Instant,
    timeout: Duration,
    last: Option<(Instant, u64)>,
    /// Since when the count has been flat.
    flat_since: Option<Instant>,
}

impl Drain {
    pub fn new(now: Instant, timeout: Duration) -> Self {
        Self { started: now, timeout, last: None, flat_since: None }
    }

    /// Takes the packet count at `now`; `Some` once the drain is over.
    pub fn sample(&mut self, now: Instant, packets: u64) -> Option<Drained> {
        if let Some((at, before)) = self.last {
            let elapsed = now.saturating_duration_since(at);
            // Rounded up to a millisecond so two samples at one instant
            // cannot divide by zero.
            let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX).max(1);
            let flat = packets.saturating_sub(before).saturating_mul(1000) / ms <= FLAT_PPS;
            self.flat_since = if flat { self.flat_since.or(Some(at)) } else { None };
        }
        self.last = Some((now, packets));
        if self.flat_since.is_some_and(|since| now.saturating_duration_since(since) >= QUIET) {
            return Some(Drained::Quiet);
        }
        (now.saturating_duration_since(self.started) >= self.timeout).then_some(Drained::TimedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 200 ms at `rates` packets per second, one per step.
    fn run(timeout: Duration, rates: impl IntoIterator<Item = u64>) -> Option<(usize, Drained)> {
        let t0 = Instant::now();
        let mut d = Drain::new(t0, timeout);
        let mut packets = 0;
        for (i, rate) in rates.into_iter().enumerate() {
            packets += rate / 5;
            let now = t0 + SAMPLE_EVERY * u32::try_from(i).unwrap();
            if let Some(end) = d.sample(now, packets) {
                return Some((i, end));
            }
        }
        None
    }

    #[test]
    fn ends_after_a_quiet_period() {
        // Busy for a second, then flat: quiet 2 s after the last busy step.
        let rates = [100_000; 5].into_iter().chain(std::iter::repeat(0));
        assert_eq!(run(DEFAULT_TIMEOUT, rates.take(100)), Some((14, Drained::Quiet)));
    }

    #[test]
    fn a_trickle_is_flat_and_a_burst_starts_over() {
        assert_eq!(run(DEFAULT_TIMEOUT, std::iter::repeat_n(FLAT_PPS, 100)), Some((10, Drained::Quiet)));
        let mut rates = vec![0; 8];
        rates.push(10_000);
        rates.extend([0; 20]);
        assert_eq!(run(DEFAULT_TIMEOUT, rates), Some((18, Drained::Quiet)), "2 s after the burst");
    }

    #[test]
    fn times_out_while_flows_keep_coming() {
        assert_eq!(run(Duration::from_secs(3), std::iter::repeat_n(5000, 100)), Some((15, Drained::TimedOut)));
    }

    #[test]
    fn a_counter_going_back_counts_as_flat() {
        // Maps re-created under it: no underflow, no endless drain.
        let t0 = Instant::now();
        let mut d = Drain::new(t0, DEFAULT_TIMEOUT);
        assert_eq!(d.sample(t0, 1_000_000), None);
        assert_eq!(d.sample(t0 + Duration::from_secs(1), 0), None);
        assert_eq!(d.sample(t0 + Duration::from_secs(3), 0), Some(Drained::Quiet));
    }
}
