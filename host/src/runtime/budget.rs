//! What one strategy instance may use, and the meters that enforce it.
//!
//! Per-call limits (deadline, memory, actions, bytes returned, state size)
//! hold everywhere: a breach is a fault the strategy restarts from. Limits
//! per minute (CPU, log and notification bytes, orders) hold in host mode
//! only, over wall-clock time: a breach throttles the strategy rather than
//! faulting it. A backtest has no per-minute limits, since it is meant to
//! use the machine as fast as it can.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::rate_limit::RateLimiter;

/// One strategy instance's limits. Every field has a documented default
/// (see the README's `[runtime]` section) and may be set per strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Wall time one guest call may take before it is interrupted.
    pub call_timeout: Duration,
    /// Linear memory the instance's store may grow to, in bytes.
    pub memory: usize,
    /// Core instances the store may hold (also bounded by the pooling
    /// allocator's per-store cap).
    pub instances: u32,
    /// Tables the store may hold, and elements in each.
    pub tables: u32,
    /// Resource handles (WASI pollables, streams, strategy instances) the
    /// store may hold at once: what a guest that never closes them leaks.
    pub handles: usize,
    pub table_elements: usize,
    /// Actions (orders, cancels, notifications) one call may return.
    pub actions_per_call: usize,
    /// Bytes one call may hand the host: its results, or the arguments of
    /// one host call (wasmtime's hostcall fuel). Strings that all point at
    /// one buffer count once each, so they cannot multiply the host's
    /// allocation. The default fits any call within the other limits
    /// (10,000 actions with a 4 KiB notification each).
    pub bytes_per_call: usize,
    /// Bytes of stdout, stderr and `log` kept per call.
    pub log_bytes_per_call: usize,
    /// The largest state `save-state` may return.
    pub state_bytes: usize,
    /// Limits per minute; `None` in a backtest.
    pub per_minute: Option<Rates>,
}

/// Limits per minute of wall time, each a token bucket holding a minute's worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// CPU time the strategy's calls may use.
    pub cpu: Duration,
    /// Bytes of stdout, stderr, `log` and notifications.
    pub log_bytes: u64,
    /// Orders the strategy may place.
    pub orders: u64,
}

impl Default for Rates {
    fn default() -> Self {
        Self { cpu: Duration::from_secs(30), log_bytes: 1 << 20, orders: 600 }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(1),
            memory: 64 << 20,
            instances: 64,
            tables: 64,
            handles: 10_000,
            table_elements: 100_000,
            actions_per_call: 10_000,
            bytes_per_call: 64 << 20,
            log_bytes_per_call: 16 << 10,
            state_bytes: 16 << 20,
            per_minute: None,
        }
    }
}

/// The `[limits]` table, and the `limits` of one strategy: each key left
/// out keeps the value it is laid over (the host-wide table's, or the
/// built-in default).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub call_timeout_ms: Option<u64>,
    pub memory_mib: Option<usize>,
    pub instances: Option<u32>,
    pub tables: Option<u32>,
    pub handles: Option<usize>,
    pub actions_per_call: Option<usize>,
    pub bytes_per_call: Option<usize>,
    pub log_bytes_per_call: Option<usize>,
    pub state_bytes: Option<usize>,
    pub cpu_ms_per_minute: Option<u64>,
    pub log_bytes_per_minute: Option<u64>,
    pub orders_per_minute: Option<u64>,
}

impl LimitsSection {
    /// `base` with this table's keys laid over it, per-minute limits
    /// included; values are clamped to what the runtime can honour.
    pub fn over(&self, base: &Budget) -> Budget {
        let rates = base.per_minute.unwrap_or_default();
        let per_minute = Rates {
            cpu: self.cpu_ms_per_minute.map_or(rates.cpu, Duration::from_millis),
            log_bytes: self.log_bytes_per_minute.unwrap_or(rates.log_bytes),
            orders: self.orders_per_minute.unwrap_or(rates.orders),
        };
        Budget {
            call_timeout: self.call_timeout_ms.map_or(base.call_timeout, |ms| Duration::from_millis(ms.max(1))),
            memory: self.memory_mib.map_or(base.memory, |mib| mib.clamp(1, super::MAX_STORE_MEMORY >> 20) << 20),
            instances: self.instances.unwrap_or(base.instances),
            tables: self.tables.unwrap_or(base.tables),
            handles: self.handles.unwrap_or(base.handles),
            table_elements: base.table_elements,
            actions_per_call: self.actions_per_call.unwrap_or(base.actions_per_call),
            bytes_per_call: self.bytes_per_call.unwrap_or(base.bytes_per_call).max(1024),
            log_bytes_per_call: self.log_bytes_per_call.unwrap_or(base.log_bytes_per_call),
            state_bytes: self.state_bytes.unwrap_or(base.state_bytes),
            per_minute: Some(per_minute),
        }
    }
}

/// A strategy's log and notification bytes per minute, shared by every
/// store it runs in (a restart does not refill it).
#[derive(Debug)]
pub struct LogRate {
    bytes: RateLimiter,
    flooded: AtomicU64,
}

impl LogRate {
    pub fn per_minute(bytes: u64) -> Self {
        Self { bytes: RateLimiter::per_minute(bytes), flooded: AtomicU64::new(0) }
    }

    /// Whether a message of `len` bytes fits this minute; a refusal is
    /// counted.
    pub fn admit(&self, len: usize) -> bool {
        let fits = self.bytes.take_amount(len as u64);
        if !fits {
            self.flooded.fetch_add(1, Ordering::Relaxed);
        }
        fits
    }

    /// Messages refused so far.
    pub fn flooded(&self) -> u64 {
        self.flooded.load(Ordering::Relaxed)
    }
}

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.clamp(0, 999_999_999) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_cpu_time_counts_work_not_sleep() {
        let start = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(30));
        let slept = thread_cpu_time() - start;
        assert!(slept < Duration::from_millis(10), "sleeping used {slept:?} of CPU");
        // Spinning advances it, however busy the machine is.
        let begun = std::time::Instant::now();
        let mut x = 0_u64;
        while thread_cpu_time() - start < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
            assert!(begun.elapsed() < Duration::from_secs(60), "CPU time never advanced");
        }
    }
}
