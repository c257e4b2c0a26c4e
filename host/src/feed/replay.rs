//! Replays recorded bars as if they were arriving live.

use std::collections::VecDeque;
use std::time::Duration;

use super::{FeedError, MarketData};
use crate::bar::Bar;

/// Plays bars one timestamp at a time, `pace` apart.
pub struct ReplayFeed {
    bars: VecDeque<Bar>,
    interval: tokio::time::Interval,
}

impl ReplayFeed {
    /// `bars` must be in time order; bars sharing a time are delivered together.
    pub fn new(bars: Vec<Bar>, pace: Duration) -> Self {
        let mut interval = tokio::time::interval(pace.max(Duration::from_micros(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { bars: bars.into(), interval }
    }
}

#[async_trait::async_trait]
impl MarketData for ReplayFeed {
    async fn next_batch(&mut self) -> Result<Option<Vec<Bar>>, FeedError> {
        let Some(time) = self.bars.front().map(|b| b.time) else {
            return Ok(None);
        };
        self.interval.tick().await;
        let same_time = self.bars.iter().take_while(|b| b.time == time).count();
        Ok(Some(self.bars.drain(..same_time).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn groups_bars_by_time_and_ends() {
        let csv = "Date,Open,High,Low,Close,Volume\n2000-03-01,1,2,1,2,3\n2000-03-02,1,2,1,2,3\n";
        let mut bars = crate::feed::parse_csv(csv.as_bytes(), "t", "A").unwrap();
        let mut other = crate::feed::parse_csv(csv.as_bytes(), "t", "B").unwrap();
        bars.append(&mut other);
        bars.sort_by_key(|b| b.time);
        let mut feed = ReplayFeed::new(bars, Duration::from_millis(1));
        assert_eq!(feed.next_batch().await.unwrap().unwrap().len(), 2);
        assert_eq!(feed.next_batch().await.unwrap().unwrap().len(), 2);
        assert!(feed.next_batch().await.unwrap().is_none());
    }
}
