//! Requests per second per client (an address): a token bucket each, refilled at `per_sec`
//! and holding at most `burst`, so a client may send a short burst and then its rate. Clients
//! are remembered in bounded memory: beyond `max_clients`, the one heard from longest ago is
//! forgotten (it returns with a full bucket, which costs at most one burst).

use std::collections::BTreeMap;

use super::Millis;

pub const MAX_CLIENTS: usize = 4_096;

#[derive(Clone, Debug)]
struct Bucket {
    /// Tokens, in thousandths, so a millisecond's refill is exact.
    milli_tokens: u64,
    at: Millis,
}

#[derive(Clone, Debug)]
pub struct RateLimit<K: Ord + Clone> {
    per_sec: u64,
    burst: u64,
    max_clients: usize,
    buckets: BTreeMap<K, Bucket>,
}

impl<K: Ord + Clone> RateLimit<K> {
    pub fn new(per_sec: u64, burst: u64, max_clients: usize) -> RateLimit<K> {
        RateLimit {
            per_sec,
            burst: burst.max(1),
            max_clients: max_clients.max(1),
            buckets: BTreeMap::new(),
        }
    }

    /// Whether `client` may make a request at `now` (and, if so, it is counted).
    pub fn allow(&mut self, now: Millis, client: K) -> bool {
        let full = self.burst * 1_000;
        if !self.buckets.contains_key(&client) && self.buckets.len() >= self.max_clients {
            super::forget_oldest(&mut self.buckets, |b| b.at);
        }
        let b = self.buckets.entry(client).or_insert(Bucket {
            milli_tokens: full,
            at: now,
        });
        // Per millisecond a client earns `per_sec` thousandths of a token.
        let earned = now.saturating_sub(b.at).saturating_mul(self.per_sec);
        b.milli_tokens = b.milli_tokens.saturating_add(earned).min(full);
        b.at = b.at.max(now);
        if b.milli_tokens < 1_000 {
            return false;
        }
        b.milli_tokens -= 1_000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_client_in_bounded_memory() {
        // 10 a second, bursts of 3, two clients remembered.
        let mut r = RateLimit::new(10, 3, 2);
        // (now ms, client, allowed)
        let table = [
            (0, 'a', true),
            (0, 'a', true),
            (0, 'a', true),
            (0, 'a', false),
            // Another client has its own bucket.
            (0, 'b', true),
            // 100 ms earns a: one token.
            (99, 'a', false),
            (100, 'a', true),
            (100, 'a', false),
            // A long silence refills only up to the burst.
            (10_000, 'a', true),
            (10_000, 'a', true),
            (10_000, 'a', true),
            (10_000, 'a', false),
            // A third client forgets the stalest (b, last heard at 0) ...
            (10_000, 'c', true),
            // ... which comes back with a full bucket.
            (10_000, 'b', true),
            // A clock that goes backwards earns nothing and takes nothing.
            (5_000, 'b', true),
            (5_000, 'b', true),
            (5_000, 'b', false),
        ];
        for (i, (now, client, allowed)) in table.into_iter().enumerate() {
            assert_eq!(r.allow(now, client), allowed, "row {i}");
            assert!(r.buckets.len() <= 2, "row {i}");
        }
    }
}
