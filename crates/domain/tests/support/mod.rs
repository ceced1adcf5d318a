//! Shared test helpers: fixtures (actors, times, submissions) and the
//! `given(events).when(command).then(events)` scenario helper.

#![allow(dead_code)]

use anju_domain::*;
use std::sync::LazyLock;

pub static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(Catalogue::shipped);
pub static CALENDAR: LazyLock<Calendar> = LazyLock::new(Calendar::china_2026);

pub fn ctx() -> Context<'static> {
    Context {
        catalogue: &CATALOGUE,
        calendar: &CALENDAR,
    }
}

pub fn request_id() -> RequestId {
    RequestId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0001,
    ))
}

pub fn site_a() -> SiteId {
    SiteId::new("scsite-a")
}

pub fn site_b() -> SiteId {
    SiteId::new("scsite-b")
}

pub fn resident() -> Actor {
    Actor::resident("res-1")
}

pub fn other_resident() -> Actor {
    Actor::resident("res-2")
}

pub fn kiosk() -> Actor {
    Actor::kiosk("kiosk-1", [site_a()])
}

pub fn caseworker() -> Actor {
    Actor::caseworker("cw-1", [site_a()], Category::ALL)
}

pub fn caseworker2() -> Actor {
    Actor::caseworker("cw-2", [site_a()], Category::ALL)
}

/// A caseworker of the right site who does not handle civil affairs.
pub fn community_only_caseworker() -> Actor {
    Actor::caseworker("cw-3", [site_a()], [Category::Community])
}

pub fn site_b_caseworker() -> Actor {
    Actor::caseworker("cw-9", [site_b()], Category::ALL)
}

pub fn supervisor() -> Actor {
    Actor::supervisor("sup-1", [site_a()])
}

pub fn supervisor2() -> Actor {
    Actor::supervisor("sup-2", [site_a()])
}

pub fn site_b_supervisor() -> Actor {
    Actor::supervisor("sup-9", [site_b()])
}

pub fn manager() -> Actor {
    Actor::manager("mgr-1", Scope::All)
}

pub fn site_b_manager() -> Actor {
    Actor::manager("mgr-9", Scope::only([site_b()]))
}

pub fn admin() -> Actor {
    Actor::admin("admin-1")
}

pub fn system() -> Actor {
    Actor::system()
}

/// An instant in March 2026, CST. 2 March 2026 is a Monday.
pub fn march(day: u32, hour: u32) -> Timestamp {
    Timestamp::cst(2026, 3, day, hour, 0)
}

pub fn cmd(actor: Actor, at: Timestamp, action: Action) -> Command {
    Command::new(actor, at, request_id(), action)
}

pub fn id(text: &str) -> ActorId {
    ActorId::new(text)
}

pub fn code(text: &str) -> ServiceCode {
    ServiceCode::parse(text).expect("test service code is valid")
}

pub fn tracking_code() -> TrackingCode {
    TrackingCode::from_random_bytes([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0])
}

pub fn applicant() -> Applicant {
    Applicant {
        resident_id: id("res-1"),
        display_name: "王秀英".to_string(),
        phone_last4: "0427".to_string(),
        sealed_contact: "sealed:v1:abcdef".to_string(),
        id_number_digests: Vec::new(),
    }
}

fn text(value: &str) -> Answer {
    Answer::Text(value.to_string())
}

fn sealed(value: &str) -> Answer {
    Answer::Sealed {
        sealed: value.to_string(),
    }
}

/// Valid, already sealed answers for the services the tests use.
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
            answers.insert("id_number".into(), sealed("sealed:v1:id"));
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

pub fn submission(service: &str) -> Submission {
    let version = CATALOGUE
        .get(&code(service))
        .expect("service exists")
        .version;
    Submission {
        tracking_code: tracking_code(),
        site: site_a(),
        service_code: code(service),
        definition_version: version,
        answers: answers_for(service),
        applicant: applicant(),
        on_behalf_of: None,
        materials: Default::default(),
    }
}

/// Runs commands from an empty request, returning every event; a refused command
/// fails the test with the refusal.
pub fn history(commands: Vec<Command>) -> Vec<Event> {
    let mut state = RequestState::default();
    let mut events = Vec::new();
    for command in commands {
        let decided = decide(&state, &command, &ctx()).unwrap_or_else(|e| {
            panic!("history command {} was refused: {e}", command.action.name())
        });
        for event in decided {
            state = try_evolve(&state, &event).expect("decided event applies");
            events.push(event);
        }
    }
    events
}

/// Standard histories of one service, each extending the previous.
pub fn submitted(service: &str) -> Vec<Command> {
    vec![cmd(
        resident(),
        march(2, 9),
        Action::Submit(submission(service)),
    )]
}

pub fn claimed(service: &str) -> Vec<Command> {
    let mut c = submitted(service);
    c.push(cmd(caseworker(), march(2, 10), Action::Claim));
    c
}

pub fn accepted(service: &str) -> Vec<Command> {
    let mut c = claimed(service);
    c.push(cmd(
        caseworker(),
        march(2, 11),
        Action::Accept { comment: None },
    ));
    c
}

