//! Shared test helpers: a real event log in a temporary directory, and a driver that
//! turns domain commands into appended events with `anju_domain::decide`.

#![allow(dead_code)]

use anju_domain::*;
use anju_eventlog::{EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent};
use anju_projections::{MetricsFilter, Projections};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

pub static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::shipped);

pub fn calendar() -> Arc<Calendar> {
    Arc::new(Calendar::china_2026())
}

pub fn site_a() -> SiteId {
    SiteId::new("site-a")
}

pub fn site_b() -> SiteId {
    SiteId::new("site-b")
}

pub fn resident() -> Actor {
    Actor::resident("res-1")
}

pub fn caseworker() -> Actor {
    Actor::caseworker("cw-a", [site_a()], Category::ALL)
}

pub fn caseworker_b() -> Actor {
    Actor::caseworker("cw-b", [site_b()], Category::ALL)
}

pub fn supervisor() -> Actor {
    Actor::supervisor("sup-a", [site_a()])
}

pub fn supervisor_b() -> Actor {
    Actor::supervisor("sup-b", [site_b()])
}

pub fn manager() -> Actor {
    Actor::manager("mgr-1", Scope::All)
}

pub fn system() -> Actor {
    Actor::system()
}

/// An instant in March 2026, CST. 2 March 2026 is a Monday.
pub fn march(day: u32, hour: u32) -> Timestamp {
    Timestamp::cst(2026, 3, day, hour, 0)
}

pub fn march_min(day: u32, hour: u32, minute: u32) -> Timestamp {
    Timestamp::cst(2026, 3, day, hour, minute)
}

pub fn rid(n: u128) -> RequestId {
    RequestId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0000 + n,
    ))
}

pub fn tracking(n: u8) -> TrackingCode {
    TrackingCode::from_random_bytes([n, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, n])
}

fn text(value: &str) -> Answer {
    Answer::Text(value.to_string())
}

pub fn answers_for(service: &str) -> FormAnswers {
    let mut answers = FormAnswers::new();
    match service {
        "MZ-DIBAO" => {
            answers.insert("household_size".into(), Answer::Number(4.0));
            answers.insert("monthly_income_yuan".into(), Answer::Number(1200.0));
            answers.insert(
                "income_sources".into(),
                Answer::Choices(vec!["务工 wages".into()]),
            );
            answers.insert(
                "id_number".into(),
                Answer::Sealed {
                    sealed: "sealed:v1:id-secret".into(),
                },
            );
        }
        "MZ-LINSHI" => {
            answers.insert("emergency_type".into(), text("火灾 fire"));
            answers.insert("occurred_on".into(), text("2026-02-27"));
        }
        "SQ-WEIXIU" => {
            answers.insert("problem".into(), text("漏水 leak"));
            answers.insert("location".into(), text("3栋2单元501"));
        }
        "SQ-SHESHI" => {
            answers.insert("facility".into(), text("路灯 street light"));
            answers.insert("description".into(), text("5栋门口路灯不亮"));
        }
        other => panic!("no test answers for {other}"),
    }
    answers
}

pub fn submission(service: &str, site: SiteId, n: u8) -> Action {
    let code = ServiceCode::parse(service).expect("service code");
    let version = CATALOGUE.get(&code).expect("service exists").version;
    Action::Submit(Submission {
        tracking_code: tracking(n),
        site,
        service_code: code,
        definition_version: version,
        answers: answers_for(service),
        applicant: Applicant {
            resident_id: ActorId::new("res-1"),
            display_name: "王秀英".to_string(),
            phone_last4: "0427".to_string(),
            sealed_contact: "sealed:v1:contact-secret".to_string(),
            id_number_digests: Vec::new(),
        },
        on_behalf_of: None,
        materials: Default::default(),
    })
}

/// A real log in a temporary directory plus the folded state of each request, so
/// tests can issue commands the way the application layer will.
pub struct World {
    pub dir: tempfile::TempDir,
    pub log: EventLog,
    states: Mutex<HashMap<RequestId, RequestState>>,
}

