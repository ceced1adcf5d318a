//! The value types of the read models: what is stored per request and what queries return.

use anju_domain::{
    ActorId, Category, DueTimer, Grade, RequestId, RequestState, Scope, ServiceCode, SiteId,
    Status, Timestamp, TrackingCode,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One request as the read model keeps it: the folded domain state, how far its stream
/// has been applied, and the timers it holds in the `proj_timers` index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestView {
    pub request_id: RequestId,
    pub state: RequestState,
    /// The stream version of the last applied event (versions start at 0).
    pub version: u64,
    /// The log position of the last applied event.
    pub last_position: u64,
    /// What `anju_domain::next_due` returned after the last applied event.
    pub timers: Vec<DueTimer>,
    /// One entry per decoded event, in stream order (kept in the view: one sled write
    /// per event instead of two).
    pub timeline: Vec<TimelineEntry>,
}

/// One line of a request's history: who did what when, the status it left the request
/// in, and the words people wrote with it (reasons, messages, opinions, notes). Carries
/// no form answers and no contact data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub position: u64,
    pub version: u64,
    pub event_type: String,
    pub at: Timestamp,
    /// The actor named in the event (`by`, the submitter); `None` for the system
    /// (timers, deemed acceptance, fulfilment after the last step).
    pub actor: Option<ActorId>,
    pub summary: String,
    /// The request's status after the event.
    #[serde(default)]
    pub status: Option<Status>,
    /// Staff only: internal notes and rating appeals are never shown to residents.
    #[serde(default)]
    pub internal: bool,
    /// The words of the event by name: `reason`, `legal_basis`, `message`, `comment`,
    /// `opinion`, `note`, `text`, `level`, `step`, `materials` (codes, comma-separated).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

/// A caseworker queue query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueQuery {
    pub sites: Scope<SiteId>,
    pub category: Option<Category>,
    /// Empty means every open status (see [`OPEN_STATUSES`]).
    pub statuses: Vec<Status>,
    /// Only requests assigned to this actor.
    pub assignee: Option<ActorId>,
    /// Only requests whose current deadline is before `now`.
    pub overdue_only: bool,
    pub now: Timestamp,
    /// 0 means the default (50); capped at [`MAX_PAGE_SIZE`].
    pub page_size: usize,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl QueueQuery {
    /// Every open request of these sites, first page of the default size.
    pub fn new(sites: Scope<SiteId>, now: Timestamp) -> QueueQuery {
        QueueQuery {
            sites,
            category: None,
            statuses: Vec::new(),
            assignee: None,
            overdue_only: false,
            now,
            page_size: 0,
            page_token: None,
        }
    }
}

pub const DEFAULT_PAGE_SIZE: usize = 50;
pub const MAX_PAGE_SIZE: usize = 500;

/// The statuses a request is in while it is still someone's work (fulfilled requests
/// wait to be rated and closed).
pub const OPEN_STATUSES: [Status; 7] = [
    Status::Submitted,
    Status::AwaitingInfo,
    Status::Accepted,
    Status::Reviewed,
    Status::Approved,
    Status::InFulfilment,
    Status::Fulfilled,
];

/// One open request in a queue, as stored in `proj_queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    pub request_id: RequestId,
    pub tracking_code: TrackingCode,
    pub site: SiteId,
    pub category: Category,
    pub service_code: ServiceCode,
    pub status: Status,
    pub assignee: Option<ActorId>,
    /// The deadline that orders the queue: the intake deadline while submitted, the
    /// promised deadline while the processing clock runs; `None` while the clock is
    /// stopped (awaiting materials) or the work is done (fulfilled). `None` sorts last.
    pub deadline: Option<Timestamp>,
    pub submitted_at: Timestamp,
    pub warning: bool,
    pub yellow_card: bool,
    pub red_card: bool,
    /// Computed at query time: `deadline < now`.
    #[serde(skip)]
    pub overdue: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueuePage {
    pub items: Vec<QueueItem>,
    /// `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Which requests the manager figures count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsFilter {
    /// `None` = every site.
    pub sites: Option<Vec<SiteId>>,
    pub category: Option<Category>,
    /// Inclusive; counts are kept per UTC hour, so `from` and `to` act at hour
    /// granularity (an hour counts when its start is in `[from, to)`).
    pub from: Option<Timestamp>,
    /// Exclusive.
    pub to: Option<Timestamp>,
}

/// Throughput bucket width; days and weeks are China Standard Time (UTC+8), weeks start
/// on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Hour,
    Day,
    Week,
}

/// Transitions counted in one bucket (by the instant of the event that made them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ThroughputBucket {
    pub start: Timestamp,
    pub submitted: u64,
    /// Accepted by a caseworker or deemed accepted.
    pub accepted: u64,
    /// Every required approval given (or reviewed, for services with no approval).
    pub approved: u64,
    pub fulfilled: u64,
    pub closed: u64,
    pub refused: u64,
    pub denied: u64,
    pub withdrawn: u64,
}

