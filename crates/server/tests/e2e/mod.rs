//! The end-to-end workflow tests and their shared world: one server, tokens for every
//! role and site, and submissions for one service of every category.

mod access;
mod clock;
mod close;
mod inputs;
mod issue_16_calendar;
mod issue_16_identity;
mod issue_16_inputs;
mod issue_16_record;
mod lifecycle;
mod nats;
mod paging;
mod race;
mod restart;
mod streams;

use std::collections::HashMap;

use anju_auth::Role;
use anju_proto::v1::*;
use tonic::{Code, Status};

use crate::helpers::{authed, Clients, TestApp};

pub const SITE_A: &str = "site-a";
pub const SITE_B: &str = "site-b";

/// Tokens for every role of the access matrix.
pub struct Tokens {
    pub resident: String,
    pub other_resident: String,
    pub kiosk: String,
    pub caseworker_a: String,
    pub caseworker_a2: String,
    pub caseworker_b: String,
    pub supervisor_a: String,
    pub supervisor_a2: String,
    pub manager_a: String,
    pub manager_all: String,
    pub admin: String,
}

pub struct World {
    pub app: TestApp,
    pub clients: Clients,
    pub tokens: Tokens,
}

impl World {
    pub async fn new() -> World {
        World::on(TestApp::spawn().await).await
    }

    pub async fn on(app: TestApp) -> World {
        let tokens = Tokens {
            resident: app.token(Role::Resident, "resident-li", &[], &[]),
            other_resident: app.token(Role::Resident, "resident-zhao", &[], &[]),
            kiosk: app.token(Role::Kiosk, "kiosk-a1", &[SITE_A], &[]),
            caseworker_a: app.token(Role::Caseworker, "cw-wang", &[SITE_A], &[]),
            caseworker_a2: app.token(Role::Caseworker, "cw-chen", &[SITE_A], &[]),
            caseworker_b: app.token(Role::Caseworker, "cw-liu", &[SITE_B], &[]),
            supervisor_a: app.token(Role::Supervisor, "sup-zhou", &[SITE_A], &[]),
            supervisor_a2: app.token(Role::Supervisor, "sup-wu", &[SITE_A], &[]),
            manager_a: app.token(Role::Manager, "mgr-sun", &[SITE_A], &[]),
            manager_all: app.token(Role::Manager, "mgr-province", &["*"], &[]),
            admin: app.token(Role::Admin, "admin-ops", &["*"], &[]),
        };
        let clients = app.clients().await;
        World {
            app,
            clients,
            tokens,
        }
    }

    /// The log's head position (number of events), as GetLogStats reports it.
    pub async fn head(&self) -> u64 {
        self.clients
            .eventlog
            .clone()
            .get_log_stats(authed(GetLogStatsRequest::default(), &self.tokens.admin))
            .await
            .expect("log stats")
            .into_inner()
            .head_position
    }

    pub async fn status(&self, submitted: &Submitted, min_position: u64) -> RequestStatus {
        self.clients
            .resident
            .clone()
            .get_request_status(authed(
                GetRequestStatusRequest {
                    tracking_code: submitted.tracking_code.clone(),
                    phone_last4: submitted.phone_last4.clone(),
                    min_position,
                },
                &submitted.token,
            ))
            .await
            .expect("status look-up")
            .into_inner()
            .status
            .expect("a status")
    }

    pub async fn detail(
        &self,
        token: &str,
        request_id: &str,
        min_position: u64,
    ) -> Result<RequestDetail, Status> {
        self.clients
            .caseworker
            .clone()
            .get_request(authed(
                GetRequestRequest {
                    request_id: request_id.to_string(),
                    min_position,
                },
                token,
            ))
            .await
            .map(|r| r.into_inner().request.expect("a request"))
    }

