//! The resident's side: the catalogue, submitting with checked form fields, and
//! following, completing, withdrawing and rating a request by tracking code and the
//! phone's last four digits.

use std::collections::HashMap;

use anju_proto::v1::{
    Applicant, AttachmentRef, FormValue, GetRequestStatusRequest, GetServiceDefinitionRequest,
    ListServicesRequest, OnBehalfOf, ProvideInfoRequest, RateRequestRequest, RequestStatus,
    SatisfactionGrade, ServiceDefinition, SubmitRequestRequest, WatchRequestRequest,
    WithdrawRequestRequest,
};
use clap::{Args, Subcommand};

use crate::client::{call, Context, Session};
use crate::failure::{Exit, Failure};
use crate::form;
use crate::json;
use crate::labels::{self, Lang};
use crate::table::{key_values, Table};

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(subcommand)]
    show: Option<ServicesCommand>,
    /// Only the services offered at this site.
    #[arg(long)]
    site: Option<String>,
    /// Only this category (e.g. elderly_care).
    #[arg(long)]
    category: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ServicesCommand {
    /// One service's form, materials, approval levels and time limits.
    Show { code: String },
}

/// A request as the resident names it.
#[derive(Debug, Args)]
pub struct TrackingArgs {
    /// The tracking code on the receipt.
    tracking_code: String,
    /// Last four digits of the phone given at submission.
    #[arg(long = "phone-last4", value_name = "DIGITS")]
    phone_last4: String,
}

