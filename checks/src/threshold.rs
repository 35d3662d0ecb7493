//! Consecutive-failure damping: one lost packet must not page anyone, and
//! one pass ends an incident.

use crate::result::{Outcome, Status};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Threshold {
    needed: u32,
    failures: u32,
}

impl Threshold {
    pub fn new(failures_before_critical: u32) -> Self {
        Threshold {
            needed: failures_before_critical.max(1),
            failures: 0,
        }
    }

    /// The outcome to report for this raw one, and the failures in a row.
    /// Unknown neither counts nor resets: the check could not look.
    pub fn apply(&mut self, raw: Outcome) -> (Outcome, u32) {
        match raw.status {
            Status::Critical => {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= self.needed {
                    (raw, self.failures)
                } else {
                    let held = Outcome {
                        status: Status::Warning,
                        message: format!(
                            "failed {} of {} times in a row before critical: {}",
                            self.failures, self.needed, raw.message
                        ),
                        details: raw.details,
                    };
                    (held, self.failures)
                }
            }
            Status::Ok | Status::Warning => {
                self.failures = 0;
                (raw, 0)
            }
            Status::Unknown => (raw, self.failures),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statuses(threshold: &mut Threshold, raws: &[Status]) -> Vec<Status> {
        raws.iter()
            .map(|&s| threshold.apply(Outcome::new(s, "x")).0.status)
            .collect()
    }

    #[test]
    fn critical_after_n_in_a_row_and_recovery_on_the_first_pass() {
        use Status::*;
        let mut t = Threshold::new(3);
        assert_eq!(
            statuses(
                &mut t,
                &[Critical, Critical, Critical, Critical, Ok, Critical]
            ),
            [Warning, Warning, Critical, Critical, Ok, Warning]
        );
    }

    #[test]
    fn unknown_neither_counts_nor_resets() {
        use Status::*;
        let mut t = Threshold::new(2);
        assert_eq!(
            statuses(&mut t, &[Critical, Unknown, Critical]),
            [Warning, Unknown, Critical]
        );
    }

    #[test]
    fn a_threshold_of_one_is_immediate() {
        let mut t = Threshold::new(0);
        assert_eq!(statuses(&mut t, &[Status::Critical]), [Status::Critical]);
    }
}
