//! The queries over the read models: request detail, timeline, queues, timers and the
//! manager figures.

use crate::keys::{self, MS_PER_HOUR};
use crate::model::*;
use crate::read_models::*;
use crate::ProjectionError;
use anju_domain::{
    CivilDate, DueTimer, Grade, RequestId, Scope, SiteId, Status, Timestamp, TrackingCode,
};
use std::collections::BTreeMap;

fn corrupt(what: &str, e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Corrupt(format!("{what}: {e}"))
}

/// Days since 1970-01-01 of 2026-01-05, a Monday: weeks are counted from Mondays.
fn week_start(day: CivilDate) -> CivilDate {
    let monday = CivilDate {
        year: 1970,
        month: 1,
        day: 5,
    }
    .day_number();
    let n = day.day_number();
    CivilDate::from_day_number(n - (n - monday).rem_euclid(7))
}

fn bucket_start(hour: i64, bucket: Bucket) -> Timestamp {
    let start = Timestamp(hour * MS_PER_HOUR);
    match bucket {
        Bucket::Hour => start,
        Bucket::Day => Timestamp::cst_start_of(start.cst_date()),
        Bucket::Week => Timestamp::cst_start_of(week_start(start.cst_date())),
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl ReadModels {
    pub fn request(&self, id: &RequestId) -> Result<Option<RequestView>, ProjectionError> {
        self.view(id)
    }

    pub fn request_id_by_tracking(
        &self,
        code: &TrackingCode,
    ) -> Result<Option<RequestId>, ProjectionError> {
        Ok(self
            .trees()
            .tracking
            .get(keys::tracking(code))?
            .and_then(|v| keys::read_request(&v)))
    }

    /// The requests whose applicant names an identity number with this digest (64
    /// lowercase hex characters; anything else finds nothing), in request-id order.
    pub fn request_ids_by_identity(&self, digest: &str) -> Result<Vec<RequestId>, ProjectionError> {
        let Some(prefix) = keys::identity_prefix(digest) else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for item in self.trees().identities.scan_prefix(&prefix) {
            let (key, _) = item?;
            let id = keys::read_request(&key[prefix.len()..])
                .ok_or_else(|| corrupt("identity entry", keys::hex(&key)))?;
            found.push(id);
        }
        Ok(found)
    }

    /// The request's events in stream order (empty for an unknown request).
    pub fn timeline(&self, id: &RequestId) -> Result<Vec<TimelineEntry>, ProjectionError> {
        Ok(self.request(id)?.map(|v| v.timeline).unwrap_or_default())
    }

    /// Site keys a scope covers, in key order.
    fn site_keys(&self, sites: &Scope<SiteId>) -> Result<Vec<Vec<u8>>, ProjectionError> {
        match sites {
            Scope::All => {
                let mut out = Vec::new();
                for item in self.trees().sites.iter() {
                    out.push(item?.0.to_vec());
                }
                Ok(out)
            }
            Scope::Only(set) => Ok(set.iter().map(keys::site).collect()),
        }
    }

    /// Open requests ordered by (deadline, request id), `None` deadlines last, across
    /// every site in the query.
    pub fn queue(&self, query: &QueueQuery) -> Result<QueuePage, ProjectionError> {
        let page_size = match query.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = match &query.page_token {
            None => None,
            Some(token) => {
                let bytes = keys::unhex(token)
                    .filter(|b| b.len() == 24)
                    .ok_or(ProjectionError::BadPageToken)?;
                Some(bytes)
            }
        };
        let statuses: &[Status] = if query.statuses.is_empty() {
            &OPEN_STATUSES
        } else {
            &query.statuses
        };
        let mut cursors = Vec::new();
        for site in self.site_keys(&query.sites)? {
            let start = match &after {
                // Keys have a fixed length after the site, so appending 0 gives the next key.
                Some(suffix) => [site.as_slice(), suffix.as_slice(), &[0]].concat(),
                None => site.clone(),
            };
            let end = if query.overdue_only {
                Some([site.as_slice(), &keys::ts(query.now.0)].concat())
            } else {
                keys::prefix_end(&site)
            };
            let iter = match end {
                Some(end) => self.trees().queue.range(start..end),
                None => self.trees().queue.range(start..),
            };
            cursors.push((site.len(), iter.peekable()));
        }
        let mut page = QueuePage::default();
        loop {
            // The cursor whose next key has the smallest (deadline, id) suffix.
            let mut best: Option<(usize, Vec<u8>)> = None;
            for (i, (site_len, cursor)) in cursors.iter_mut().enumerate() {
                match cursor.peek() {
                    None => {}
                    Some(Err(_)) => {
                        if let Some(Err(e)) = cursor.next() {
                            return Err(e.into());
                        }
                    }
                    Some(Ok((key, _))) => {
                        let suffix = key[*site_len..].to_vec();
                        if best.as_ref().is_none_or(|(_, b)| suffix < *b) {
                            best = Some((i, suffix));
                        }
                    }
                }
            }
            let Some((i, suffix)) = best else { break };
            let Some(Ok((key, value))) = cursors[i].1.next() else {
                continue;
            };
            let mut item: QueueItem = QueueItem::decode(&key, &value)
                .ok_or_else(|| corrupt("queue item", keys::hex(&value)))?;
            if !statuses.contains(&item.status)
                || query.category.is_some_and(|c| c != item.category)
                || query
                    .assignee
                    .as_ref()
                    .is_some_and(|a| item.assignee.as_ref() != Some(a))
            {
                continue;
            }
            item.overdue = item.deadline.is_some_and(|d| d < query.now);
            if page.items.len() == page_size {
                // One more match exists: the page is full and not the last.
                let last = page
                    .items
                    .last()
                    .map(|l| keys::order_suffix(l.deadline, &l.request_id));
                page.next_page_token = last.map(|l| keys::hex(&l));
                let _ = suffix;
                break;
            }
            page.items.push(item);
        }
        Ok(page)
    }

    /// Timers due at or before `now`, earliest first.
    pub fn due_timers(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(RequestId, DueTimer)>, ProjectionError> {
        let mut out = Vec::new();
        let end = keys::ts(now.0.saturating_add(1));
        for item in self.trees().timers.range(..end.to_vec()) {
            if out.len() >= limit {
                break;
            }
            let (key, _) = item?;
            let parsed = (|| {
                let due_at = Timestamp(keys::read_ts(&key)?);
                let id = keys::read_request(key.get(8..24)?)?;
                let kind = keys::timer_of(*key.get(24)?)?;
                Some((id, DueTimer { kind, due_at }))
            })();
            out.push(parsed.ok_or_else(|| corrupt("timer key", keys::hex(&key)))?);
        }
        Ok(out)
    }

    /// The earliest timer of all, due or not: when the scheduler should next wake.
    pub fn next_timer(&self) -> Result<Option<(RequestId, DueTimer)>, ProjectionError> {
        Ok(self.due_timers(Timestamp(i64::MAX - 1), 1)?.pop())
    }

    /// Calls `f(site, category, rest_of_key, value)` for each key of `kind` in `tree`
    /// that matches the filter's sites and category.
    fn scan_dimension(
        &self,
        tree: &crate::store::Part,
        kind: u8,
        filter: &MetricsFilter,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), ProjectionError> {
        let prefixes: Vec<Vec<u8>> = match &filter.sites {
            None => vec![vec![kind]],
            Some(sites) => sites
                .iter()
                .map(|s| match filter.category {
                    Some(c) => keys::dimension(kind, &keys::site(s), c),
                    None => [&[kind][..], &keys::site(s)].concat(),
                })
                .collect(),
        };
        for prefix in prefixes {
            for item in tree.scan_prefix(&prefix) {
                let (key, value) = item?;
                let (_, category, rest) = keys::read_dimension(&key)
                    .ok_or_else(|| corrupt("metrics key", keys::hex(&key)))?;
                if filter.category.is_some_and(|c| c != category) {
                    continue;
                }
                f(rest, &value);
            }
        }
        Ok(())
    }

    fn hour_in_range(filter: &MetricsFilter, hour: i64) -> bool {
        let start = hour * MS_PER_HOUR;
        filter.from.is_none_or(|f| start >= f.0) && filter.to.is_none_or(|t| start < t.0)
    }

    fn instant_in_range(filter: &MetricsFilter, at: i64) -> bool {
        filter.from.is_none_or(|f| at >= f.0) && filter.to.is_none_or(|t| at < t.0)
    }

    /// Calls `f(hour, count)` for every counter of `kind` in the filter.
    fn scan_counts(
        &self,
        kind: u8,
        filter: &MetricsFilter,
        mut f: impl FnMut(i64, i64),
    ) -> Result<(), ProjectionError> {
        let mut bad = None;
        self.scan_dimension(&self.trees().counts, kind, filter, |rest, value| {
            match (keys::read_ts(rest), keys::read_i64(value)) {
                (Some(hour), Some(n)) => {
                    if Self::hour_in_range(filter, hour) {
                        f(hour, n)
                    }
                }
                _ => bad = Some(keys::hex(rest)),
            }
        })?;
        match bad {
            Some(key) => Err(corrupt("counter", key)),
            None => Ok(()),
        }
    }

    fn sum_counts(&self, kind: u8, filter: &MetricsFilter) -> Result<u64, ProjectionError> {
        let mut total = 0i64;
        self.scan_counts(kind, filter, |_, n| total += n)?;
        Ok(total.max(0) as u64)
    }

    /// Transitions per bucket, only buckets with at least one, oldest first.
    pub fn throughput(
        &self,
        filter: &MetricsFilter,
        bucket: Bucket,
    ) -> Result<Vec<ThroughputBucket>, ProjectionError> {
        let mut buckets: BTreeMap<Timestamp, ThroughputBucket> = BTreeMap::new();
        let kinds = [
            K_SUBMITTED,
            K_ACCEPTED,
            K_APPROVED,
            K_FULFILLED,
            K_CLOSED,
            K_REFUSED,
            K_DENIED,
            K_WITHDRAWN,
        ];
        for kind in kinds {
            self.scan_counts(kind, filter, |hour, n| {
                let start = bucket_start(hour, bucket);
                let b = buckets
                    .entry(start)
                    .or_insert_with(|| ThroughputBucket::empty(start));
                let slot = match kind {
                    K_SUBMITTED => &mut b.submitted,
                    K_ACCEPTED => &mut b.accepted,
                    K_APPROVED => &mut b.approved,
                    K_FULFILLED => &mut b.fulfilled,
                    K_CLOSED => &mut b.closed,
                    K_REFUSED => &mut b.refused,
                    K_DENIED => &mut b.denied,
                    _ => &mut b.withdrawn,
                };
                *slot = slot.saturating_add_signed(n);
            })?;
        }
        Ok(buckets
            .into_values()
            .filter(|b| *b != ThroughputBucket::empty(b.start))
            .collect())
    }

    fn span_stats(&self, kind: u8, filter: &MetricsFilter) -> Result<SpanStats, ProjectionError> {
        let mut millis = Vec::new();
        let mut days = Vec::new();
        let mut bad = None;
        self.scan_dimension(&self.trees().spans, kind, filter, |rest, value| {
            let end = keys::read_ts(rest);
            let ms = keys::read_i64(value);
            let wd = value
                .get(8..12)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes);
            match (end, ms, wd) {
                (Some(end), Some(ms), Some(wd)) => {
                    if Self::instant_in_range(filter, end) {
                        millis.push(ms);
                        days.push(wd);
                    }
                }
                _ => bad = Some(keys::hex(rest)),
            }
        })?;
        if let Some(key) = bad {
            return Err(corrupt("span", key));
        }
        millis.sort_unstable();
        days.sort_unstable();
        let hours = |ms: i64| ms as f64 / MS_PER_HOUR as f64;
        Ok(SpanStats {
            count: millis.len() as u64,
            p50_hours: hours(percentile(&millis, 0.5)),
            p90_hours: hours(percentile(&millis, 0.9)),
            p50_working_days: percentile(&days, 0.5),
            p90_working_days: percentile(&days, 0.9),
        })
    }

    /// p50/p90 of each span, by the instant the span ended.
    pub fn lead_times(&self, filter: &MetricsFilter) -> Result<LeadTimes, ProjectionError> {
        Ok(LeadTimes {
            submit_to_accept: self.span_stats(S_SUBMIT_TO_ACCEPT, filter)?,
            accept_to_decision: self.span_stats(S_ACCEPT_TO_DECISION, filter)?,
            decision_to_fulfilled: self.span_stats(S_DECISION_TO_FULFILLED, filter)?,
            submit_to_fulfilled: self.span_stats(S_SUBMIT_TO_FULFILLED, filter)?,
        })
    }

    pub fn sla_report(&self, filter: &MetricsFilter) -> Result<SlaReport, ProjectionError> {
        let on_time = self.sum_counts(K_ON_TIME, filter)?;
        let late = self.sum_counts(K_LATE, filter)?;
        Ok(SlaReport {
            warnings: self.sum_counts(K_WARNING, filter)?,
            yellow_cards: self.sum_counts(K_YELLOW, filter)?,
            red_cards: self.sum_counts(K_RED, filter)?,
            completed_on_time: on_time,
            completed_late: late,
            on_time_rate: (on_time + late > 0).then(|| on_time as f64 / (on_time + late) as f64),
        })
    }

    /// Grades and remediations; an open remediation is overdue when its due instant is
    /// before `now` (or before the range's end, if that is earlier).
    pub fn satisfaction(
        &self,
        filter: &MetricsFilter,
        now: Timestamp,
    ) -> Result<Satisfaction, ProjectionError> {
        let mut grades = Vec::new();
        for (i, grade) in Grade::ALL.into_iter().enumerate() {
            grades.push((grade, self.sum_counts(K_GRADE + i as u8, filter)?));
        }
        let rated = grades.iter().map(|(_, n)| n).sum();
        let bad = grades
            .iter()
            .filter(|(g, _)| g.is_bad())
            .map(|(_, n)| n)
            .sum();
        let overdue_before = filter.to.map_or(now.0, |t| t.0.min(now.0));
        let mut open = 0;
        let mut overdue = 0;
        let unbounded = MetricsFilter {
            from: None,
            to: None,
            ..filter.clone()
        };
        self.scan_dimension(&self.trees().remediations, R_OPEN, &unbounded, |rest, _| {
            open += 1;
            if keys::read_ts(rest).is_some_and(|due| due < overdue_before) {
                overdue += 1;
            }
        })?;
        Ok(Satisfaction {
            grades,
            rated,
            unrated: self.sum_counts(K_UNRATED, filter)?,
            bad,
            remediations_opened: self.sum_counts(K_REM_OPENED, filter)?,
            remediations_resolved: self.sum_counts(K_REM_RESOLVED, filter)?,
            remediations_resolved_late: self.sum_counts(K_REM_RESOLVED_LATE, filter)?,
            remediations_open: open,
            remediations_overdue: overdue,
            appeals: self.sum_counts(K_APPEALED, filter)?,
            appeals_rating_kept: self.sum_counts(K_APPEAL_UPHELD, filter)?,
            appeals_rating_removed: self.sum_counts(K_APPEAL_REJECTED, filter)?,
        })
    }

    /// Open requests by status and working-day age at `now`; the time range selects by
    /// submission hour.
    pub fn backlog(
        &self,
        filter: &MetricsFilter,
        now: Timestamp,
    ) -> Result<Backlog, ProjectionError> {
        // Per cell: the count and the oldest submission hour still holding requests.
        let mut cells: BTreeMap<(usize, AgeBand), (u64, Option<i64>)> = BTreeMap::new();
        for (si, status) in OPEN_STATUSES.into_iter().enumerate() {
            self.scan_counts(K_OPEN + keys::status_byte(status), filter, |hour, n| {
                let age = self
                    .calendar()
                    .working_days_between(Timestamp(hour * MS_PER_HOUR), now);
                let cell = cells
                    .entry((si, AgeBand::of_working_days(age)))
                    .or_insert((0, None));
                cell.0 = cell.0.saturating_add_signed(n);
                if n > 0 {
                    cell.1 = Some(cell.1.map_or(hour, |oldest| oldest.min(hour)));
                }
            })?;
        }
        let mut backlog = Backlog {
            by_status: OPEN_STATUSES.iter().map(|s| (*s, 0)).collect(),
            by_age: AgeBand::ALL.iter().map(|a| (*a, 0)).collect(),
            overdue: self.overdue_now(filter, now)?,
            ..Default::default()
        };
        for ((si, age), (count, oldest_hour)) in cells {
            if count == 0 {
                continue;
            }
            backlog.total += count;
            backlog.by_status[si].1 += count;
            if let Some(slot) = backlog.by_age.iter_mut().find(|(a, _)| *a == age) {
                slot.1 += count;
            }
            backlog.cells.push(BacklogCell {
                status: OPEN_STATUSES[si],
                age,
                count,
                oldest_submitted_hour: Timestamp(oldest_hour.unwrap_or(0) * MS_PER_HOUR),
            });
        }
        Ok(backlog)
    }

    /// Open requests past their queue deadline at `now`: the queue part is ordered by
    /// site then deadline, so each site is one range scan up to `now`.
    fn overdue_now(&self, filter: &MetricsFilter, now: Timestamp) -> Result<u64, ProjectionError> {
        let sites = match &filter.sites {
            None => self.site_keys(&Scope::All)?,
            Some(sites) => sites.iter().map(keys::site).collect(),
        };
        let mut overdue = 0;
        for site in sites {
            let end = [site.as_slice(), &keys::ts(now.0)].concat();
            for item in self.trees().queue.range(site..end) {
                let (key, value) = item?;
                let item: QueueItem = QueueItem::decode(&key, &value)
                    .ok_or_else(|| corrupt("queue item", keys::hex(&value)))?;
                let in_range = filter.category.is_none_or(|c| c == item.category)
                    && Self::hour_in_range(filter, keys::hour_of(item.submitted_at));
                if in_range && item.deadline.is_some_and(|d| d < now) {
                    overdue += 1;
                }
            }
        }
        Ok(overdue)
    }
}
