//! The tally of one scenario: what was sent and acked, and what reached the
//! recipients and the archive.

use std::collections::{HashMap, HashSet};

/// Counts of one scenario. "Lost" means acked but missing at a recipient or
/// in the archive; "duplicated" means persisted more than once.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Scenario name.
    pub scenario: String,
    /// The fault injected.
    pub fault: String,
    /// Sends attempted.
    pub sent: u64,
    /// msg_ids of acked sends.
    pub acked: HashSet<String>,
    /// msg_id → how many times a recipient (after dedup by the client, if any) saw it.
    pub delivered: HashMap<String, u64>,
    /// msg_id → rows in the archive.
    pub persisted: HashMap<String, u64>,
    /// The scenario's timing figure, e.g. "reclaim 1.2 s".
    pub figure: String,
}

impl Tally {
    /// A tally for a scenario and its fault.
    pub fn new(scenario: &str, fault: &str) -> Self {
        Tally {
            scenario: scenario.into(),
            fault: fault.into(),
            ..Tally::default()
        }
    }

    /// Acked messages not delivered or not persisted.
    pub fn lost(&self) -> u64 {
        self.acked
            .iter()
            .filter(|id| !self.delivered.contains_key(*id) || !self.persisted.contains_key(*id))
            .count() as u64
    }

    /// Messages persisted more than once.
    pub fn duplicated(&self) -> u64 {
        self.persisted.values().filter(|n| **n > 1).count() as u64
    }

    /// The one-line report.
    pub fn line(&self) -> String {
        format!(
            "{} | {} | sent {} acked {} delivered {} persisted {} lost {} duplicated {} | {}",
            self.scenario,
            self.fault,
            self.sent,
            self.acked.len(),
            self.delivered.len(),
            self.persisted.len(),
            self.lost(),
            self.duplicated(),
            self.figure
        )
    }

    /// Prints the report and panics when anything acked was lost or persisted twice.
    pub fn check(&self) {
        println!("RELIABILITY {}", self.line());
        assert_eq!(self.lost(), 0, "lost messages: {}", self.line());
        assert_eq!(self.duplicated(), 0, "duplicated rows: {}", self.line());
    }
}
