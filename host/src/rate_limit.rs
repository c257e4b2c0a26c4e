//! A token bucket: the client-side limit on requests to a venue, and the
//! per-route limit on webhook deliveries.

use std::time::Duration;

/// A token bucket: `per_minute` requests a minute, in bursts of up to a tenth of that.
pub struct RateLimiter {
    per_second: f64,
    capacity: f64,
    /// Tokens left and when they were counted; held only for arithmetic.
    state: std::sync::Mutex<(f64, tokio::time::Instant)>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = f64::from(per_minute.max(1));
        let capacity = (per_minute / 10.0).max(1.0);
        let state = std::sync::Mutex::new((capacity, tokio::time::Instant::now()));
        Self { per_second: per_minute / 60.0, capacity, state }
    }

    /// Takes a token, or says how long until one is there (for
    /// `Retry-After`).
    pub fn take(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = tokio::time::Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second).min(self.capacity);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
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