impl ThroughputBucket {
    pub fn empty(start: Timestamp) -> ThroughputBucket {
        ThroughputBucket {
            start,
            submitted: 0,
            accepted: 0,
            approved: 0,
            fulfilled: 0,
            closed: 0,
            refused: 0,
            denied: 0,
            withdrawn: 0,
        }
    }
}

/// Percentiles of one span (nearest rank: the value at rank ⌈p·n⌉ of the sorted values).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SpanStats {
    pub count: u64,
    pub p50_hours: f64,
    pub p90_hours: f64,
    pub p50_working_days: u32,
    pub p90_working_days: u32,
}

/// Lead times, each counted by the instant its span ended.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct LeadTimes {
    pub submit_to_accept: SpanStats,
    /// Acceptance to the decision (final approval, or denial).
    pub accept_to_decision: SpanStats,
    /// Final approval to fulfilment.
    pub decision_to_fulfilled: SpanStats,
    /// Submission to fulfilment, the whole wait.
    pub submit_to_fulfilled: SpanStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct SlaReport {
    pub warnings: u64,
    pub yellow_cards: u64,
    pub red_cards: u64,
    /// Fulfilled or denied by the promised deadline (extensions included).
    pub completed_on_time: u64,
    pub completed_late: u64,
    /// `completed_on_time / (on_time + late)`; `None` when nothing completed.
    pub on_time_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Satisfaction {
    /// Ratings given in the range, per grade, in `Grade::ALL` order; a rating removed on
    /// appeal no longer counts.
    pub grades: Vec<(Grade, u64)>,
    pub rated: u64,
    /// Requests fulfilled in the range and not rated (by fulfilment time).
    pub unrated: u64,
    /// 不满意 + 非常不满意.
    pub bad: u64,
    pub remediations_opened: u64,
    pub remediations_resolved: u64,
    /// Resolved after their due instant.
    pub remediations_resolved_late: u64,
    /// Open now (whatever the time range, by site and category).
    pub remediations_open: u64,
    /// Open now and due before `filter.to` (or before the current time when `to` is `None`).
    pub remediations_overdue: u64,
    pub appeals: u64,
    /// Appeals decided with the rating kept.
    pub appeals_rating_kept: u64,
    /// Appeals decided with the rating removed (its open remediation is cancelled).
    pub appeals_rating_removed: u64,
}

/// Age of an open request in working days since submission
/// (`Calendar::working_days_between(submitted_at, now)`), in the bands of
/// `anju.v1.BacklogCell.age_bucket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeBand {
    /// 0 or 1 working days.
    ZeroToOneDays,
    /// 2 to 5.
    TwoToFiveDays,
    /// 6 to 10.
    SixToTenDays,
    /// 11 or more.
    ElevenDaysOrMore,
}

impl AgeBand {
    pub const ALL: [AgeBand; 4] = [
        AgeBand::ZeroToOneDays,
        AgeBand::TwoToFiveDays,
        AgeBand::SixToTenDays,
        AgeBand::ElevenDaysOrMore,
    ];

    pub fn of_working_days(days: u32) -> AgeBand {
        match days {
            0..=1 => AgeBand::ZeroToOneDays,
            2..=5 => AgeBand::TwoToFiveDays,
            6..=10 => AgeBand::SixToTenDays,
            _ => AgeBand::ElevenDaysOrMore,
        }
    }

    /// The label `anju.v1.BacklogCell.age_bucket` documents.
    pub fn as_str(self) -> &'static str {
        match self {
            AgeBand::ZeroToOneDays => "0-1",
            AgeBand::TwoToFiveDays => "2-5",
            AgeBand::SixToTenDays => "6-10",
            AgeBand::ElevenDaysOrMore => "11+",
        }
    }
}

/// Open requests now, by status and by age. The time range selects by submission time.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Backlog {
    pub total: u64,
    /// In [`OPEN_STATUSES`] order, zeros included.
    pub by_status: Vec<(Status, u64)>,
    /// In `AgeBand::ALL` order, zeros included.
    pub by_age: Vec<(AgeBand, u64)>,
    /// Non-zero cells only, ordered by status then band.
    pub cells: Vec<BacklogCell>,
    /// Open requests whose current deadline is before `now` (the caseworkers' overdue
    /// queue), among those the filter selects.
    pub overdue: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BacklogCell {
    pub status: Status,
    pub age: AgeBand,
    pub count: u64,
    /// The start of the submission hour of the oldest request in the cell (counts are
    /// kept per submission hour).
    pub oldest_submitted_hour: Timestamp,
}

/// The size of one in-memory read-model part (`ReadModels::memory_footprint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartFootprint {
    pub part: &'static str,
    pub entries: usize,
    pub pages: usize,
    /// Bytes of the entries themselves.
    pub used_bytes: usize,
    /// Bytes allocated for the pages that hold them.
    pub allocated_bytes: usize,
}

/// What `ReadModels::apply` did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event was the next of its stream and is now reflected.
    Applied,
    /// Applied, but the domain fold refused it (state unchanged; version advanced).
    NotApplicable,
    /// Its stream version was not the next one: already applied, or a gap.
    Skipped { expected_version: u64 },
    /// The stream id is not `request-<uuid>`.
    NotARequest,
}