pub fn reviewed(service: &str) -> Vec<Command> {
    let mut c = accepted(service);
    c.push(cmd(
        caseworker(),
        march(3, 9),
        Action::Review {
            opinion: "材料齐全 complete".into(),
        },
    ));
    c
}

/// Reviewed and given every approval the service needs.
pub fn approved(service: &str) -> Vec<Command> {
    let mut c = reviewed(service);
    let levels = CATALOGUE
        .get(&code(service))
        .expect("service exists")
        .approval_levels;
    let approvers = [supervisor(), supervisor2()];
    for level in 1..=levels {
        c.push(cmd(
            approvers[usize::from(level - 1)].clone(),
            march(3, 10 + u32::from(level)),
            Action::Approve {
                level,
                comment: None,
            },
        ));
    }
    c
}

pub fn in_fulfilment(service: &str) -> Vec<Command> {
    let mut c = approved(service);
    c.push(cmd(
        caseworker(),
        march(4, 9),
        Action::StartFulfilment { note: None },
    ));
    c
}

pub fn fulfilled(service: &str) -> Vec<Command> {
    let mut c = in_fulfilment(service);
    let steps = CATALOGUE
        .get(&code(service))
        .expect("service exists")
        .steps
        .clone();
    for (i, step) in steps.iter().enumerate() {
        c.push(cmd(
            caseworker(),
            march(4, 10 + i as u32),
            Action::CompleteStep {
                step: step.code.clone(),
                note: None,
            },
        ));
    }
    c
}

pub fn closed(service: &str) -> Vec<Command> {
    let mut c = fulfilled(service);
    c.push(cmd(caseworker(), march(5, 9), Action::Close));
    c
}

pub fn with(mut commands: Vec<Command>, more: impl IntoIterator<Item = Command>) -> Vec<Command> {
    commands.extend(more);
    commands
}

pub struct Given {
    state: RequestState,
}

pub struct When {
    state: RequestState,
    result: Result<Vec<Event>, DomainError>,
}

/// Starts a scenario from past events (every one must apply).
pub fn given(events: impl IntoIterator<Item = Event>) -> Given {
    let mut state = RequestState::default();
    for event in events {
        state = try_evolve(&state, &event)
            .unwrap_or_else(|e| panic!("given event does not apply: {e}"));
    }
    Given { state }
}

/// Starts a scenario from the events the commands produce.
pub fn given_commands(commands: Vec<Command>) -> Given {
    given(history(commands))
}

impl Given {
    pub fn state(&self) -> &RequestState {
        &self.state
    }

    pub fn when(self, command: Command) -> When {
        let result = decide(&self.state, &command, &ctx());
        When {
            state: self.state,
            result,
        }
    }
}

impl When {
    /// Asserts the exact events, that they apply, and returns the new state.
    pub fn then(self, expected: Vec<Event>) -> RequestState {
        let events = match self.result {
            Ok(events) => events,
            Err(e) => panic!("expected events, got error: {e}"),
        };
        assert_eq!(events, expected);
        let mut state = self.state;
        for event in &events {
            state = try_evolve(&state, event)
                .unwrap_or_else(|e| panic!("decided event does not apply: {e}"));
        }
        state
    }

    /// Asserts events of these types (for events with computed fields) and returns them with the new state.
    pub fn then_types(self, expected: &[&str]) -> (Vec<Event>, RequestState) {
        let events = match self.result {
            Ok(events) => events,
            Err(e) => panic!("expected events, got error: {e}"),
        };
        let types: Vec<_> = events.iter().map(Event::event_type).collect();
        assert_eq!(types, expected);
        let mut state = self.state;
        for event in &events {
            state = try_evolve(&state, event)
                .unwrap_or_else(|e| panic!("decided event does not apply: {e}"));
        }
        (events, state)
    }

    pub fn then_error(self, expected: DomainError) {
        match self.result {
            Ok(events) => panic!("expected error {expected}, got events {events:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }

    /// Asserts an error of the right kind whose message contains `text`.
    pub fn then_error_like(self, check: impl Fn(&DomainError) -> bool, text: &str) {
        match self.result {
            Ok(events) => panic!("expected an error containing {text:?}, got events {events:?}"),
            Err(e) => {
                assert!(check(&e), "unexpected error kind: {e:?}");
                assert!(
                    e.to_string().contains(text),
                    "error {e:?} does not say {text:?}"
                );
            }
        }
    }
}

pub fn is_forbidden(e: &DomainError) -> bool {
    matches!(e, DomainError::Forbidden { .. })
}

pub fn is_conflict(e: &DomainError) -> bool {
    matches!(e, DomainError::Conflict { .. })
}

pub fn is_precondition(e: &DomainError) -> bool {
    matches!(e, DomainError::Precondition { .. })
}

pub fn is_invalid(e: &DomainError) -> bool {
    matches!(e, DomainError::Invalid(_))
}

pub fn wrong_state(current: Status, command: &'static str) -> DomainError {
    DomainError::WrongState { current, command }
}
