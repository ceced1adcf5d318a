//! Supervision (督办) and timers: when deemed acceptance, the warning, the yellow card
//! and the red card fall due. The scheduler in the server fires them; firing is
//! idempotent because `decide` recomputes what is due from the state.

use crate::calendar::Calendar;
use crate::command::TimerKind;
use crate::state::{Request, RequestState};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Working days without an intake decision after which a request counts as accepted.
pub const DEEMED_ACCEPTANCE_WORKING_DAYS: u32 = 5;
/// Working days after the promised deadline at which the red card is due.
pub const RED_CARD_WORKING_DAYS: u32 = 5;
/// The warning is due once this share (in tenths) of the promised working days is used.
pub const WARNING_TENTHS: u32 = 8;

/// A timer the scheduler should fire with `FireTimer { kind, due_at }` at `due_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DueTimer {
    pub kind: TimerKind,
    pub due_at: Timestamp,
}

/// Every timer not yet fired for this request and when it is due, earliest first.
/// The scheduler should replace what it holds for the request with this list after
/// each append: a clock pause removes timers, an extension moves them.
pub fn next_due(state: &RequestState, calendar: &Calendar) -> Vec<DueTimer> {
    let Some(request) = state.request() else {
        return Vec::new();
    };
    let mut due: Vec<DueTimer> = [
        TimerKind::DeemedAcceptance,
        TimerKind::Warning,
        TimerKind::YellowCard,
        TimerKind::RedCard,
    ]
    .into_iter()
    .filter_map(|kind| due_at(request, kind, calendar).map(|due_at| DueTimer { kind, due_at }))
    .collect();
    due.sort_by_key(|t| (t.due_at, t.kind));
    due
}

/// When a timer of this kind is due for this request, or `None` when it does not
/// apply (already fired, clock stopped, wrong status).
pub fn due_at(request: &Request, kind: TimerKind, calendar: &Calendar) -> Option<Timestamp> {
    if kind == TimerKind::DeemedAcceptance {
        return match request.status {
            crate::state::Status::Submitted => {
                request.intake_deadline.map(Timestamp::next_millisecond)
            }
            _ => None,
        };
    }
    if !request.status.is_in_processing() {
        return None;
    }
    let deadlines = request.deadlines.as_ref()?;
    let running_since = deadlines.running_since?;
    let supervision = &request.supervision;
    match kind {
        TimerKind::DeemedAcceptance => None,
        TimerKind::Warning => {
            if supervision.warning_at.is_some() {
                return None;
            }
            let threshold = deadlines.promised_days * WARNING_TENTHS / 10;
            if threshold == 0 {
                return None;
            }
            if threshold <= deadlines.working_days_used {
                return Some(running_since);
            }
            let left = threshold - deadlines.working_days_used;
            Some(
                calendar
                    .add_working_days(running_since, left)
                    .next_millisecond(),
            )
        }
        TimerKind::YellowCard => {
            if supervision.yellow_card_at.is_some() {
                return None;
            }
            deadlines.promised.map(Timestamp::next_millisecond)
        }
        TimerKind::RedCard => {
            if supervision.red_card_at.is_some() {
                return None;
            }
            deadlines.promised.map(|p| {
                calendar
                    .add_working_days(p, RED_CARD_WORKING_DAYS)
                    .next_millisecond()
            })
        }
    }
}