/// The compact form `proj_queue` stores (JSON took about 300 bytes an item, and its
/// encoding and decoding were a visible share of the fold). What the key holds is not
/// repeated: the site, the deadline and the request id come from the key (see
/// `keys::queue`). The value is the tracking code (its 60 bits in a u64), category and
/// status bytes, the service code, the assignee (flag + text), whether there is a
/// deadline (flag), submitted-at (i64) and one flag byte for warning, yellow and red
/// card; texts are a u16 length and UTF-8, integers big-endian.
impl QueueItem {
    pub(crate) fn encode(&self) -> Vec<u8> {
        fn text(out: &mut Vec<u8>, text: &str) {
            out.extend_from_slice(&(text.len().min(u16::MAX as usize) as u16).to_be_bytes());
            out.extend_from_slice(&text.as_bytes()[..text.len().min(u16::MAX as usize)]);
        }
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&self.tracking_code.value().to_be_bytes());
        out.push(crate::keys::category_byte(self.category));
        out.push(crate::keys::status_byte(self.status));
        text(&mut out, self.service_code.as_str());
        match &self.assignee {
            Some(assignee) => {
                out.push(1);
                text(&mut out, &assignee.0);
            }
            None => out.push(0),
        }
        out.push(u8::from(self.deadline.is_some()));
        out.extend_from_slice(&self.submitted_at.0.to_be_bytes());
        out.push(
            u8::from(self.warning) | u8::from(self.yellow_card) << 1 | u8::from(self.red_card) << 2,
        );
        out
    }

    /// Reads an item back from its `proj_queue` key and value.
    pub(crate) fn decode(key: &[u8], bytes: &[u8]) -> Option<QueueItem> {
        struct Reader<'a>(&'a [u8]);
        impl<'a> Reader<'a> {
            fn take(&mut self, n: usize) -> Option<&'a [u8]> {
                let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
                self.0 = rest;
                Some(head)
            }
            fn byte(&mut self) -> Option<u8> {
                Some(self.take(1)?[0])
            }
            fn i64(&mut self) -> Option<i64> {
                Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
            }
            fn text(&mut self) -> Option<&'a str> {
                let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?) as usize;
                std::str::from_utf8(self.take(len)?).ok()
            }
        }
        let (site, order) = crate::keys::read_site(key)?;
        if order.len() != 24 {
            return None;
        }
        let deadline_in_key = crate::keys::read_ts(order)?;
        let request_id = crate::keys::read_request(&order[8..])?;
        let mut r = Reader(bytes);
        let tracking_code =
            TrackingCode::from_value(u64::from_be_bytes(r.take(8)?.try_into().ok()?));
        let category = crate::keys::category_of(r.byte()?)?;
        let status = *Status::ALL.get(r.byte()? as usize)?;
        let service_code = ServiceCode::parse(r.text()?).ok()?;
        let assignee = match r.byte()? {
            0 => None,
            _ => Some(ActorId::new(r.text()?)),
        };
        let deadline = match r.byte()? {
            0 => None,
            _ => Some(Timestamp(deadline_in_key)),
        };
        let submitted_at = Timestamp(r.i64()?);
        let flags = r.byte()?;
        if !r.0.is_empty() {
            return None;
        }
        Some(QueueItem {
            request_id,
            tracking_code,
            site,
            category,
            service_code,
            status,
            assignee,
            deadline,
            submitted_at,
            warning: flags & 1 != 0,
            yellow_card: flags & 2 != 0,
            red_card: flags & 4 != 0,
            overdue: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_items_round_trip_and_damage_is_refused() {
        let item = QueueItem {
            request_id: RequestId(uuid::Uuid::from_u128(0x0190_1234)),
            tracking_code: TrackingCode::from_random_bytes([7; 8]),
            site: SiteId::new("幸福家园安置区"),
            category: Category::ALL[3],
            service_code: ServiceCode::parse("SQ-WEIXIU").unwrap(),
            status: Status::Accepted,
            assignee: Some(ActorId::new("cw-李四")),
            deadline: Some(Timestamp(-5)),
            submitted_at: Timestamp(1_772_000_000_000),
            warning: true,
            yellow_card: false,
            red_card: true,
            overdue: false,
        };
        let key = |item: &QueueItem| {
            crate::keys::queue(
                &crate::keys::site(&item.site),
                item.deadline,
                &item.request_id,
            )
        };
        assert_eq!(
            QueueItem::decode(&key(&item), &item.encode()),
            Some(item.clone())
        );
        // The value repeats nothing the key holds.
        assert_eq!(item.encode().len(), 43);
        let bare = QueueItem {
            assignee: None,
            deadline: None,
            warning: false,
            red_card: false,
            ..item.clone()
        };
        assert_eq!(QueueItem::decode(&key(&bare), &bare.encode()), Some(bare));
        let bytes = item.encode();
        let k = key(&item);
        assert_eq!(QueueItem::decode(&k, &bytes[..bytes.len() - 1]), None);
        assert_eq!(
            QueueItem::decode(&k, &[bytes.as_slice(), &[0]].concat()),
            None
        );
        assert_eq!(QueueItem::decode(&k[..k.len() - 1], &bytes), None);
    }
}
