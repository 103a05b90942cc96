//! What a peer on the allow-list may ask of this node, and what happens when it breaks the protocol.
//!
//! Being on the allow-list proves a key, not good behaviour: a site node can be compromised or broken. So every
//! peer gets a budget of protocol violations (a malformed, truncated, oversized or stalled request on the data
//! plane; unreadable or flooding gossip on the control plane). Past it the peer is *dropped*: its connections on
//! both planes are closed with the reason, both planes refuse it for [`DROP_FOR`], and `ferry status` names it
//! and why. Requests that are well formed are never violations, however many; they are paced instead
//! ([`REQUESTS_PER_SEC`]), so a flood of them costs the node a bounded share of its cores.
//!
//! This is the bookkeeping alone — no sockets, no clock of its own (every call takes `now`) — so it is tested
//! without a network. [`super::Network::violation`] acts on its decisions.

use libp2p::PeerId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Violations a peer may commit; the one that reaches this count drops it.
pub const VIOLATION_BUDGET: u32 = 10;
/// A peer with no violation for this long starts its budget afresh.
pub const VIOLATIONS_FORGOTTEN: Duration = Duration::from_secs(600);
/// How long a dropped peer is refused on both planes.
pub const DROP_FOR: Duration = Duration::from_secs(60);
/// Data-plane requests a peer may have answered per second, over all its connections…
pub const REQUESTS_PER_SEC: f64 = 256.0;
/// …after a burst of this many. A sync asks for batches of up to 4 MiB, so an honest peer asks a few dozen a
/// second; past the rate a peer's next stream waits (no violation).
pub const REQUEST_BURST: f64 = 512.0;
/// Control-plane messages (gossip, hellos) a peer may send per second…
pub const CONTROL_PER_SEC: f64 = 10.0;
/// …after a burst of this many. An honest node gossips its follows and its site pins once a minute and a release
/// when it gets one; each message past the rate is ignored and counted as a violation.
pub const CONTROL_BURST: f64 = 200.0;