pub fn options() -> LogOptions {
    LogOptions {
        segment_size: 1 << 20,
        preallocate: false,
        ..LogOptions::default()
    }
}

impl World {
    pub async fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = EventLog::open(dir.path(), options())
            .await
            .expect("open log");
        World {
            dir,
            log,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Closes the log and opens it again from the same directory.
    pub async fn reopen(self) -> World {
        let World { dir, log, states } = self;
        log.close().await.expect("close log");
        let log = EventLog::open(dir.path(), options())
            .await
            .expect("reopen log");
        World { dir, log, states }
    }

    pub fn state(&self, id: RequestId) -> RequestState {
        self.states
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// Decides, appends and folds one command; returns the last position written
    /// (or the head minus one when the command produced no events).
    pub async fn run(&self, id: RequestId, actor: Actor, at: Timestamp, action: Action) -> u64 {
        let state = self.state(id);
        let name = action.name();
        let command = Command::new(actor.clone(), at, id, action);
        let context = Context {
            catalogue: &CATALOGUE,
            calendar: &Calendar::china_2026(),
        };
        let events = decide(&state, &command, &context)
            .unwrap_or_else(|e| panic!("{name} was refused: {e}"));
        if events.is_empty() {
            return self.log.head_position().saturating_sub(1);
        }
        let new_events = events
            .iter()
            .map(|e| NewEvent {
                event_id: uuid::Uuid::now_v7(),
                event_type: e.event_type().to_string(),
                schema_version: e.schema_version(),
                metadata: Metadata {
                    actor: actor.id.0.clone(),
                    ..Metadata::default()
                },
                payload: e.to_json(),
            })
            .collect();
        let result = self
            .log
            .append(&id.stream_name(), ExpectedVersion::Any, new_events)
            .await
            .expect("append");
        let next = events.iter().fold(state, evolve);
        self.states.lock().unwrap().insert(id, next);
        result.last_position
    }

    /// Appends raw bytes to a stream (for undecodable events).
    pub async fn append_raw(&self, stream: &str, event_type: &str, payload: &[u8]) -> u64 {
        let event = NewEvent::new(event_type, payload.to_vec());
        self.log
            .append(stream, ExpectedVersion::Any, vec![event])
            .await
            .expect("append raw")
            .last_position
    }

    /// Fires every timer of `id` that `next_due` says is due at `at`.
    pub async fn fire_due(&self, id: RequestId, at: Timestamp) -> u64 {
        let mut last = self.log.head_position().saturating_sub(1);
        for timer in next_due(&self.state(id), &Calendar::china_2026()) {
            if timer.due_at <= at {
                last = self
                    .run(
                        id,
                        system(),
                        at,
                        Action::FireTimer {
                            kind: timer.kind,
                            due_at: timer.due_at,
                        },
                    )
                    .await;
            }
        }
        last
    }
}

/// Waits until the projections have applied everything in the log.
pub async fn caught_up(projections: &Projections, log: &EventLog) {
    let head = log.head_position();
    if head > 0 {
        projections
            .wait_for(head - 1, Duration::from_secs(20))
            .await
            .expect("projections catch up");
    }
}

pub fn all() -> MetricsFilter {
    MetricsFilter::default()
}

/// A deterministic mix of request lives over two sites, `n` requests, ten kinds of path:
/// open, accepted, fulfilled and closed with a rating, withdrawn, refused, paused and
/// resumed, bad rating with an appeal, deemed acceptance and supervision timers,
/// approval by a supervisor, denial.
pub async fn mixed_workload(world: &World, from: usize, to: usize) {
    for i in from..to {
        let id = rid(10_000 + i as u128);
        let (site, cw, sup) = if i % 3 == 2 {
            (site_b(), caseworker_b(), supervisor_b())
        } else {
            (site_a(), caseworker(), supervisor())
        };
        let t0 = Timestamp(march(2 + (i % 7) as u32, 9).0 + (i as i64 % 50) * 60_000);
        let h = |hours: i64| Timestamp(t0.0 + hours * 3_600_000);
        let n = (i % 250) as u8;
        let path = i % 10;
        let service = if path >= 8 {
            "MZ-LINSHI"
        } else if i % 4 == 3 {
            "SQ-SHESHI"
        } else {
            "SQ-WEIXIU"
        };
        world
            .run(id, resident(), t0, submission(service, site.clone(), n))
            .await;
        match path {
            0 => {}
            3 => {
                world
                    .run(
                        id,
                        resident(),
                        h(1),
                        Action::Withdraw {
                            reason: Some("不需要了".into()),
                        },
                    )
                    .await;
            }
            4 => {
                world.run(id, cw.clone(), h(1), Action::Claim).await;
                world
                    .run(
                        id,
                        cw.clone(),
                        h(2),
                        Action::Refuse {
                            reason: "不符合 not eligible".into(),
                            legal_basis: None,
                        },
                    )
                    .await;
            }
            7 => {
                world.fire_due(id, h(24 * 10)).await;
                world.fire_due(id, h(24 * 20)).await;
                world.fire_due(id, h(24 * 30)).await;
            }
            _ => {
                world.run(id, cw.clone(), h(1), Action::Claim).await;
                world
                    .run(id, cw.clone(), h(2), Action::Accept { comment: None })
                    .await;
                if path == 1 {
                    continue;
                }
                if path == 5 {
                    world
                        .run(
                            id,
                            cw.clone(),
                            h(3),
                            Action::RequestInfo {
                                missing: vec!["照片 photo".into()],
                                message: None,
                            },
                        )
                        .await;
                    world
                        .run(
                            id,
                            resident(),
                            h(30),
                            Action::ProvideInfo {
                                note: None,
                                materials: Default::default(),
                            },
                        )
                        .await;
                    continue;
                }
                world
                    .run(
                        id,
                        cw.clone(),
                        h(20),
                        Action::Review {
                            opinion: "ok".into(),
                        },
                    )
                    .await;
                if path == 9 {
                    world
                        .run(
                            id,
                            sup.clone(),
                            h(40),
                            Action::Deny {
                                reason: "no".into(),
                                legal_basis: None,
                            },
                        )
                        .await;
                    continue;
                }
                if path == 8 {
                    world
                        .run(
                            id,
                            sup.clone(),
                            h(40),
                            Action::Approve {
                                level: 1,
                                comment: None,
                            },
                        )
                        .await;
                }
                world.fire_due(id, h(24 * 4)).await;
                world
                    .run(
                        id,
                        cw.clone(),
                        h(50),
                        Action::StartFulfilment { note: None },
                    )
                    .await;
                let steps: &[&str] = match service {
                    "MZ-LINSHI" => &["verify", "pay"],
                    "SQ-SHESHI" => &["handle", "reply"],
                    _ => &["inspect", "repair", "check"],
                };
                for step in steps {
                    world
                        .run(
                            id,
                            cw.clone(),
                            h(60 + (i as i64 % 90)),
                            Action::CompleteStep {
                                step: step.to_string(),
                                note: None,
                            },
                        )
                        .await;
                }
                let grade = Grade::ALL[i % 5];
                world
                    .run(
                        id,
                        resident(),
                        h(200),
                        Action::Rate {
                            grade,
                            comment: None,
                        },
                    )
                    .await;
                if path == 6 && grade.is_bad() {
                    world
                        .run(
                            id,
                            cw.clone(),
                            h(210),
                            Action::AppealRating { reason: "r".into() },
                        )
                        .await;
                    world
                        .run(
                            id,
                            manager(),
                            h(220),
                            Action::DecideAppeal { uphold: i % 2 == 0 },
                        )
                        .await;
                } else if grade.is_bad() {
                    world
                        .run(
                            id,
                            cw.clone(),
                            h(230),
                            Action::ResolveRemediation {
                                summary: "done".into(),
                            },
                        )
                        .await;
                }
                if path == 2 {
                    world.run(id, cw.clone(), h(240), Action::Close).await;
                }
            }
        }
    }
}
