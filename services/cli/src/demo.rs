//! `anju demo`: submits and drives a realistic mix of requests across several sites and
//! every category — waiting, sent back for materials, refused, withdrawn, accepted,
//! approved at one and two levels, denied, in fulfilment with and without extensions,
//! fulfilled, rated well and badly, remediated, appealed and closed — so queues, reports
//! and timelines look like a real community's. The same `--seed` gives the same mix.
//!
//! On a server started with `--demo-clock` the requests are spread over
//! [`DEMO_WORKING_DAYS`] working days: the demo moves the server's clock forward one
//! working day at a time (AdminService.AdvanceClock), so requests left alone are deemed
//! accepted and requests past their deadlines collect warnings, yellow and red cards.
//! On a server without it everything happens on one day and the demo says that overdue
//! requests need `anju-server --demo-clock`.
//!
//! It mints its own tokens from the server's secret (`--data-dir`, like `token issue`).
//! Form values come from the shipped catalogue's limits and are checked against the
//! server's definitions before they are sent.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anju_auth::{Role, Secret};
use anju_domain::{Catalogue, Category, FieldKind};
use anju_proto::v1::{
    AcceptRequestRequest, AddNoteRequest, AdvanceClockRequest, AppealRatingRequest, Applicant,
    ApproveRequestRequest, ClaimRequestRequest, CloseRequestRequest, CompleteFulfilmentStepRequest,
    DecideAppealRequest, DecideExtensionRequest, DenyRequestRequest, GetClockRequest,
    GetLogStatsRequest, MissingMaterial, OnBehalfOf, ProvideInfoRequest, RateRequestRequest,
    ReassignRequestRequest, RefuseRequestRequest, RequestExtensionRequest, RequestInfoRequest,
    RequestState, ResolveRemediationRequest, SatisfactionGrade, ServiceDefinition, SlaStatus,
    StartFulfilmentRequest, SubmitRequestRequest, WithdrawRequestRequest,
};
use anyhow::Context as _;
use clap::Args;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::client::{call, Context, Session};
use crate::failure::Failure;
use crate::form;
use crate::labels::{self, Lang};
use crate::table::Table;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Same seed, same mix of requests.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// How many requests to submit (at least one per category and plan).
    #[arg(long, default_value_t = 96)]
    requests: usize,
    /// Site ids to spread the requests over; repeat.
    #[arg(long = "site", value_name = "SITE")]
    sites: Vec<String>,
    /// The server's data directory, where the token secret is [default: the profile's, else ./data].
    #[arg(long, env = "ANJU_DATA_DIR", conflicts_with = "secret_file")]
    data_dir: Option<PathBuf>,
    /// The secret file itself, when the server runs with --secret-file.
    #[arg(long, env = "ANJU_SECRET_FILE")]
    secret_file: Option<PathBuf>,
}

const DEFAULT_SITES: [&str; 4] = [
    "zhaojue-muendi",
    "xichang-anning",
    "butuo-tongxin",
    "meigu-xingfu",
];

/// Working days a demo spans on a server with the demo clock: long enough for a red
/// card on the slowest service (15 promised working days, red 5 working days later).
pub const DEMO_WORKING_DAYS: u32 = 22;

/// Where a demo request is driven to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Waiting,
    Claimed,
    DeemedAccepted,
    Overdue,
    LongOverdue,
    InfoRequested,
    Refused,
    Withdrawn,
    Accepted,
    HalfApproved,
    Approved,
    Denied,
    InFulfilment,
    Extended,
    Reassigned,
    Fulfilled,
    RatedWell,
    RatedBadly,
    Remediated,
    AppealUpheld,
    AppealRejected,
    Closed,
}

impl Plan {
    const ALL: [Plan; 22] = [
        Plan::Waiting,
        Plan::Claimed,
        Plan::DeemedAccepted,
        Plan::Overdue,
        Plan::LongOverdue,
        Plan::InfoRequested,
        Plan::Refused,
        Plan::Withdrawn,
        Plan::Accepted,
        Plan::HalfApproved,
        Plan::Approved,
        Plan::Denied,
        Plan::InFulfilment,
        Plan::Extended,
        Plan::Reassigned,
        Plan::Fulfilled,
        Plan::RatedWell,
        Plan::RatedBadly,
        Plan::Remediated,
        Plan::AppealUpheld,
        Plan::AppealRejected,
        Plan::Closed,
    ];

