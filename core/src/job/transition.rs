//! The one table of a job's state transitions.

use crate::job::event::JobEventKind;
use crate::job::state::JobState;

use JobEventKind as E;
use JobState as S;

/// Every allowed transition: `(from, event, to)`. Anything not listed is refused.
///
/// - progress keeps the state; only Uploading and Transferring have a percentage;
/// - stage 2 starts from Uploading only (the pipeline sends `TransferStarted` once the
///   package is staged, verified and accepted by its plugin);
/// - Installing and Restarting may be skipped: some BMSes apply without a separate step or
///   without an observable restart ("normally no downtime");
/// - Completed is reached only through Verifying: the engine itself confirms the version;
/// - every state that has not ended can fail; Completed and Failed accept nothing;
/// - the modules behind a BMS report their progress in every state of stage 2, without
///   changing it.
pub const TRANSITIONS: &[(JobState, JobEventKind, JobState)] = &[
    (S::Uploading, E::UploadProgress, S::Uploading),
    (S::Uploading, E::TransferStarted, S::Transferring),
    (S::Uploading, E::Failed, S::Failed),
    (S::Transferring, E::TransferProgress, S::Transferring),
    (S::Transferring, E::ModulesChanged, S::Transferring),
    (S::Transferring, E::InstallStarted, S::Installing),
    (S::Transferring, E::RestartStarted, S::Restarting),
    (S::Transferring, E::VerifyStarted, S::Verifying),
    (S::Transferring, E::Failed, S::Failed),
    (S::Installing, E::ModulesChanged, S::Installing),
    (S::Installing, E::RestartStarted, S::Restarting),
    (S::Installing, E::VerifyStarted, S::Verifying),
    (S::Installing, E::Failed, S::Failed),
    (S::Restarting, E::ModulesChanged, S::Restarting),
    (S::Restarting, E::VerifyStarted, S::Verifying),
    (S::Restarting, E::Failed, S::Failed),
    (S::Verifying, E::ModulesChanged, S::Verifying),
    (S::Verifying, E::Completed, S::Completed),
    (S::Verifying, E::Failed, S::Failed),
];

/// An event the job's current state does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a job in state {state:?} does not accept {event}")]
pub struct InvalidTransition {
    /// The job's state.
    pub state: JobState,
    /// The refused event.
    pub event: JobEventKind,
}

/// The state after `event` in `state`, looked up in [`TRANSITIONS`].
pub fn transition(state: JobState, event: JobEventKind) -> Result<JobState, InvalidTransition> {
    TRANSITIONS
        .iter()
        .find(|(from, ev, _)| *from == state && *ev == event)
        .map(|(_, _, to)| *to)
        .ok_or(InvalidTransition { state, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// The whole matrix, written out by hand: a change to the table must change this too.
    fn expected(state: JobState, event: JobEventKind) -> Option<JobState> {
        match (state, event) {
            (S::Uploading, E::UploadProgress) => Some(S::Uploading),
            (S::Uploading, E::TransferStarted) => Some(S::Transferring),
            (S::Transferring, E::TransferProgress) => Some(S::Transferring),
            (S::Transferring, E::InstallStarted) => Some(S::Installing),
            (S::Transferring | S::Installing, E::RestartStarted) => Some(S::Restarting),
            (S::Transferring | S::Installing | S::Restarting, E::VerifyStarted) => {
                Some(S::Verifying)
            }
            (S::Verifying, E::Completed) => Some(S::Completed),
            (
                s @ (S::Transferring | S::Installing | S::Restarting | S::Verifying),
                E::ModulesChanged,
            ) => Some(s),
            (s, E::Failed) if !s.is_terminal() => Some(S::Failed),
            _ => None,
        }
    }

    #[test]
    fn every_state_and_event_pair_matches_the_expected_matrix() {
        let mut allowed = 0;
        for state in JobState::ALL {
            for event in JobEventKind::ALL {
                let got = transition(state, event);
                match expected(state, event) {
                    Some(to) => {
                        allowed += 1;
                        assert_eq!(got, Ok(to), "{state:?} + {event:?}");
                    }
                    None => assert_eq!(
                        got,
                        Err(InvalidTransition { state, event }),
                        "{state:?} + {event:?} must be refused"
                    ),
                }
            }
        }
        assert_eq!(allowed, TRANSITIONS.len());
    }

    #[test]
    fn table_has_no_duplicate_rows() {
        let keys: HashSet<_> = TRANSITIONS.iter().map(|(s, e, _)| (*s, *e)).collect();
        assert_eq!(keys.len(), TRANSITIONS.len());
    }

    #[test]
    fn ended_jobs_accept_nothing_and_running_jobs_can_always_fail() {
        for state in JobState::ALL {
            for event in JobEventKind::ALL {
                if state.is_terminal() {
                    assert!(transition(state, event).is_err());
                }
            }
            if !state.is_terminal() {
                assert_eq!(transition(state, E::Failed), Ok(S::Failed));
            }
        }
    }

    #[test]
    fn the_job_never_moves_backwards() {
        for (from, _, to) in TRANSITIONS {
            assert!(from <= to, "{from:?} -> {to:?} goes back");
        }
    }

    #[test]
    fn completed_is_reachable_from_every_running_state_and_only_via_verifying() {
        for start in JobState::ALL.into_iter().filter(|s| !s.is_terminal()) {
            let mut seen = HashSet::from([start]);
            let mut frontier = vec![start];
            while let Some(s) = frontier.pop() {
                for event in JobEventKind::ALL {
                    if let Ok(next) = transition(s, event)
                        && seen.insert(next)
                    {
                        frontier.push(next);
                    }
                }
            }
            assert!(seen.contains(&S::Completed), "{start:?} cannot complete");
        }
        for (from, _, to) in TRANSITIONS {
            if *to == S::Completed {
                assert_eq!(*from, S::Verifying);
            }
        }
    }
}
