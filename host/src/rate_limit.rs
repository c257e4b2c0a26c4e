//! A token bucket: the client-side limit on requests to a venue, the
//! per-route limit on webhook deliveries, and a strategy's budgets per
//! minute (CPU time, log bytes, orders).

use std::time::Duration;

/// A token bucket: `per_minute` tokens a minute, holding at most
/// `capacity` (requests: bursts of up to a tenth of a minute's).
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    capacity: f64,
    /// Tokens left and when they were counted; held only for arithmetic.
    state: std::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl RateLimiter {
    /// Requests: `per_minute` a minute, in bursts of up to a tenth of that.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        Self::with_capacity(per_minute, (per_minute / 10.0).max(1.0))
    }

    /// A budget: `per_minute` units a minute, a whole minute's at once, so
    /// no minute ever passes more than two minutes' worth.
    pub fn per_minute(per_minute: u64) -> Self {
        Self::with_capacity(per_minute as f64, per_minute as f64)
    }

    fn with_capacity(per_minute: f64, capacity: f64) -> Self {
        let state = std::sync::Mutex::new((capacity, tokio::time::Instant::now()));
        Self { per_second: per_minute / 60.0, capacity, state }
    }

    /// Refills for the time passed, then applies `spend` to the tokens
    /// there are; `spend` returns the tokens left and its answer.
    fn with_tokens<R>(&self, spend: impl FnOnce(f64) -> (f64, R)) -> R {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = tokio::time::Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.capacity);
        let (left, answer) = spend(tokens);
        *state = (left, now);
        answer
    }

    /// Takes a token, or says how long until one is there (for
    /// `Retry-After`).
    pub fn take(&self) -> Result<(), Duration> {
        self.with_tokens(|tokens| {
            if tokens >= 1.0 {
                (tokens - 1.0, Ok(()))
            } else if self.per_second > 0.0 {
                (tokens, Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second)))
            } else {
                (tokens, Err(Duration::MAX))
            }
        })
    }

    /// Takes `amount` tokens if all of them are there.
    pub fn take_amount(&self, amount: u64) -> bool {
        let amount = amount as f64;
        self.with_tokens(|tokens| if tokens >= amount { (tokens - amount, true) } else { (tokens, false) })
    }

    /// Spends `amount` whatever is there (for what is measured after it is
    /// used, like CPU time): the bucket may go below zero, and stays shut
    /// until it has refilled.
    pub fn charge(&self, amount: u64) {
        self.with_tokens(|tokens| (tokens - amount as f64, ()));
    }

    /// Whether anything is left to spend.
    pub fn has_room(&self) -> bool {
        self.with_tokens(|tokens| (tokens, tokens > 0.0))
    }

    /// Takes a token if one is there, without waiting.
    pub fn try_acquire(&self) -> bool {
        self.take().is_ok()
    }

    /// Waits until a request may be sent.
    pub async fn acquire(&self) {
        while let Err(wait) = self.take() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_acquire_refuses_only_when_the_bucket_is_empty() {
        let limiter = RateLimiter::new(60); // bursts of 6
        assert_eq!((0..10).filter(|_| limiter.try_acquire()).count(), 6);
    }

    #[test]
    fn a_budget_allows_a_minutes_worth_then_refills_with_time() {
        let budget = RateLimiter::per_minute(6_000);
        assert!(budget.take_amount(6_000));
        assert!(!budget.take_amount(10), "the minute's allowance is spent");
        std::thread::sleep(Duration::from_millis(50));
        // 50 ms (or more, on a slow machine) refills at least 5 units.
        assert!(budget.take_amount(4));
        assert!(!budget.take_amount(6_000));
        let none = RateLimiter::per_minute(0);
        assert!(!none.take_amount(1) && none.take() == Err(Duration::MAX), "a budget of 0 allows nothing");
    }

    #[test]
    fn a_budget_charged_past_empty_stays_shut_until_repaid() {
        let budget = RateLimiter::per_minute(60_000);
        budget.charge(120_000);
        assert!(!budget.has_room());
        assert!(!budget.take_amount(1));
    }

    #[test]
    fn a_refusal_says_how_long_to_wait() {
        let limiter = RateLimiter::new(60); // bursts of 6, one a second
        for _ in 0..6 {
            assert!(limiter.take().is_ok());
        }
        let wait = limiter.take().unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_spaces_requests_after_a_burst() {
        let limiter = RateLimiter::new(600); // 10 a second, bursts of 60
        let start = tokio::time::Instant::now();
        for _ in 0..60 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst passes at once");
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(990) && waited <= Duration::from_millis(1010), "{waited:?}");
    }
}