    /// How often each plan is drawn after every one was used once.
    fn weight(self) -> u32 {
        match self {
            Plan::RatedWell => 8,
            Plan::Waiting
            | Plan::InfoRequested
            | Plan::Accepted
            | Plan::InFulfilment
            | Plan::Fulfilled
            | Plan::Closed => 3,
            Plan::Claimed | Plan::Approved | Plan::Overdue => 2,
            _ => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Plan::Waiting => "waiting",
            Plan::Claimed => "claimed",
            Plan::DeemedAccepted => "left alone: deemed accepted",
            Plan::Overdue => "accepted, past its deadline",
            Plan::LongOverdue => "accepted, long past its deadline",
            Plan::InfoRequested => "sent back for materials",
            Plan::Refused => "refused",
            Plan::Withdrawn => "withdrawn",
            Plan::Accepted => "accepted (materials supplied)",
            Plan::HalfApproved => "approved at level 1 of 2",
            Plan::Approved => "approved at every level",
            Plan::Denied => "denied",
            Plan::InFulfilment => "in fulfilment",
            Plan::Extended => "in fulfilment, extended",
            Plan::Reassigned => "reassigned, in fulfilment",
            Plan::Fulfilled => "fulfilled",
            Plan::RatedWell => "rated well",
            Plan::RatedBadly => "rated badly, remediation open",
            Plan::Remediated => "rated badly, remediated",
            Plan::AppealUpheld => "rated badly, appeal upheld",
            Plan::AppealRejected => "rated badly, appeal rejected",
            Plan::Closed => "rated well, closed",
        }
    }

    /// The working day (0-based, of `days`) the request is submitted and worked on.
    /// Requests whose deadlines must not pass are recent; the overdue ones are old
    /// enough for their timers; the rest are finished the day they arrive.
    fn day(self, rng: &mut StdRng, days: u32, promised_days: u32) -> u32 {
        let last = days.saturating_sub(1);
        let recent = |rng: &mut StdRng, span: u32| rng.gen_range(last.saturating_sub(span)..=last);
        match self {
            // Deemed accepted after 5 working days without an intake decision.
            Plan::Waiting | Plan::Claimed => recent(rng, 3),
            Plan::DeemedAccepted => rng.gen_range(0..=last.saturating_sub(7)),
            // The yellow card falls due one working day past the promised deadline, the
            // red card five more.
            Plan::Overdue => last.saturating_sub(promised_days + 2),
            Plan::LongOverdue => last.saturating_sub(promised_days + 7),
            Plan::Accepted
            | Plan::HalfApproved
            | Plan::Approved
            | Plan::InFulfilment
            | Plan::Extended
            | Plan::Reassigned => recent(rng, 2),
            _ => rng.gen_range(0..=last),
        }
    }

    fn needs_levels(self) -> bool {
        matches!(self, Plan::HalfApproved | Plan::Denied)
    }

    /// Plans the resident acts in (provide info, withdraw, rate) need the resident's own token.
    fn resident_acts(self) -> bool {
        matches!(
            self,
            Plan::Withdrawn
                | Plan::Accepted
                | Plan::RatedWell
                | Plan::RatedBadly
                | Plan::Remediated
                | Plan::AppealUpheld
                | Plan::AppealRejected
                | Plan::Closed
        )
    }
}

/// The tokens the demo acts with, per site.
struct Tokens {
    secret: Secret,
}

impl Tokens {
    fn mint(&self, role: Role, sites: &[&str], subject: &str) -> anyhow::Result<String> {
        let claims = crate::claims(
            role,
            sites.iter().map(|s| s.to_string()).collect(),
            Vec::new(),
            subject.to_string(),
            Duration::from_secs(3600),
        )?;
        Ok(anju_auth::issue(&self.secret, &claims))
    }
}

/// A session acting as one identity.
fn as_identity(session: &Session, token: String) -> Session {
    let mut session = session.clone();
    session.context.token = Some(token);
    session
}

struct Outcome {
    category: Category,
    site: String,
    service: String,
    plan: Plan,
    request_id: String,
    tracking_code: String,
    state: i32,
    /// The working day of the demo it arrived on.
    day: u32,
    /// Supervision events in its timeline (WarningRaised, YellowCardIssued, RedCardIssued).
    timers: Vec<String>,
    deemed_accepted: bool,
    sla: i32,
}

/// One request the demo will make, decided before any is made.
struct Spec {
    index: usize,
    plan: Plan,
    site: String,
    service: anju_domain::ServiceDefinition,
    day: u32,
}

/// The server's demo clock, when it runs with `--demo-clock`.
struct DemoClock {
    admin: Session,
    started: Option<prost_types::Timestamp>,
    now: Option<prost_types::Timestamp>,
    timers_fired: u64,
}

