//! What a key has been charged, as the management API reports it: the ledger's charges, each
//! with the task it paid for.

use crate::ids::TaskId;

/// Which charges a report covers.
#[derive(Debug, Default)]
pub struct UsageFilter<'a> {
    pub model: Option<&'a str>,
    /// Charged at or after this time.
    pub from_ms: Option<i64>,
    /// Charged before this time.
    pub until_ms: Option<i64>,
}

/// One charge.
#[derive(Clone, Debug)]
pub struct UsageItem {
    /// The ledger entry: the billing transaction.
    pub entry_id: i64,
    pub task_id: TaskId,
    pub model: String,
    pub tokens: i64,
    pub cost_usd_micros: i64,
    pub charged_at_ms: i64,
    /// `draft` or `final` for those legs of draft → final; `None` for every other task.
    pub leg: Option<String>,
}

/// Charges of one model, drafts and finals apart from its other tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelUsage {
    pub model: String,
    /// `draft` or `final` for those legs of draft → final; `None` for every other task.
    pub leg: Option<String>,
    pub requests: i64,
    pub tokens: i64,
    pub cost_usd_micros: i64,
}

/// Charges of one model on one UTC day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayUsage {
    pub day_start_ms: i64,
    pub model: String,
    pub requests: i64,
    pub cost_usd_micros: i64,
}

/// Every charge a filter matches, summed by model and by day and model.
#[derive(Clone, Debug, Default)]
pub struct UsageTotals {
    pub by_model: Vec<ModelUsage>,
    /// Oldest day first, models in name order within a day.
    pub by_day_and_model: Vec<DayUsage>,
}

impl UsageTotals {
    /// What each day cost, every model together, oldest first.
    pub fn by_day(&self) -> Vec<(i64, i64)> {
        let mut days: Vec<(i64, i64)> = Vec::new();
        for usage in &self.by_day_and_model {
            match days.last_mut() {
                Some((day, cost)) if *day == usage.day_start_ms => *cost += usage.cost_usd_micros,
                _ => days.push((usage.day_start_ms, usage.cost_usd_micros)),
            }
        }
        days
    }

    pub fn requests(&self) -> i64 {
        self.by_model.iter().map(|m| m.requests).sum()
    }

    pub fn tokens(&self) -> i64 {
        self.by_model.iter().map(|m| m.tokens).sum()
    }

    pub fn cost_usd_micros(&self) -> i64 {
        self.by_model.iter().map(|m| m.cost_usd_micros).sum()
    }
}

/// A task completed upstream: what its customer was charged and what its vendor reported,
/// for the operator's cost report.
#[derive(Clone, Debug)]
pub struct VendorCharge {
    pub model: String,
    /// The vendor that made it (the task's provider).
    pub vendor: String,
    pub channel: String,
    pub tokens: i64,
    pub cost_usd_micros: i64,
    /// The video's length, from its stored result.
    pub video_seconds: f64,
    pub upstream_tokens: Option<i64>,
    pub upstream_compute_ms: Option<i64>,
    pub upstream_cost_usd_micros: Option<i64>,
}

/// Milliseconds in a UTC day, the unit `daily_cost` groups by.
pub const DAY_MS: i64 = 86_400_000;
