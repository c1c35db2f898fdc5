//! Rate limits: per-key token buckets (the generic cell rate algorithm), for actions that use
//! the cloud's private key on a caller's input and for the console's sign-in attempts.
//!
//! RegisterImage decrypts the bundle key a manifest carries with the cloud's RSA key, and
//! answers differently when it does not decrypt: an RSA decryption oracle on the cloud key.
//! The `rsa` crate (0.9) is not constant time (RUSTSEC-2023-0071, the Marvin attack), and
//! such attacks need a great many decryptions timed precisely, nearly all of which fail (a
//! crafted ciphertext rarely decrypts to a well-padded key). Each account therefore takes a
//! token before every unwrap and gets it back when the key unwraps: failed unwraps, the
//! oracle's answers, come in a short burst only, then slowly, orders of magnitude too few
//! for an attack, while registering valid bundles is never held back. A refusal is EC2's
//! `RequestLimitExceeded` (HTTP 503), which SDKs retry with back-off.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many failed key unwraps an account may have back to back (and how many unwraps it
/// may have under way at once): a user retrying a few bundles made for the wrong cloud is
/// not held back.
pub const UNWRAP_BURST: u32 = 10;

/// After the burst, one more unwrap every this long: 17,280 failures a day per account, far
/// below the hundreds of thousands to millions of timed decryptions the Marvin attack needs.
pub const UNWRAP_EVERY: Duration = Duration::from_secs(5);

/// Past this many keys tracked, those whose burst is whole again are forgotten (their
/// next request finds a full burst, as it would anyway).
const PRUNE_ABOVE: usize = 1024;

/// Token buckets by key (an account, an address, a user name), kept as the time at which
/// each key's bucket is next full (the generic cell rate algorithm: one instant per key).
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    burst: u32,
    full_at: Mutex<HashMap<String, Instant>>,
}

impl Throttle {
    /// Buckets of `burst` tokens (at least one), one token back every `every`.
    pub fn new(every: Duration, burst: u32) -> Throttle {
        Throttle {
            every,
            burst: burst.max(1),
            full_at: Mutex::default(),
        }
    }

    /// Takes one token for `key` now; when its burst is spent, how long until one is
    /// allowed again.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        self.take_at(key, Instant::now())
    }

    /// Gives back the token `key` took (the action it guarded told an attacker nothing).
    pub fn give_back(&self, key: &str) {
        let mut full_at = self.full_at.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = full_at.get_mut(key) {
            *at = at.checked_sub(self.every).unwrap_or(*at);
        }
    }

    fn take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut full_at = self.full_at.lock().unwrap_or_else(PoisonError::into_inner);
        let tolerance = self.every * (self.burst - 1);
        let at = full_at.get(key).copied().unwrap_or(now).max(now);
        let ahead = at - now;
        if ahead > tolerance {
            return Err(ahead - tolerance);
        }
        full_at.insert(key.to_owned(), at + self.every);
        if full_at.len() > PRUNE_ABOVE {
            full_at.retain(|_, at| *at > now);
        }
        Ok(())
    }
}

/// Per-account buckets for key unwrapping: [`UNWRAP_BURST`], then one every [`UNWRAP_EVERY`].
#[derive(Debug)]
pub struct UnwrapThrottle(Throttle);

impl Default for UnwrapThrottle {
    fn default() -> Self {
        UnwrapThrottle(Throttle::new(UNWRAP_EVERY, UNWRAP_BURST))
    }
}

impl std::ops::Deref for UnwrapThrottle {
    type Target = Throttle;
    fn deref(&self) -> &Throttle {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_every_interval_per_account() {
        let throttle = UnwrapThrottle::default();
        let t0 = Instant::now();
        for _ in 0..UNWRAP_BURST {
            assert_eq!(throttle.take_at("a", t0), Ok(()));
        }
        assert_eq!(throttle.take_at("a", t0), Err(UNWRAP_EVERY));
        // Another account has its own burst.
        assert_eq!(throttle.take_at("b", t0), Ok(()));
        let half = UNWRAP_EVERY / 2;
        assert_eq!(throttle.take_at("a", t0 + half), Err(UNWRAP_EVERY - half));
        assert_eq!(throttle.take_at("a", t0 + UNWRAP_EVERY), Ok(()));
        assert!(throttle.take_at("a", t0 + UNWRAP_EVERY).is_err());
        // A quiet account gets its whole burst back, no more.
        let later = t0 + UNWRAP_EVERY * 100;
        for _ in 0..UNWRAP_BURST {
            assert_eq!(throttle.take_at("a", later), Ok(()));
        }
        assert!(throttle.take_at("a", later).is_err());
    }

    #[test]
    fn unwraps_given_back_cost_nothing() {
        let throttle = UnwrapThrottle::default();
        let t0 = Instant::now();
        for _ in 0..UNWRAP_BURST * 3 {
            assert_eq!(throttle.take_at("a", t0), Ok(()));
            throttle.give_back("a");
        }
        for _ in 0..UNWRAP_BURST {
            assert_eq!(throttle.take_at("a", t0), Ok(()));
        }
        assert!(throttle.take_at("a", t0).is_err());
    }

    #[test]
    fn accounts_with_a_full_burst_are_forgotten() {
        let throttle = UnwrapThrottle::default();
        let t0 = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            throttle.take_at(&i.to_string(), t0).unwrap();
        }
        throttle.take_at("last", t0 + UNWRAP_EVERY).unwrap();
        let tracked = throttle.0.full_at.lock().unwrap().len();
        assert_eq!(tracked, 1);
    }
}