impl DemoClock {
    /// Asks the server whether it runs on the demo clock; `None` when it does not (or
    /// is too old to say).
    async fn detect(admin: &Session) -> anyhow::Result<Option<DemoClock>> {
        let answer = admin
            .admin()
            .get_clock(admin.request(GetClockRequest {})?)
            .await;
        match answer {
            Ok(response) => {
                let response = response.into_inner();
                Ok(response.demo_clock.then(|| DemoClock {
                    admin: admin.clone(),
                    started: response.now,
                    now: response.now,
                    timers_fired: 0,
                }))
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => Ok(None),
            Err(status) => {
                Err(crate::failure::from_status("reading the server's clock", &status).into())
            }
        }
    }

    async fn advance(&mut self, request: AdvanceClockRequest) -> anyhow::Result<u64> {
        let response = call(
            "advancing the demo clock",
            self.admin
                .admin()
                .advance_clock(self.admin.request(request)?),
        )
        .await?;
        self.now = response.now;
        self.timers_fired += response.timers_fired;
        Ok(response.timers_fired)
    }

    /// Moves to 09:00 Beijing time of the next working day, so a demo day's work never
    /// straddles a midnight.
    async fn move_to_working_morning(&mut self) -> anyhow::Result<()> {
        const DAY: i64 = 86_400;
        const CST: i64 = 8 * 3600;
        let now = self.now.as_ref().map_or(0, |t| t.seconds);
        let to_nine = (9 * 3600 - (now + CST).rem_euclid(DAY)).rem_euclid(DAY);
        let seconds = if to_nine == 0 { DAY } else { to_nine };
        self.advance(AdvanceClockRequest {
            by: Some(prost_types::Duration { seconds, nanos: 0 }),
            working_days: 0,
        })
        .await?;
        let date =
            anju_domain::Timestamp(self.now.as_ref().map_or(0, |t| t.seconds) * 1000).cst_date();
        if !anju_domain::Calendar::china_2026().is_working_day(date) {
            self.advance(AdvanceClockRequest {
                by: None,
                working_days: 1,
            })
            .await?;
        }
        self.started = self.now;
        Ok(())
    }
}

/// A timestamp as its Beijing date, `YYYY-MM-DD`.
fn beijing_date(at: Option<&prost_types::Timestamp>) -> String {
    let seconds = at.map_or(0, |t| t.seconds) + 8 * 3600;
    let (year, month, day) = labels::civil_from_days(seconds.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}

pub async fn run(context: &Context, args: DemoArgs) -> anyhow::Result<()> {
    if args.requests == 0 {
        return Err(Failure::usage("--requests must be at least 1").into());
    }
    let secret_path = match &args.secret_file {
        Some(path) => path.clone(),
        None => args
            .data_dir
            .clone()
            .or_else(|| context.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from("./data"))
            .join(anju_auth::SECRET_FILE_NAME),
    };
    let secret = anju_auth::read_secret_file(&secret_path).map_err(|error| {
        Failure::usage(format!("reading the server's token secret {}: {error}", secret_path.display()))
            .hint("the demo mints its own tokens: pass the server's --data-dir (or --secret-file); start anju-server once to create the secret")
    })?;
    let tokens = Tokens { secret };
    let sites: Vec<String> = if args.sites.is_empty() {
        DEFAULT_SITES.iter().map(|s| s.to_string()).collect()
    } else {
        args.sites.clone()
    };
    let base = context.connect().await?;
    let admin = as_identity(&base, tokens.mint(Role::Admin, &["*"], "demo-admin")?);

    // The latest version of every shipped service, grouped by category, with the
    // server's definition of each.
    let catalogue = Catalogue::shipped();
    let mut latest: BTreeMap<String, anju_domain::ServiceDefinition> = BTreeMap::new();
    for service in catalogue.services() {
        let code = service.code.to_string();
        if latest
            .get(&code)
            .is_none_or(|known| known.version < service.version)
        {
            latest.insert(code, service.clone());
        }
    }
    let mut definitions: HashMap<String, ServiceDefinition> = HashMap::new();
    for code in latest.keys() {
        let definition = crate::resident::definition(&admin, code)
            .await
            .with_context(|| format!("the demo needs the shipped catalogue's service {code}"))?;
        definitions.insert(code.clone(), definition);
    }
    let mut clock = DemoClock::detect(&admin).await?;
    let quiet = context.json;
    if clock.is_none() {
        eprintln!("note: this server runs on the system clock, so the demo makes no overdue requests (warnings, yellow and red cards, deemed acceptance): start it with `anju-server --demo-clock` for those");
    }

    // Every request is decided first, so the same seed gives the same mix with and
    // without the demo clock.
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut specs = Vec::new();
    for index in 0..args.requests {
        let category = Category::ALL[index % Category::ALL.len()];
        let plan = if index < Plan::ALL.len() {
            // Spread the first round over the categories so each plan meets several.
            Plan::ALL[(index * 7) % Plan::ALL.len()]
        } else {
            *Plan::ALL
                .choose_weighted(&mut rng, |p| p.weight())
                .expect("weights are positive")
        };
        // Denials and two-level approvals need a service with sign-offs: from a category
        // without one, the first category that has two levels stands in.
        let levels_in = |category: Category| {
            latest
                .values()
                .filter(|s| s.category == category)
                .map(|s| s.approval_levels)
                .max()
                .unwrap_or(0)
        };
        let category = if plan.needs_levels() && levels_in(category) < 2 {
            Category::ALL
                .into_iter()
                .find(|c| levels_in(*c) >= 2)
                .unwrap_or(category)
        } else {
            category
        };
        let site = sites[rng.gen_range(0..sites.len())].clone();
        let in_category: Vec<&anju_domain::ServiceDefinition> =
            latest.values().filter(|s| s.category == category).collect();
        let service = if plan.needs_levels() {
            in_category
                .iter()
                .max_by_key(|s| (s.approval_levels, s.code.to_string()))
                .copied()
        } else if plan == Plan::LongOverdue {
            in_category
                .iter()
                .min_by_key(|s| (s.promised_days, s.code.to_string()))
                .copied()
        } else {
            in_category.choose(&mut rng).copied()
        }
        .with_context(|| format!("the catalogue has no service in {}", category.as_str()))?;
        let day = plan.day(&mut rng, DEMO_WORKING_DAYS, service.promised_days);
        specs.push(Spec {
            index,
            plan,
            site,
            service: service.clone(),
            day,
        });
    }
    specs.sort_by_key(|spec| (spec.day, spec.index));

    if let Some(clock) = clock.as_mut() {
        clock.move_to_working_morning().await?;
    }
    let mut outcomes = Vec::new();
    let mut next = 0;
    for day in 0..DEMO_WORKING_DAYS {
        if let Some(clock) = clock.as_mut() {
            let mut fired = 0;
            if day > 0 {
                fired = clock
                    .advance(AdvanceClockRequest {
                        by: None,
                        working_days: 1,
                    })
                    .await?;
            }
            if !quiet {
                let arriving = specs.iter().filter(|s| s.day == day).count();
                eprintln!(
                    "day {:>2}/{DEMO_WORKING_DAYS}  {}  {arriving} new, {fired} timers fired",
                    day + 1,
                    beijing_date(clock.now.as_ref()),
                );
            }
        }
        while let Some(spec) = specs.get(next) {
            // Without the demo clock every day's work happens now.
            if clock.is_some() && spec.day != day {
                break;
            }
            next += 1;
            let definition = &definitions[&spec.service.code.to_string()];
            let outcome = drive(&base, &tokens, &mut rng, spec, definition)
                .await
                .with_context(|| {
                    format!(
                        "demo request {} ({}, {} at {})",
                        spec.index + 1,
                        spec.plan.name(),
                        spec.service.code,
                        spec.site
                    )
                })?;
            if !quiet {
                eprintln!(
                    "{:>3}/{}  {:<14} {:<16} {:<32} {}",
                    spec.index + 1,
                    args.requests,
                    outcome.service,
                    outcome.site,
                    spec.plan.name(),
                    labels::state(context.lang, outcome.state)
                );
            }
            outcomes.push(outcome);
        }
    }

    // Where every request stands now, timers included.
    let head = call(
        "reading the log's head",
        admin
            .eventlog()
            .get_log_stats(admin.request(GetLogStatsRequest::default())?),
    )
    .await?
    .head_position;
    for outcome in &mut outcomes {
        let detail = crate::caseworker::detail(&admin, &outcome.request_id, head).await?;
        outcome.state = detail.state;
        outcome.sla = detail.deadline.as_ref().map_or(0, |d| d.sla_status);
        for entry in &detail.timeline {
            match entry.event_type.as_str() {
                "WarningRaised" | "YellowCardIssued" | "RedCardIssued" => {
                    outcome.timers.push(entry.event_type.clone())
                }
                "RequestAccepted" if entry.actor.is_none() => outcome.deemed_accepted = true,
                _ => {}
            }
        }
    }
    print_summary(context, &outcomes, clock.as_ref())
}

async fn drive(
    base: &Session,
    tokens: &Tokens,
    rng: &mut StdRng,
    spec: &Spec,
    definition: &ServiceDefinition,
) -> anyhow::Result<Outcome> {
    let (index, plan, site, service) = (spec.index, spec.plan, spec.site.as_str(), &spec.service);
    let code = service.code.to_string();
    let resident_subject = format!("resident-{:04}", index + 1);
    let resident = as_identity(base, tokens.mint(Role::Resident, &[], &resident_subject)?);
    let kiosk = as_identity(
        base,
        tokens.mint(Role::Kiosk, &[site], &format!("kiosk-{site}"))?,
    );
    let caseworker_a = format!("cw-{site}-1");
    let caseworker_b = format!("cw-{site}-2");
    let worker = as_identity(base, tokens.mint(Role::Caseworker, &[site], &caseworker_a)?);
    let worker_b = as_identity(base, tokens.mint(Role::Caseworker, &[site], &caseworker_b)?);
    let supervisor_1 = as_identity(
        base,
        tokens.mint(Role::Supervisor, &[site], &format!("sup-{site}-1"))?,
    );
    let supervisor_2 = as_identity(
        base,
        tokens.mint(Role::Supervisor, &[site], &format!("sup-{site}-2"))?,
    );
    let manager = as_identity(base, tokens.mint(Role::Manager, &["*"], "manager-county")?);

    // The form, from the catalogue's limits, checked like `anju submit` checks it.
    let name = person_name(rng);
    let birth_year = 1950 + rng.gen_range(0..50);
    let id_number = id_number(rng, birth_year);
    let mut pairs = Vec::new();
    for field in &service.fields {
        if !field.required && rng.gen_bool(0.4) {
            continue;
        }
        pairs.push((
            field.name.clone(),
            field_value(rng, &code, field, &id_number),
        ));
    }
    let checked = form::check_answers(&definition.fields, &pairs)
        .map_err(|problems| crate::resident::invalid_form(&code, &problems))?;
    let answers = form::typed_answers(&definition.fields, &checked);
    let phone = format!(
        "1{}{:09}",
        rng.gen_range(3..=9),
        rng.gen_range(0..1_000_000_000u64)
    );
    let via_kiosk = !plan.resident_acts() && rng.gen_bool(0.4);
    let submitter = if via_kiosk { &kiosk } else { &resident };
    let submitted = call(
        "submitting",
        submitter
            .resident()
            .submit_request(submitter.request(SubmitRequestRequest {
                // A fresh key per run, so a second demo against the same server adds requests
                // rather than replaying the first run's (the mix still follows the seed).
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                service_code: code.clone(),
                site_id: site.to_string(),
                applicant: Some(Applicant {
                    name,
                    phone: phone.clone(),
                    id_number: definition.requires_id_number.then(|| id_number.clone()),
                }),
                answers,
                text_answers: HashMap::new(),
                materials: HashMap::new(),
                on_behalf_of: via_kiosk.then(|| OnBehalfOf {
                    kiosk_id: format!("kiosk-{site}"),
                    staff_name: "帮办员 李梅".into(),
                    relation: if rng.gen_bool(0.5) {
                        "本人 self".into()
                    } else {
                        "子女 child".into()
                    },
                    note: String::new(),
                }),
            })?),
    )
    .await?;
    let id = submitted.request_id.clone();
    let tracking = submitted.tracking_code.clone();
    let last4 = phone[7..].to_string();
    let mut state = submitted.state;
    let outcome = |state: i32| Outcome {
        category: service.category,
        site: site.to_string(),
        service: code.clone(),
        plan,
        request_id: id.clone(),
        tracking_code: tracking.clone(),
        state,
        day: spec.day,
        timers: Vec::new(),
        deemed_accepted: false,
        sla: 0,
    };
    if matches!(plan, Plan::Waiting | Plan::DeemedAccepted) {
        return Ok(outcome(state));
    }
    if plan == Plan::Withdrawn {
        let r = call(
            "withdrawing",
            resident
                .resident()
                .withdraw_request(resident.request(WithdrawRequestRequest {
                    tracking_code: tracking.clone(),
                    phone_last4: last4.clone(),
                    idempotency_key: String::new(),
                    reason: "家里已自行解决 sorted it out ourselves".into(),
                })?),
        )
        .await?;
        return Ok(outcome(r.state));
    }
    let mut actor = worker.clone();
    state = call(
        "claiming",
        actor
            .caseworker()
            .claim_request(actor.request(ClaimRequestRequest {
                request_id: id.clone(),
                ..Default::default()
            })?),
    )
    .await?
    .state;
    if plan == Plan::Claimed {
        call(
            "adding a note",
            actor.caseworker().add_note(
                actor.request(AddNoteRequest {
                    request_id: id.clone(),
                    text: "已电话联系申请人，约定周三上门 called the applicant, visit on Wednesday"
                        .into(),
                    internal: true,
                    ..Default::default()
                })?,
            ),
        )
        .await?;
        return Ok(outcome(state));
    }
    if plan == Plan::Reassigned {
        call(
            "reassigning",
            supervisor_1
                .caseworker()
                .reassign_request(supervisor_1.request(ReassignRequestRequest {
                    request_id: id.clone(),
                    new_assignee: caseworker_b.clone(),
                    reason: "原经办人休假 the first caseworker is on leave".into(),
                    ..Default::default()
                })?),
        )
        .await?;
        actor = worker_b.clone();
    }
    if plan == Plan::Refused {
        let r = call(
            "refusing",
            actor
                .caseworker()
                .refuse_request(actor.request(RefuseRequestRequest {
                    request_id: id.clone(),
                    reason: "户籍不在本安置区 household not registered in this community".into(),
                    legal_basis: "《社会救助暂行办法》第十一条".into(),
                    ..Default::default()
                })?),
        )
        .await?;
        return Ok(outcome(r.state));
    }
    if matches!(plan, Plan::InfoRequested | Plan::Accepted) {
        state = call(
            "asking for materials",
            actor
                .caseworker()
                .request_info(actor.request(RequestInfoRequest {
                    request_id: id.clone(),
                    missing: vec![
                        MissingMaterial {
                            material_code: String::new(),
                            description: "户口簿复印件 copy of the household register".into(),
                        },
                        MissingMaterial {
                            material_code: String::new(),
                            description: "银行卡复印件 copy of the bank card".into(),
                        },
                    ],
                    message: "请一次性补齐以下材料 please bring all of these at once".into(),
                    ..Default::default()
                })?),
        )
        .await?
        .state;
        if plan == Plan::InfoRequested {
            return Ok(outcome(state));
        }
        call(
            "providing materials",
            resident
                .resident()
                .provide_info(resident.request(ProvideInfoRequest {
                    tracking_code: tracking.clone(),
                    phone_last4: last4.clone(),
                    message: "材料已在社区服务中心窗口提交 handed in at the service centre".into(),
                    ..Default::default()
                })?),
        )
        .await?;
    }
    state = call(
        "accepting",
        actor
            .caseworker()
            .accept_request(actor.request(AcceptRequestRequest {
                request_id: id.clone(),
                comment: "材料齐全 materials complete".into(),
                ..Default::default()
            })?),
    )
    .await?
    .state;
    if matches!(plan, Plan::Accepted | Plan::Overdue | Plan::LongOverdue) {
        return Ok(outcome(state));
    }
    let levels = u32::from(service.approval_levels);
    {
        // The caseworker's review (level 0) comes first, even with no sign-offs to follow.
        state = call(
            "reviewing",
            actor
                .caseworker()
                .approve_request(actor.request(ApproveRequestRequest {
                    request_id: id.clone(),
                    level: 0,
                    comment: "经入户核实，情况属实 verified at home".into(),
                    ..Default::default()
                })?),
        )
        .await?
        .state;
        if plan == Plan::Denied && levels > 0 {
            let r = call(
                "denying",
                supervisor_1.caseworker().deny_request(
                    supervisor_1.request(DenyRequestRequest {
                        request_id: id.clone(),
                        level: 1,
                        reason: "家庭收入高于当地标准 household income above the local threshold"
                            .into(),
                        legal_basis: "当地低保标准".into(),
                        ..Default::default()
                    })?,
                ),
            )
            .await?;
            return Ok(outcome(r.state));
        }
        for level in 1..=levels {
            let approver = if level == 1 {
                &supervisor_1
            } else {
                &supervisor_2
            };
            state = call(
                &format!("approving level {level}"),
                approver
                    .caseworker()
                    .approve_request(approver.request(ApproveRequestRequest {
                        request_id: id.clone(),
                        level,
                        comment: "同意 approved".into(),
                        ..Default::default()
                    })?),
            )
            .await?
            .state;
            if plan == Plan::HalfApproved && level == 1 {
                return Ok(outcome(state));
            }
        }
    }
    if matches!(plan, Plan::Approved | Plan::HalfApproved | Plan::Denied) {
        return Ok(outcome(state));
    }
    state = call(
        "starting fulfilment",
        actor
            .caseworker()
            .start_fulfilment(actor.request(StartFulfilmentRequest {
                request_id: id.clone(),
                ..Default::default()
            })?),
    )
    .await?
    .state;
    let steps: Vec<String> = service.steps.iter().map(|s| s.code.clone()).collect();
    let steps_to_do = match plan {
        Plan::InFulfilment | Plan::Extended | Plan::Reassigned => {
            steps.len().saturating_sub(1).min(1)
        }
        _ => steps.len(),
    };
    if plan == Plan::Extended {
        let extension = call(
            "asking for an extension",
            actor
                .caseworker()
                .request_extension(actor.request(RequestExtensionRequest {
                    request_id: id.clone(),
                    working_days: 5,
                    reason:
                        "等待县医院鉴定结果 waiting for the county hospital's assessment".into(),
                    ..Default::default()
                })?),
        )
        .await?;
        state = call(
            "granting the extension",
            supervisor_1
                .caseworker()
                .decide_extension(supervisor_1.request(DecideExtensionRequest {
                    request_id: id.clone(),
                    extension_id: extension.extension_id,
                    grant: true,
                    granted_working_days: 0,
                    comment: "同意延期 extension granted".into(),
                    ..Default::default()
                })?),
        )
        .await?
        .state;
    }
    for step in steps.iter().take(steps_to_do) {
        state = call(
            &format!("completing step {step}"),
            actor.caseworker().complete_fulfilment_step(actor.request(
                CompleteFulfilmentStepRequest {
                    request_id: id.clone(),
                    step_code: step.clone(),
                    note: String::new(),
                    ..Default::default()
                },
            )?),
        )
        .await?
        .state;
    }
    let grade = match plan {
        Plan::RatedWell | Plan::Closed => [
            SatisfactionGrade::VerySatisfied,
            SatisfactionGrade::VerySatisfied,
            SatisfactionGrade::Satisfied,
            SatisfactionGrade::Neutral,
        ]
        .choose(rng)
        .copied()
        .unwrap_or(SatisfactionGrade::Satisfied),
        Plan::RatedBadly | Plan::AppealRejected => SatisfactionGrade::Dissatisfied,
        Plan::Remediated | Plan::AppealUpheld => SatisfactionGrade::VeryDissatisfied,
        _ => return Ok(outcome(state)),
    };
    state = call(
        "rating",
        resident
            .resident()
            .rate_request(resident.request(RateRequestRequest {
                tracking_code: tracking.clone(),
                phone_last4: last4.clone(),
                idempotency_key: String::new(),
                grade: grade as i32,
                comment: match grade {
                    SatisfactionGrade::VerySatisfied | SatisfactionGrade::Satisfied => {
                        "办事快，态度好 quick and friendly".into()
                    }
                    SatisfactionGrade::Neutral => "还可以 fine".into(),
                    _ => "跑了三趟才办好 had to come three times".into(),
                },
            })?),
    )
    .await?
    .state;
    match plan {
        Plan::Remediated => {
            state = call(
                "resolving the remediation",
                actor.caseworker().resolve_remediation(actor.request(ResolveRemediationRequest {
                    request_id: id.clone(),
                    resolution: "上门致歉并说明流程，已改为一次告知 apologised at home; now one complete list up front".into(),
                    resident_contacted: true,
                    resident_agrees: true,
                    ..Default::default()
                })?),
            )
            .await?
            .state;
        }
        Plan::AppealUpheld | Plan::AppealRejected => {
            call(
                "appealing the rating",
                actor.caseworker().appeal_rating(actor.request(AppealRatingRequest {
                    request_id: id.clone(),
                    reason: "评价针对的是县医保政策而非本窗口服务 the rating is about county policy, not our service".into(),
                    ..Default::default()
                })?),
            )
            .await?;
            state = call(
                "deciding the appeal",
                manager
                    .caseworker()
                    .decide_appeal(manager.request(DecideAppealRequest {
                        request_id: id.clone(),
                        uphold: plan == Plan::AppealUpheld,
                        comment: if plan == Plan::AppealUpheld {
                            "申诉成立 upheld".into()
                        } else {
                            "评价有效 the rating stands".into()
                        },
                        ..Default::default()
                    })?),
            )
            .await?
            .state;
        }
        Plan::Closed => {
            state = call(
                "closing",
                actor
                    .caseworker()
                    .close_request(actor.request(CloseRequestRequest {
                        request_id: id.clone(),
                        ..Default::default()
                    })?),
            )
            .await?
            .state;
        }
        _ => {}
    }
    Ok(outcome(state))
}

fn print_summary(
    context: &Context,
    outcomes: &[Outcome],
    clock: Option<&DemoClock>,
) -> anyhow::Result<()> {
    let count = |event_type: &str| {
        outcomes
            .iter()
            .flat_map(|o| &o.timers)
            .filter(|t| *t == event_type)
            .count()
    };
    let deemed = outcomes.iter().filter(|o| o.deemed_accepted).count();
    let (warnings, yellow, red) = (
        count("WarningRaised"),
        count("YellowCardIssued"),
        count("RedCardIssued"),
    );
    if context.json {
        let requests: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| {
                serde_json::json!({
                    "request_id": o.request_id,
                    "tracking_code": o.tracking_code,
                    "service_code": o.service,
                    "category": o.category.as_str(),
                    "site_id": o.site,
                    "plan": o.plan.name(),
                    "state": RequestState::try_from(o.state).map_or("REQUEST_STATE_UNSPECIFIED", |s| s.as_str_name()),
                    "day": o.day,
                    "deemed_accepted": o.deemed_accepted,
                    "timers": o.timers,
                    "sla_status": SlaStatus::try_from(o.sla).map_or("SLA_STATUS_UNSPECIFIED", |s| s.as_str_name()),
                })
            })
            .collect();
        let summary = serde_json::json!({
            "demo_clock": clock.is_some(),
            "working_days": if clock.is_some() { DEMO_WORKING_DAYS } else { 1 },
            "from": clock.map(|c| beijing_date(c.started.as_ref())),
            "to": clock.map(|c| beijing_date(c.now.as_ref())),
            "timers_fired": clock.map_or(0, |c| c.timers_fired),
            "deemed_accepted": deemed,
            "warnings": warnings,
            "yellow_cards": yellow,
            "red_cards": red,
            "requests": requests,
        });
        println!("{summary}");
        return Ok(());
    }
    let lang = context.lang;
    let states: Vec<i32> = (1..=10).collect();
    let mut headers = vec![lang.pick("category", "类别").to_string()];
    headers.extend(states.iter().map(|s| labels::state(lang, *s)));
    headers.push(lang.pick("total", "合计").to_string());
    let mut table = Table::new(&headers).right(&(1..headers.len()).collect::<Vec<_>>());
    let row = |label: String, items: &[&Outcome]| {
        let mut cells = vec![label];
        for state in &states {
            let count = items.iter().filter(|o| o.state == *state).count();
            cells.push(if count == 0 {
                "·".into()
            } else {
                count.to_string()
            });
        }
        cells.push(items.len().to_string());
        cells
    };
    for category in Category::ALL {
        let items: Vec<&Outcome> = outcomes.iter().filter(|o| o.category == category).collect();
        table.row(row(
            format!("{} {}", category.name_zh(), category.as_str()),
            &items,
        ));
    }
    let all: Vec<&Outcome> = outcomes.iter().collect();
    table.total(row(lang.pick("total", "合计").to_string(), &all));
    print!("{}", table.render());
    if let Some(clock) = clock {
        let (from, to) = (
            beijing_date(clock.started.as_ref()),
            beijing_date(clock.now.as_ref()),
        );
        match lang {
            Lang::En => println!(
                "\ndemo clock: {from} to {to} (Beijing), {DEMO_WORKING_DAYS} working days; timers fired: {deemed} deemed acceptances, {warnings} warnings, {yellow} yellow cards, {red} red cards (see `anju report sla`)"
            ),
            Lang::Zh => println!(
                "\n演示时钟：{from} 至 {to}（北京时间），共 {DEMO_WORKING_DAYS} 个工作日；督办：视为受理 {deemed} 件，预警 {warnings} 次，黄牌 {yellow} 张，红牌 {red} 张（见 `anju report sla`）"
            ),
        }
    }
    Ok(())
}

fn person_name(rng: &mut StdRng) -> String {
    const SURNAMES: [&str; 12] = [
        "阿", "吉", "马", "沙", "曲", "吉克", "阿苏", "王", "李", "张", "杨", "罗",
    ];
    const GIVEN: [&str; 12] = [
        "木呷", "伍各", "拉哈", "阿依", "日火", "子莫", "秀英", "建国", "春梅", "志强", "海燕",
        "金花",
    ];
    format!(
        "{}{}",
        SURNAMES.choose(rng).unwrap_or(&"王"),
        GIVEN.choose(rng).unwrap_or(&"芳")
    )
}

/// A well-formed identity number (ISO 7064 MOD 11-2 check character) born in `year`.
fn id_number(rng: &mut StdRng, year: u32) -> String {
    let body = format!(
        "513431{year:04}{:02}{:02}{:03}",
        rng.gen_range(1..=12),
        rng.gen_range(1..=28),
        rng.gen_range(0..1000)
    );
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    format!("{body}{}", CHECK[(sum % 11) as usize] as char)
}

fn field_value(
    rng: &mut StdRng,
    service: &str,
    field: &anju_domain::FieldDefinition,
    id: &str,
) -> String {
    let name = field.name.as_str();
    match field.kind {
        FieldKind::Number => {
            let low = field.min.unwrap_or(0.0).max(
                if name.contains("income") || name.contains("amount") {
                    300.0
                } else {
                    1.0
                },
            );
            let high = field
                .max
                .unwrap_or(10.0)
                .min(low + if low >= 300.0 { 3000.0 } else { 5.0 });
            let value = rng.gen_range(low as i64..=high.max(low) as i64);
            if low >= 300.0 {
                (value / 100 * 100).to_string()
            } else {
                value.to_string()
            }
        }
        FieldKind::Date => {
            let (low, high) = if service == "YL-GAOLING" {
                (1930, 1945)
            } else if name.contains("child") {
                (2023, 2025)
            } else {
                (2026, 2026)
            };
            let year = rng.gen_range(low..=high);
            let month = if year == 2026 {
                rng.gen_range(9..=11)
            } else {
                rng.gen_range(1..=12)
            };
            format!("{year:04}-{month:02}-{:02}", rng.gen_range(1..=28))
        }
        FieldKind::SingleChoice => field.options.choose(rng).cloned().unwrap_or_default(),
        FieldKind::MultipleChoice => {
            let count = rng.gen_range(1..=field.options.len().clamp(1, 2));
            let picked: Vec<String> = field.options.choose_multiple(rng, count).cloned().collect();
            picked.join(",")
        }
        FieldKind::String => {
            let text = if name.contains("id_number") {
                if name.contains("child") {
                    id_number(rng, 2024)
                } else {
                    id.to_string()
                }
            } else if name == "certificate_number" {
                format!("{}{}", &id[..18], rng.gen_range(11..=44))
            } else if name.contains("name") {
                person_name(rng)
            } else if name.contains("school") {
                "美姑县民族小学 Meigu ethnic primary school".into()
            } else if name == "location" {
                format!(
                    "{}栋{}单元{}号 block {}",
                    rng.gen_range(1..=30),
                    rng.gen_range(1..=4),
                    rng.gen_range(101..=1802),
                    rng.gen_range(1..=30)
                )
            } else if name == "purpose" {
                "办理子女转学 for a child's school transfer".into()
            } else {
                [
                    "卫生间漏水，楼下墙面发霉 the bathroom leaks into the flat below",
                    "老人行动不便，需要上门服务 elderly, cannot walk far",
                    "家中主要劳动力生病住院 the main earner is in hospital",
                    "路灯坏了一个月 the street light has been out for a month",
                ]
                .choose(rng)
                .copied()
                .unwrap_or("情况说明")
                .to_string()
            };
            let max = field.max_length.unwrap_or(500) as usize;
            let mut text: String = text.chars().take(max).collect();
            while text.chars().count() < field.min_length.unwrap_or(0) as usize {
                text.push('。');
            }
            text
        }
    }
}