#[derive(Debug, Subcommand)]
pub enum ResidentCommand {
    /// Submits a request; fields are checked against the service's form first.
    Submit(SubmitArgs),
    /// Where a request stands, by tracking code and the phone's last four digits.
    Status(TrackingArgs),
    /// Follows a request's status live until it ends (or Ctrl-C).
    Watch(TrackingArgs),
    /// Provides the materials a caseworker asked for.
    ProvideInfo {
        #[command(flatten)]
        tracking: TrackingArgs,
        /// A material: CODE=REFERENCE (the upload reference); repeat.
        #[arg(long = "material", value_name = "CODE=REF", value_parser = form::parse_pair)]
        materials: Vec<(String, String)>,
        /// A corrected answer: KEY=VALUE; repeat.
        #[arg(long = "field", value_name = "KEY=VALUE", value_parser = form::parse_pair)]
        fields: Vec<(String, String)>,
        #[arg(long, default_value = "")]
        message: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Withdraws a request that has no decision yet.
    Withdraw {
        #[command(flatten)]
        tracking: TrackingArgs,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Rates a fulfilled request: very-satisfied, satisfied, neutral, dissatisfied, very-dissatisfied.
    Rate {
        #[command(flatten)]
        tracking: TrackingArgs,
        #[arg(long, value_parser = parse_grade)]
        grade: SatisfactionGrade,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Service code, e.g. YL-GAOLING (see `anju services`).
    service: String,
    /// Site (community) the resident lives at.
    #[arg(long)]
    site: String,
    /// Applicant's name.
    #[arg(long)]
    name: String,
    /// Applicant's mobile number (11 digits).
    #[arg(long)]
    phone: String,
    /// Identity card number, when the service needs it.
    #[arg(long)]
    id_number: Option<String>,
    /// A form answer: KEY=VALUE; repeat. Choices by code or label; several choices comma-separated.
    #[arg(long = "field", value_name = "KEY=VALUE", value_parser = form::parse_pair)]
    fields: Vec<(String, String)>,
    /// A material handed over: CODE=REFERENCE; repeat.
    #[arg(long = "material", value_name = "CODE=REF", value_parser = form::parse_pair)]
    materials: Vec<(String, String)>,
    /// Kiosk staff submitting for the resident: the kiosk id.
    #[arg(long)]
    kiosk_id: Option<String>,
    /// Kiosk staff name shown to the resident.
    #[arg(long, requires = "kiosk_id")]
    staff_name: Option<String>,
    /// The applicant's relation to the person the request is for.
    #[arg(long, requires = "kiosk_id")]
    relation: Option<String>,
    /// Retry key; a retry with the same key returns the same request [default: a new UUID].
    #[arg(long)]
    idempotency_key: Option<String>,
}

pub fn parse_grade(text: &str) -> Result<SatisfactionGrade, String> {
    match text.to_lowercase().replace('_', "-").as_str() {
        "very-satisfied" | "非常满意" | "5" => Ok(SatisfactionGrade::VerySatisfied),
        "satisfied" | "满意" | "4" => Ok(SatisfactionGrade::Satisfied),
        "neutral" | "基本满意" | "3" => Ok(SatisfactionGrade::Neutral),
        "dissatisfied" | "不满意" | "2" => Ok(SatisfactionGrade::Dissatisfied),
        "very-dissatisfied" | "非常不满意" | "1" => Ok(SatisfactionGrade::VeryDissatisfied),
        _ => Err(format!(
            "unknown grade {text:?}: use very-satisfied, satisfied, neutral, dissatisfied or very-dissatisfied"
        )),
    }
}

fn key(given: Option<String>) -> String {
    given.unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

pub async fn services(context: &Context, args: ServicesArgs) -> anyhow::Result<()> {
    let session = context.connect().await?;
    match args.show {
        Some(ServicesCommand::Show { code }) => {
            let service = definition(&session, &code).await?;
            if context.json {
                return json::print("ServiceDefinition", &service);
            }
            print!("{}", render_definition(context.lang, &service));
            Ok(())
        }
        None => {
            let response = call(
                "listing services",
                session
                    .resident()
                    .list_services(session.request(ListServicesRequest {
                        site_id: args.site.unwrap_or_default(),
                        category: args.category.unwrap_or_default(),
                        min_position: 0,
                    })?),
            )
            .await?;
            if context.json {
                return json::print("ListServicesResponse", &response);
            }
            let lang = context.lang;
            let mut table = Table::new(&[
                lang.pick("code", "编码"),
                lang.pick("category", "类别"),
                lang.pick("service", "服务"),
                lang.pick("promised days", "承诺时限(工作日)"),
                lang.pick("id number", "需身份证"),
            ])
            .right(&[3]);
            for service in &response.services {
                table.row(vec![
                    service.code.clone(),
                    service.category.clone(),
                    service.name.clone(),
                    service.promised_working_days.to_string(),
                    if service.requires_id_number {
                        lang.pick("yes", "是")
                    } else {
                        ""
                    }
                    .to_string(),
                ]);
            }
            print!("{}", table.render());
            Ok(())
        }
    }
}

/// One service's definition from the server.
pub async fn definition(session: &Session, code: &str) -> anyhow::Result<ServiceDefinition> {
    let response = call(
        &format!("reading service {code}"),
        session.resident().get_service_definition(session.request(
            GetServiceDefinitionRequest {
                service_code: code.to_string(),
                min_position: 0,
            },
        )?),
    )
    .await
    .map_err(|error| match crate::failure::exit_code(&error) {
        Exit::NotFound => anyhow::Error::from(
            Failure::new(Exit::NotFound, format!("no service {code:?}"))
                .hint("list the codes with `anju services`"),
        ),
        _ => error,
    })?;
    response
        .service
        .ok_or_else(|| anyhow::anyhow!("the server sent no definition for {code}"))
}

/// A service's form and limits, for people.
pub fn render_definition(lang: Lang, service: &ServiceDefinition) -> String {
    let mut out = key_values(&[
        (
            lang.pick("service", "服务").into(),
            format!("{} {}", service.code, service.name),
        ),
        (
            lang.pick("category", "类别").into(),
            service.category.clone(),
        ),
        (
            lang.pick("description", "说明").into(),
            service.description.clone(),
        ),
        (
            lang.pick("approval levels", "审批层级").into(),
            service.approval_levels.to_string(),
        ),
        (
            lang.pick("acceptance limit", "受理时限").into(),
            format!(
                "{} {}",
                service.acceptance_working_days,
                lang.pick("working days", "个工作日")
            ),
        ),
        (
            lang.pick("decision limit", "办理时限").into(),
            format!(
                "{} {}",
                service.decision_working_days,
                lang.pick("working days", "个工作日")
            ),
        ),
        (
            lang.pick("identity number", "身份证号").into(),
            if service.requires_id_number {
                lang.pick("required", "必填")
            } else {
                lang.pick("not needed", "不需要")
            }
            .into(),
        ),
        (
            lang.pick("version", "版本").into(),
            service.version.to_string(),
        ),
    ]);
    out.push('\n');
    let mut fields = Table::new(&[
        lang.pick("field", "字段"),
        lang.pick("label", "名称"),
        lang.pick("type", "类型"),
        lang.pick("required", "必填"),
        lang.pick("choices / limit", "选项/限制"),
    ]);
    for field in &service.fields {
        let limit = if !field.choices.is_empty() {
            field
                .choices
                .iter()
                .map(|c| c.code.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        } else if field.max_length > 0 {
            format!("≤{}", field.max_length)
        } else {
            String::new()
        };
        fields.row(vec![
            field.key.clone(),
            field.label.clone(),
            form::type_name(field.r#type).to_string(),
            if field.required {
                "*".into()
            } else {
                String::new()
            },
            limit,
        ]);
    }
    out.push_str(&fields.render());
    if !service.materials.is_empty() {
        out.push('\n');
        let mut materials = Table::new(&[
            lang.pick("material", "材料"),
            lang.pick("name", "名称"),
            lang.pick("required", "必交"),
        ]);
        for material in &service.materials {
            materials.row(vec![
                material.code.clone(),
                material.name.clone(),
                if material.required {
                    "*".into()
                } else {
                    String::new()
                },
            ]);
        }
        out.push_str(&materials.render());
    }
    if !service.fulfilment_steps.is_empty() {
        out.push('\n');
        let mut steps = Table::new(&[
            lang.pick("step", "步骤"),
            lang.pick("name", "名称"),
            lang.pick("working days", "工作日"),
        ])
        .right(&[2]);
        for step in &service.fulfilment_steps {
            steps.row(vec![
                step.code.clone(),
                step.name.clone(),
                step.working_days.to_string(),
            ]);
        }
        out.push_str(&steps.render());
    }
    out
}

fn attachments(pairs: Vec<(String, String)>) -> HashMap<String, AttachmentRef> {
    pairs
        .into_iter()
        .map(|(code, reference)| {
            (
                code,
                AttachmentRef {
                    file_name: reference
                        .rsplit('/')
                        .next()
                        .unwrap_or(&reference)
                        .to_string(),
                    reference,
                    ..AttachmentRef::default()
                },
            )
        })
        .collect()
}

/// Every problem of a form, as one failure with exit 2.
pub fn invalid_form(code: &str, problems: &[form::FieldProblem]) -> anyhow::Error {
    let mut message = format!("invalid form for {code}:");
    for problem in problems {
        message.push_str(&format!("\n  field {}: {}", problem.field, problem.problem));
    }
    Failure::usage(message)
        .hint(format!("see the form with `anju services show {code}`"))
        .into()
}

pub async fn run(context: &Context, command: ResidentCommand) -> anyhow::Result<()> {
    let session = context.connect().await?;
    match command {
        ResidentCommand::Submit(args) => submit(&session, args).await,
        ResidentCommand::Status(tracking) => {
            let status =
                status(&session, &tracking.tracking_code, &tracking.phone_last4, 0).await?;
            if context.json {
                return json::print("RequestStatus", &status);
            }
            print!("{}", render_status(context.lang, &status));
            Ok(())
        }
        ResidentCommand::Watch(tracking) => watch(&session, tracking).await,
        ResidentCommand::ProvideInfo {
            tracking,
            materials,
            fields,
            message,
            idempotency_key,
        } => {
            let answers = fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        FormValue {
                            value: Some(anju_proto::v1::form_value::Value::Text(v)),
                        },
                    )
                })
                .collect();
            let response = call(
                "providing the materials",
                session
                    .resident()
                    .provide_info(session.request(ProvideInfoRequest {
                        tracking_code: tracking.tracking_code.clone(),
                        phone_last4: tracking.phone_last4,
                        idempotency_key: key(idempotency_key),
                        materials: attachments(materials),
                        answers,
                        message,
                    })?),
            )
            .await?;
            if context.json {
                return json::print("ProvideInfoResponse", &response);
            }
            println!(
                "{}: {} ({} {})",
                tracking.tracking_code,
                context.lang.pick("materials provided", "已补正"),
                labels::state(context.lang, response.state),
                response.position
            );
            Ok(())
        }
        ResidentCommand::Withdraw {
            tracking,
            reason,
            idempotency_key,
        } => {
            let response = call(
                "withdrawing the request",
                session
                    .resident()
                    .withdraw_request(session.request(WithdrawRequestRequest {
                        tracking_code: tracking.tracking_code.clone(),
                        phone_last4: tracking.phone_last4,
                        idempotency_key: key(idempotency_key),
                        reason,
                    })?),
            )
            .await?;
            if context.json {
                return json::print("WithdrawRequestResponse", &response);
            }
            println!(
                "{}: {}",
                tracking.tracking_code,
                labels::state(context.lang, response.state)
            );
            Ok(())
        }
        ResidentCommand::Rate {
            tracking,
            grade,
            comment,
            idempotency_key,
        } => {
            let response = call(
                "rating the request",
                session
                    .resident()
                    .rate_request(session.request(RateRequestRequest {
                        tracking_code: tracking.tracking_code.clone(),
                        phone_last4: tracking.phone_last4,
                        idempotency_key: key(idempotency_key),
                        grade: grade as i32,
                        comment,
                    })?),
            )
            .await?;
            if context.json {
                return json::print("RateRequestResponse", &response);
            }
            println!(
                "{}: {} {}, {} {}",
                tracking.tracking_code,
                context.lang.pick("rated", "已评价"),
                labels::grade(context.lang, grade as i32),
                context.lang.pick("remediation", "整改"),
                labels::remediation(context.lang, response.remediation)
            );
            Ok(())
        }
    }
}

async fn submit(session: &Session, args: SubmitArgs) -> anyhow::Result<()> {
    let context = &session.context;
    if args.phone.chars().filter(char::is_ascii_digit).count() != 11 || args.phone.len() != 11 {
        return Err(Failure::usage(format!(
            "invalid --phone: expected an 11-digit mobile number, got {} characters",
            args.phone.chars().count()
        ))
        .into());
    }
    let service = definition(session, &args.service).await?;
    let checked = form::check_answers(&service.fields, &args.fields)
        .map_err(|problems| invalid_form(&service.code, &problems))?;
    let answers = form::typed_answers(&service.fields, &checked);
    if service.requires_id_number && args.id_number.is_none() {
        return Err(Failure::usage(format!(
            "{} needs the applicant's identity number",
            service.code
        ))
        .hint("add --id-number with the 18-character identity card number")
        .into());
    }
    // "*" in site_ids means every site.
    if !service.site_ids.is_empty() && !service.site_ids.iter().any(|s| s == "*" || s == &args.site)
    {
        return Err(Failure::usage(format!(
            "{} is not offered at site {:?}; it is offered at {}",
            service.code,
            args.site,
            service.site_ids.join(", ")
        ))
        .into());
    }
    let on_behalf_of = args.kiosk_id.map(|kiosk_id| OnBehalfOf {
        kiosk_id,
        staff_name: args.staff_name.unwrap_or_default(),
        relation: args.relation.unwrap_or_default(),
        note: String::new(),
    });
    let response = call(
        &format!("submitting {}", service.code),
        session
            .resident()
            .submit_request(session.request(SubmitRequestRequest {
                idempotency_key: key(args.idempotency_key),
                service_code: service.code.clone(),
                site_id: args.site,
                applicant: Some(Applicant {
                    name: args.name,
                    phone: args.phone,
                    id_number: args.id_number,
                }),
                answers,
                text_answers: HashMap::new(),
                materials: attachments(args.materials),
                on_behalf_of,
            })?),
    )
    .await?;
    if context.json {
        return json::print("SubmitRequestResponse", &response);
    }
    let lang = context.lang;
    print!(
        "{}",
        key_values(&[
            (
                lang.pick("tracking code", "受理编号").into(),
                response.tracking_code.clone()
            ),
            (
                lang.pick("request id", "申请ID").into(),
                response.request_id.clone()
            ),
            (
                lang.pick("state", "状态").into(),
                labels::state(lang, response.state)
            ),
            (
                lang.pick("submitted", "提交时间").into(),
                labels::time(response.submitted_at.as_ref())
            ),
            (
                lang.pick("accept by", "受理期限").into(),
                labels::deadline(lang, response.acceptance_deadline.as_ref())
            ),
            (
                lang.pick("replayed", "重复提交").into(),
                response.replayed.to_string()
            ),
        ])
    );
    Ok(())
}

pub async fn status(
    session: &Session,
    tracking_code: &str,
    phone_last4: &str,
    min_position: u64,
) -> anyhow::Result<RequestStatus> {
    let response = call(
        &format!("looking up {tracking_code}"),
        session
            .resident()
            .get_request_status(session.request(GetRequestStatusRequest {
                tracking_code: tracking_code.to_string(),
                phone_last4: phone_last4.to_string(),
                min_position,
            })?),
    )
    .await?;
    response
        .status
        .ok_or_else(|| anyhow::anyhow!("the server sent no status for {tracking_code}"))
}

/// A request's status and public timeline, for the resident.
pub fn render_status(lang: Lang, status: &RequestStatus) -> String {
    let mut pairs = vec![
        (
            lang.pick("tracking code", "受理编号").to_string(),
            status.tracking_code.clone(),
        ),
        (
            lang.pick("service", "服务").into(),
            format!("{} {}", status.service_code, status.service_name),
        ),
        (lang.pick("site", "站点").into(), status.site_id.clone()),
        (
            lang.pick("state", "状态").into(),
            labels::state(lang, status.state),
        ),
        (
            lang.pick("submitted", "提交时间").into(),
            labels::time(status.submitted_at.as_ref()),
        ),
        (
            lang.pick("deadline", "期限").into(),
            labels::deadline(lang, status.deadline.as_ref()),
        ),
    ];
    if !status.missing_materials.is_empty() {
        let missing: Vec<String> = status
            .missing_materials
            .iter()
            .map(|m| format!("{} {}", m.code, m.name).trim().to_string())
            .collect();
        pairs.push((lang.pick("missing", "需补正").into(), missing.join("; ")));
        pairs.push((
            lang.pick("message", "说明").into(),
            status.info_request_message.clone(),
        ));
    }
    if !status.decision_reason.is_empty() {
        pairs.push((
            lang.pick("reason", "理由").into(),
            status.decision_reason.clone(),
        ));
    }
    if !status.legal_basis.is_empty() {
        pairs.push((
            lang.pick("legal basis", "法律依据").into(),
            status.legal_basis.clone(),
        ));
    }
    if let Some(rating) = &status.rating {
        pairs.push((
            lang.pick("rating", "评价").into(),
            format!("{} {}", labels::grade(lang, rating.grade), rating.comment)
                .trim()
                .to_string(),
        ));
    }
    let mut out = key_values(&pairs);
    out.push('\n');
    out.push_str(&timeline_table(lang, &status.timeline));
    out
}

pub fn timeline_table(lang: Lang, entries: &[anju_proto::v1::TimelineEntry]) -> String {
    let mut table = Table::new(&[
        lang.pick("time", "时间"),
        lang.pick("event", "事件"),
        lang.pick("by", "经办"),
        lang.pick("state", "状态"),
        lang.pick("summary", "摘要"),
    ]);
    for entry in entries {
        let by = entry
            .actor
            .as_ref()
            .map(|a| {
                if a.display_name.is_empty() {
                    a.subject.clone()
                } else {
                    a.display_name.clone()
                }
            })
            .unwrap_or_default();
        table.row(vec![
            labels::time(entry.at.as_ref()),
            entry.event_type.clone(),
            by,
            labels::state(lang, entry.state),
            entry.summary.clone(),
        ]);
    }
    table.render()
}

async fn watch(session: &Session, tracking: TrackingArgs) -> anyhow::Result<()> {
    let context = &session.context;
    let mut stream = call(
        &format!("watching {}", tracking.tracking_code),
        session
            .resident()
            .watch_request(session.stream_request(WatchRequestRequest {
                tracking_code: tracking.tracking_code.clone(),
                phone_last4: tracking.phone_last4.clone(),
                after_position: 0,
            })?),
    )
    .await?;
    loop {
        match stream.message().await {
            Ok(Some(update)) => {
                if context.json {
                    json::print("WatchRequestResponse", &update)?;
                } else {
                    let state = update.status.as_ref().map_or(0, |s| s.state);
                    println!(
                        "{:>8}  {:<24}  {}",
                        update.position,
                        update.event_type,
                        labels::state(context.lang, state)
                    );
                }
            }
            Ok(None) => return Ok(()),
            Err(status) => {
                return Err(crate::failure::from_status("watching the request", &status).into())
            }
        }
    }
}