/// A token bucket: `rate` a second, at most `burst` saved.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let secs = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + secs * rate).min(burst);
        self.at = now;
    }

    /// Take a token now, going into debt if need be; how long until the debt is paid.
    fn reserve(&mut self, rate: f64, burst: f64, now: Instant) -> Duration {
        self.refill(rate, burst, now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// Take a token if one is there.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        self.refill(rate, burst, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One peer's record.
#[derive(Debug)]
struct Record {
    violations: u32,
    first: Instant,
    last_at: Instant,
    dropped_until: Option<Instant>,
    requests: Bucket,
    control: Bucket,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record {
            violations: 0,
            first: now,
            last_at: now,
            dropped_until: None,
            requests: Bucket::full(REQUEST_BURST, now),
            control: Bucket::full(CONTROL_BURST, now),
        }
    }
}

/// Every peer's record. Entries exist only for allowed peers that asked something, so the map is bounded by the
/// allow-list.
#[derive(Debug, Default)]
pub struct Conduct {
    peers: Mutex<HashMap<PeerId, Record>>,
}

impl Conduct {
    /// Count a violation by `peer`, described by `what`. When this one spends the budget, returns why the peer is
    /// dropped (for its connections' close reason, the log and `ferry status`); once: violations while the peer
    /// is dropped count for nothing.
    pub fn violation(&self, peer: PeerId, what: &str, now: Instant) -> Option<String> {
        let mut peers = self.peers.lock().expect("poisoned");
        let r = peers.entry(peer).or_insert_with(|| Record::new(now));
        if r.dropped_until.is_some_and(|t| now < t) {
            return None;
        }
        if r.violations == 0 || now.saturating_duration_since(r.last_at) > VIOLATIONS_FORGOTTEN {
            r.violations = 0;
            r.first = now;
        }
        r.violations += 1;
        r.last_at = now;
        if r.violations < VIOLATION_BUDGET {
            return None;
        }
        let secs = now.saturating_duration_since(r.first).as_secs();
        let reason = format!(
            "{} protocol violations in {secs} s (last: {what}); refused for {} s",
            r.violations,
            DROP_FOR.as_secs()
        );
        r.violations = 0;
        r.dropped_until = Some(now + DROP_FOR);
        Some(reason)
    }

    /// How much longer `peer` is refused, if it was dropped.
    pub fn dropped(&self, peer: &PeerId, now: Instant) -> Option<Duration> {
        let peers = self.peers.lock().expect("poisoned");
        let until = peers.get(peer)?.dropped_until?;
        (now < until).then(|| until - now)
    }

    /// Reserve the answer to one data-plane request from `peer`: how long to wait before taking it on.
    pub fn pace_request(&self, peer: PeerId, now: Instant) -> Duration {
        let mut peers = self.peers.lock().expect("poisoned");
        let r = peers.entry(peer).or_insert_with(|| Record::new(now));
        r.requests.reserve(REQUESTS_PER_SEC, REQUEST_BURST, now)
    }

    /// Whether a control-plane message from `peer` is within its rate (if not, it is to be ignored and counted).
    pub fn control_message(&self, peer: PeerId, now: Instant) -> bool {
        let mut peers = self.peers.lock().expect("poisoned");
        let r = peers.entry(peer).or_insert_with(|| Record::new(now));
        r.control.take(CONTROL_PER_SEC, CONTROL_BURST, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_violation_that_spends_the_budget_drops_the_peer_once_and_for_a_while() {
        let c = Conduct::default();
        let (peer, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for i in 1..VIOLATION_BUDGET {
            assert_eq!(
                c.violation(peer, "x", t0 + Duration::from_secs(i.into())),
                None
            );
        }
        assert_eq!(c.violation(other, "x", t0), None, "budgets are per peer");
        let t = t0 + Duration::from_secs(VIOLATION_BUDGET.into());
        let reason = c
            .violation(peer, "a frame of 99 bytes", t)
            .expect("dropped");
        assert_eq!(
            reason,
            format!(
                "{VIOLATION_BUDGET} protocol violations in {} s (last: a frame of 99 bytes); \
                 refused for 60 s",
                VIOLATION_BUDGET - 1
            )
        );
        assert_eq!(c.violation(peer, "x", t), None, "dropped once");
        assert_eq!(c.dropped(&peer, t), Some(DROP_FOR));
        assert_eq!(c.dropped(&other, t), None);
        assert_eq!(c.dropped(&peer, t + DROP_FOR), None, "refused for a while");
    }

    #[test]
    fn violations_long_apart_are_forgotten() {
        let c = Conduct::default();
        let peer = PeerId::random();
        let mut t = Instant::now();
        for _ in 0..3 * VIOLATION_BUDGET {
            t += VIOLATIONS_FORGOTTEN + Duration::from_secs(1);
            assert_eq!(c.violation(peer, "x", t), None);
        }
        // A steady drip, however slow, is not (the last one above counted).
        for _ in 2..VIOLATION_BUDGET {
            t += VIOLATIONS_FORGOTTEN;
            assert_eq!(c.violation(peer, "x", t), None);
        }
        assert!(c.violation(peer, "x", t).is_some());
    }

    #[test]
    fn requests_past_the_burst_wait_their_turn_and_control_messages_past_it_are_refused() {
        let c = Conduct::default();
        let peer = PeerId::random();
        let t = Instant::now();
        for _ in 0..REQUEST_BURST as usize {
            assert_eq!(c.pace_request(peer, t), Duration::ZERO);
        }
        let wait = c.pace_request(peer, t);
        assert!(
            (wait.as_secs_f64() - 1.0 / REQUESTS_PER_SEC).abs() < 1e-6,
            "{wait:?}"
        );
        let later = t + Duration::from_secs(1);
        assert_eq!(c.pace_request(peer, later), Duration::ZERO, "refilled");

        for _ in 0..CONTROL_BURST as usize {
            assert!(c.control_message(peer, t));
        }
        assert!(!c.control_message(peer, t));
        assert!(c.control_message(peer, t + Duration::from_secs(1)));
    }
}