    pub async fn submit(
        &self,
        token: &str,
        form: &Form,
        key: &str,
        phone: &str,
    ) -> Result<Submitted, Status> {
        let response = self
            .clients
            .resident
            .clone()
            .submit_request(authed(form.request(key, phone), token))
            .await?
            .into_inner();
        Ok(Submitted {
            request_id: response.request_id,
            tracking_code: response.tracking_code,
            position: response.position,
            phone_last4: phone[phone.len() - 4..].to_string(),
            token: token.to_string(),
            replayed: response.replayed,
        })
    }
}

/// What a submission answered, with what the resident needs to look it up.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub request_id: String,
    pub tracking_code: String,
    pub position: u64,
    pub phone_last4: String,
    /// The token that submitted it.
    pub token: String,
    pub replayed: bool,
}

/// A filled-in form for one service.
#[derive(Debug, Clone)]
pub struct Form {
    pub service_code: &'static str,
    pub site: &'static str,
    pub text_answers: Vec<(&'static str, &'static str)>,
    pub typed_answers: Vec<(&'static str, form_value::Value)>,
    pub id_number: Option<&'static str>,
}

impl Form {
    pub fn text(service_code: &'static str, answers: &[(&'static str, &'static str)]) -> Form {
        Form {
            service_code,
            site: SITE_A,
            text_answers: answers.to_vec(),
            typed_answers: Vec::new(),
            id_number: None,
        }
    }

    pub fn request(&self, key: &str, phone: &str) -> SubmitRequestRequest {
        SubmitRequestRequest {
            idempotency_key: key.to_string(),
            service_code: self.service_code.to_string(),
            site_id: self.site.to_string(),
            applicant: Some(Applicant {
                name: "李秀英".into(),
                phone: phone.into(),
                id_number: self.id_number.map(str::to_string),
            }),
            answers: self
                .typed_answers
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        FormValue {
                            value: Some(v.clone()),
                        },
                    )
                })
                .collect(),
            text_answers: self
                .text_answers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            materials: HashMap::new(),
            on_behalf_of: None,
        }
    }
}

/// A commonly published sample identity number with a valid check character.
pub const SAMPLE_ID_NUMBER: &str = "11010519491231002X";

/// Dibao, two approval levels, typed answers (integers, a list, a sealed id number).
pub fn dibao() -> Form {
    Form {
        service_code: "MZ-DIBAO",
        site: SITE_A,
        text_answers: Vec::new(),
        typed_answers: vec![
            ("household_size", form_value::Value::Integer(3)),
            ("monthly_income_yuan", form_value::Value::Decimal(800.0)),
            (
                "income_sources",
                form_value::Value::Choices(StringList {
                    values: vec!["务工 wages".into()],
                }),
            ),
            (
                "id_number",
                form_value::Value::Text(SAMPLE_ID_NUMBER.into()),
            ),
        ],
        id_number: Some(SAMPLE_ID_NUMBER),
    }
}

/// One service of every category of the shipped catalogue.
pub fn one_per_category() -> Vec<Form> {
    vec![
        dibao(),
        Form::text("YL-JUJIA", &[("services", "助餐 meals")]),
        Form::text(
            "TY-TUOYU",
            &[
                ("child_birth_date", "2024-03-01"),
                ("schedule", "全日 full day"),
            ],
        ),
        Form::text(
            "JY-YIBAO",
            &[("action", "新参保 new enrolment"), ("people", "2")],
        ),
        Form::text(
            "JX-ZHUANXUE",
            &[("current_school", "县第二小学"), ("current_grade", "3")],
        ),
        Form::text("ZC-FUJU", &[("device", "轮椅 wheelchair")]),
        Form::text("JYE-PEIXUN", &[("course", "电工 electrician")]),
        Form::text(
            "SQ-WEIXIU",
            &[("problem", "漏水 leak"), ("location", "3-2-501")],
        ),
    ]
}

/// Asserts a call failed with `code`, showing the status otherwise.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got OK: {value:?}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            status
        }
    }
}
