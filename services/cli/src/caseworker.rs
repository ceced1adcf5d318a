//! The caseworker's side: the queue, one request in full, and every decision on it,
//! each write printing the new state and version (or the server's answer as JSON).

use anju_proto::v1::{
    AcceptRequestRequest, AddNoteRequest, AppealRatingRequest, ApproveRequestRequest,
    ClaimRequestRequest, CloseRequestRequest, CompleteFulfilmentStepRequest, DecideAppealRequest,
    DecideExtensionRequest, DenyRequestRequest, FindRequestsByIdentityRequest, FoundRequest,
    GetRequestRequest, ListQueueRequest, MissingMaterial, QueueFilter, QueueItem,
    ReassignRequestRequest, RefuseRequestRequest, RequestDetail, RequestExtensionRequest,
    RequestInfoRequest, RequestState, ResolveRemediationRequest, StartFulfilmentRequest,
};
use clap::{Args, Subcommand};

use crate::client::{call, Context, Session};
use crate::failure::Failure;
use crate::json;
use crate::labels::{self, Lang};
use crate::table::{key_values, Table};

/// What every caseworker write names.
#[derive(Debug, Args)]
pub struct Target {
    /// The request id (a UUID; `anju queue` lists them).
    request_id: String,
    /// Fail with a conflict (exit 5) if the request's version is no longer this.
    #[arg(long)]
    expected_version: Option<u64>,
    /// Retry key; a retry with the same key returns the first answer.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CaseworkerCommand {
    /// The requests waiting for work, soonest deadline first.
    Queue(QueueArgs),
    /// One request in full, with its timeline.
    Show { request_id: String },
    /// Makes you the request's responsible caseworker.
    Claim(Target),
    /// Accepts the request (受理).
    Accept {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Refuses the request at intake (不予受理).
    Refuse {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "")]
        legal_basis: String,
    },
    /// Asks for missing materials, all at once (一次性告知).
    RequestInfo {
        #[command(flatten)]
        target: Target,
        /// What is missing: CODE=DESCRIPTION, or just a description; repeat.
        #[arg(long = "missing", value_name = "[CODE=]DESCRIPTION", required = true)]
        missing: Vec<String>,
        #[arg(long, default_value = "")]
        message: String,
    },
    /// Gives the caseworker's review opinion (审核), before the supervisors' sign-offs.
    Review {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        opinion: String,
    },
    /// Approves at one approval level (supervisor; each level a different one).
    Approve {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
        level: u32,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Denies at one approval level.
    Deny {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 1)]
        level: u32,
        #[arg(long)]
        reason: String,
        #[arg(long, default_value = "")]
        legal_basis: String,
    },
    /// Fulfilment: `fulfil start ID`, `fulfil step ID STEP`.
    Fulfil {
        #[command(subcommand)]
        command: FulfilCommand,
    },
    /// Adds a note (internal unless --public).
    Note {
        #[command(flatten)]
        target: Target,
        text: String,
        /// Visible to the resident.
        #[arg(long)]
        public: bool,
    },
    /// Hands the request to another caseworker (supervisor).
    Reassign {
        #[command(flatten)]
        target: Target,
        /// Subject of the caseworker who takes over.
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Extensions of the running deadline: `extension request`, `extension decide`.
    Extension {
        #[command(subcommand)]
        command: ExtensionCommand,
    },
    /// Records the follow-up of a bad rating.
    Remediate {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        resolution: String,
        /// The resident was reached.
        #[arg(long)]
        contacted: bool,
        /// The resident agrees the matter is settled.
        #[arg(long)]
        agrees: bool,
    },
    /// Rating appeals: `appeal file`, `appeal decide`.
    Appeal {
        #[command(subcommand)]
        command: AppealCommand,
    },
    /// Closes a fulfilled request (办结归档): its caseworker, a supervisor or an admin.
    Close(Target),
    /// Finds a resident's requests by identity number, after checking their identity
    /// card (for a resident who lost the receipt). The number is read from standard
    /// input (a prompt on a terminal), never from the command line, where `ps` and the
    /// shell history would show it. Each look-up is rate-limited and recorded, with the
    /// reason, in the server's audit stream `audit-identity-lookups`.
    #[command(
        name = "find-by-identity",
        after_help = "Examples:\n  anju find-by-identity --reason \"resident lost the receipt\"\n  \
                      read -rs ID && printf '%s\\n' \"$ID\" | anju find-by-identity --reason \"lost receipt\""
    )]
    FindByIdentity {
        /// Why you look the resident up; kept in the audit record (at most 200
        /// characters, no identity or phone numbers).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FulfilCommand {
    /// Starts delivering an approved request.
    Start {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Marks one fulfilment step done.
    Step {
        #[command(flatten)]
        target: Target,
        step: String,
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExtensionCommand {
    /// Asks for more working days.
    Request {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        days: u32,
        #[arg(long)]
        reason: String,
    },
    /// Grants or rejects an extension (supervisor).
    Decide {
        #[command(flatten)]
        target: Target,
        extension_id: String,
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        grant: bool,
        #[arg(long)]
        reject: bool,
        /// Fewer days than asked; default all of them.
        #[arg(long, default_value_t = 0)]
        days: u32,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppealCommand {
    /// Appeals a rating you hold to be unfair.
    File {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        reason: String,
    },
    /// Upholds or rejects an appeal (supervisor).
    Decide {
        #[command(flatten)]
        target: Target,
        #[arg(long, conflicts_with = "reject", required_unless_present = "reject")]
        uphold: bool,
        #[arg(long)]
        reject: bool,
        #[arg(long, default_value = "")]
        comment: String,
    },
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Only this site; repeat for several.
    #[arg(long = "site")]
    sites: Vec<String>,
    /// Only this category; repeat for several.
    #[arg(long = "category")]
    categories: Vec<String>,
    /// Only this state (submitted, info-requested, accepted, approved, in-fulfilment, fulfilled); repeat.
    #[arg(long = "state", value_parser = parse_state)]
    states: Vec<RequestState>,
    /// Only requests past their deadline.
    #[arg(long)]
    overdue: bool,
    /// Only requests assigned to you.
    #[arg(long, conflicts_with = "unassigned")]
    mine: bool,
    /// Only requests nobody has claimed.
    #[arg(long)]
    unassigned: bool,
    /// At most this many lines (all pages are read up to it).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub fn parse_state(text: &str) -> Result<RequestState, String> {
    let normal = text.to_lowercase().replace(['-', ' '], "_");
    let name = format!("REQUEST_STATE_{}", normal.to_uppercase());
    RequestState::from_str_name(&name)
        .filter(|s| *s != RequestState::Unspecified)
        .ok_or_else(|| format!("unknown state {text:?}: use submitted, info-requested, accepted, approved, in-fulfilment, fulfilled, closed, refused, denied or withdrawn"))
}

fn idempotency(key: Option<String>) -> String {
    key.unwrap_or_default()
}

pub async fn run(context: &Context, command: CaseworkerCommand) -> anyhow::Result<()> {
    let session = context.connect().await?;
    let lang = context.lang;
    let client = || session.caseworker();
    match command {
        CaseworkerCommand::Queue(args) => queue(&session, args).await,
        CaseworkerCommand::FindByIdentity { reason } => {
            let identity_number = read_identity_number()?;
            let r = call(
                "finding requests by identity number",
                client().find_requests_by_identity(session.request(
                    FindRequestsByIdentityRequest {
                        identity_number,
                        reason,
                        min_position: 0,
                    },
                )?),
            )
            .await?;
            if context.json {
                return json::print("FindRequestsByIdentityResponse", &r);
            }
            print!("{}", render_found(lang, &r.requests));
            println!(
                "{} {}",
                r.requests.len(),
                lang.pick("found (look-up recorded)", "条 (查询已记录)")
            );
            Ok(())
        }
        CaseworkerCommand::Show { request_id } => {
            let detail = detail(&session, &request_id, 0).await?;
            if context.json {
                return json::print("RequestDetail", &detail);
            }
            print!("{}", render_detail(lang, &detail));
            Ok(())
        }
        CaseworkerCommand::Claim(t) => {
            let r = call(
                "claiming the request",
                client().claim_request(session.request(ClaimRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                })?),
            )
            .await?;
            done(
                context,
                "ClaimRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!("{} {}", lang.pick("assignee", "经办人"), r.assignee),
            )
        }
        CaseworkerCommand::Accept { target: t, comment } => {
            let r = call(
                "accepting the request",
                client().accept_request(session.request(AcceptRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    comment,
                })?),
            )
            .await?;
            let due = labels::deadline(lang, r.decision_deadline.as_ref());
            done(
                context,
                "AcceptRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!("{} {due}", lang.pick("decide by", "办理期限")),
            )
        }
        CaseworkerCommand::Refuse {
            target: t,
            reason,
            legal_basis,
        } => {
            let r = call(
                "refusing the request",
                client().refuse_request(session.request(RefuseRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    reason,
                    legal_basis,
                })?),
            )
            .await?;
            done(
                context,
                "RefuseRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                "",
            )
        }
        CaseworkerCommand::RequestInfo {
            target: t,
            missing,
            message,
        } => {
            let missing = missing
                .into_iter()
                .map(|item| match item.split_once('=') {
                    Some((code, description)) if !code.contains(' ') => MissingMaterial {
                        material_code: code.to_string(),
                        description: description.to_string(),
                    },
                    _ => MissingMaterial {
                        material_code: String::new(),
                        description: item,
                    },
                })
                .collect();
            let r = call(
                "asking for materials",
                client().request_info(session.request(RequestInfoRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    missing,
                    message,
                })?),
            )
            .await?;
            done(
                context,
                "RequestInfoResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                "",
            )
        }
        CaseworkerCommand::Review { target: t, opinion } => {
            let r = call(
                "reviewing the request",
                client().approve_request(session.request(ApproveRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    level: 0,
                    comment: opinion,
                })?),
            )
            .await?;
            done(
                context,
                "ApproveRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!(
                    "{} {}",
                    lang.pick("levels remaining", "剩余审批层级"),
                    r.levels_remaining
                ),
            )
        }
        CaseworkerCommand::Approve {
            target: t,
            level,
            comment,
        } => {
            let r = call(
                &format!("approving at level {level}"),
                client().approve_request(session.request(ApproveRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    level,
                    comment,
                })?),
            )
            .await?;
            done(
                context,
                "ApproveRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!(
                    "{} {}",
                    lang.pick("levels remaining", "剩余审批层级"),
                    r.levels_remaining
                ),
            )
        }
        CaseworkerCommand::Deny {
            target: t,
            level,
            reason,
            legal_basis,
        } => {
            let r = call(
                &format!("denying at level {level}"),
                client().deny_request(session.request(DenyRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    level,
                    reason,
                    legal_basis,
                })?),
            )
            .await?;
            done(
                context,
                "DenyRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                "",
            )
        }
        CaseworkerCommand::Fulfil {
            command: FulfilCommand::Start { target: t, note },
        } => {
            let r = call(
                "starting fulfilment",
                client().start_fulfilment(session.request(StartFulfilmentRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    note,
                })?),
            )
            .await?;
            let due = labels::deadline(lang, r.fulfilment_deadline.as_ref());
            done(
                context,
                "StartFulfilmentResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!("{} {due}", lang.pick("fulfil by", "办结期限")),
            )
        }
        CaseworkerCommand::Fulfil {
            command:
                FulfilCommand::Step {
                    target: t,
                    step,
                    note,
                },
        } => {
            let r = call(
                &format!("completing step {step}"),
                client().complete_fulfilment_step(session.request(
                    CompleteFulfilmentStepRequest {
                        request_id: t.request_id.clone(),
                        expected_version: t.expected_version,
                        idempotency_key: idempotency(t.idempotency_key),
                        step_code: step,
                        note,
                    },
                )?),
            )
            .await?;
            let remaining = if r.steps_remaining.is_empty() {
                "-".to_string()
            } else {
                r.steps_remaining.join(", ")
            };
            done(
                context,
                "CompleteFulfilmentStepResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!("{} {remaining}", lang.pick("steps remaining", "剩余步骤")),
            )
        }
        CaseworkerCommand::Note {
            target: t,
            text,
            public,
        } => {
            let r = call(
                "adding the note",
                client().add_note(session.request(AddNoteRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    text,
                    internal: !public,
                })?),
            )
            .await?;
            done(
                context,
                "AddNoteResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                "",
            )
        }
        CaseworkerCommand::Reassign {
            target: t,
            to,
            reason,
        } => {
            let r = call(
                "reassigning the request",
                client().reassign_request(session.request(ReassignRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    new_assignee: to,
                    reason,
                })?),
            )
            .await?;
            done(
                context,
                "ReassignRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!("{} {}", lang.pick("assignee", "经办人"), r.assignee),
            )
        }
        CaseworkerCommand::Extension {
            command:
                ExtensionCommand::Request {
                    target: t,
                    days,
                    reason,
                },
        } => {
            let r = call(
                "asking for an extension",
                client().request_extension(session.request(RequestExtensionRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    working_days: days,
                    reason,
                })?),
            )
            .await?;
            done(
                context,
                "RequestExtensionResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!("{} {}", lang.pick("extension", "延期申请"), r.extension_id),
            )
        }
        CaseworkerCommand::Extension {
            command:
                ExtensionCommand::Decide {
                    target: t,
                    extension_id,
                    grant,
                    reject: _,
                    days,
                    comment,
                },
        } => {
            let r = call(
                "deciding the extension",
                client().decide_extension(session.request(DecideExtensionRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    extension_id,
                    grant,
                    granted_working_days: days,
                    comment,
                })?),
            )
            .await?;
            let due = labels::deadline(lang, r.deadline.as_ref());
            done(
                context,
                "DecideExtensionResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!("{} {due}", lang.pick("deadline", "期限")),
            )
        }
        CaseworkerCommand::Remediate {
            target: t,
            resolution,
            contacted,
            agrees,
        } => {
            let r = call(
                "recording the remediation",
                client().resolve_remediation(session.request(ResolveRemediationRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    resolution,
                    resident_contacted: contacted,
                    resident_agrees: agrees,
                })?),
            )
            .await?;
            done(
                context,
                "ResolveRemediationResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!(
                    "{} {}",
                    lang.pick("remediation", "整改"),
                    labels::remediation(lang, r.remediation)
                ),
            )
        }
        CaseworkerCommand::Appeal {
            command: AppealCommand::File { target: t, reason },
        } => {
            let r = call(
                "appealing the rating",
                client().appeal_rating(session.request(AppealRatingRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    reason,
                })?),
            )
            .await?;
            done(
                context,
                "AppealRatingResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!(
                    "{} {}",
                    lang.pick("appeal", "申诉"),
                    labels::appeal(lang, r.appeal)
                ),
            )
        }
        CaseworkerCommand::Appeal {
            command:
                AppealCommand::Decide {
                    target: t,
                    uphold,
                    reject: _,
                    comment,
                },
        } => {
            let r = call(
                "deciding the appeal",
                client().decide_appeal(session.request(DecideAppealRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                    uphold,
                    comment,
                })?),
            )
            .await?;
            done(
                context,
                "DecideAppealResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                &format!(
                    "{} {}",
                    lang.pick("appeal", "申诉"),
                    labels::appeal(lang, r.appeal)
                ),
            )
        }
        CaseworkerCommand::Close(t) => {
            let r = call(
                "closing the request",
                client().close_request(session.request(CloseRequestRequest {
                    request_id: t.request_id.clone(),
                    expected_version: t.expected_version,
                    idempotency_key: idempotency(t.idempotency_key),
                })?),
            )
            .await?;
            done(
                context,
                "CloseRequestResponse",
                &r,
                &t.request_id,
                r.state,
                r.version,
                "",
            )
        }
    }
}

/// Prints a write's answer: JSON, or one line with the new state and version.
fn done<M: prost::Message>(
    context: &Context,
    name: &str,
    response: &M,
    request_id: &str,
    state: i32,
    version: u64,
    extra: &str,
) -> anyhow::Result<()> {
    if context.json {
        return json::print(name, response);
    }
    let lang = context.lang;
    let mut line = format!(
        "{request_id}: {} {}, {} {version}",
        lang.pick("state", "状态"),
        labels::state(lang, state),
        lang.pick("version", "版本"),
    );
    if !extra.is_empty() {
        line.push_str(", ");
        line.push_str(extra);
    }
    println!("{line}");
    Ok(())
}

pub async fn detail(
    session: &Session,
    request_id: &str,
    min_position: u64,
) -> anyhow::Result<RequestDetail> {
    let response = call(
        &format!("reading request {request_id}"),
        session
            .caseworker()
            .get_request(session.request(GetRequestRequest {
                request_id: request_id.to_string(),
                min_position,
            })?),
    )
    .await?;
    response
        .request
        .ok_or_else(|| anyhow::anyhow!("the server sent no request for {request_id}"))
}

async fn queue(session: &Session, args: QueueArgs) -> anyhow::Result<()> {
    let context = &session.context;
    if args.limit == 0 {
        return Err(Failure::usage("--limit must be at least 1").into());
    }
    let filter = QueueFilter {
        site_ids: args.sites,
        categories: args.categories,
        states: args.states.iter().map(|s| *s as i32).collect(),
        overdue_only: args.overdue,
        sla_statuses: Vec::new(),
        assignee: if args.mine {
            "me".into()
        } else {
            String::new()
        },
        unassigned_only: args.unassigned,
    };
    let mut items: Vec<QueueItem> = Vec::new();
    let mut page_token = String::new();
    let mut total;
    loop {
        let page = call(
            "listing the queue",
            session
                .caseworker()
                .list_queue(session.request(ListQueueRequest {
                    filter: Some(filter.clone()),
                    page_size: args.limit.min(500),
                    page_token: page_token.clone(),
                    min_position: 0,
                })?),
        )
        .await?;
        total = page.total_size;
        items.extend(page.items);
        if page.next_page_token.is_empty() || items.len() >= args.limit as usize {
            break;
        }
        page_token = page.next_page_token;
    }
    items.truncate(args.limit as usize);
    if context.json {
        let response = anju_proto::v1::ListQueueResponse {
            items,
            next_page_token: String::new(),
            total_size: total,
        };
        return json::print("ListQueueResponse", &response);
    }
    print!("{}", render_queue(context.lang, &items));
    let lang = context.lang;
    println!(
        "{} {} / {} {}",
        items.len(),
        lang.pick("shown", "条已显示"),
        total,
        lang.pick("in the queue", "条在队列中")
    );
    Ok(())
}

/// The identity number from standard input: a prompt on a terminal, else the first line.
fn read_identity_number() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("identity number / 身份证号: ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    let number = line.trim().to_string();
    if number.is_empty() {
        return Err(Failure::usage(
            "no identity number on standard input: type it at the prompt or pipe it in",
        )
        .into());
    }
    Ok(number)
}

/// The requests an identity look-up found, as a table.
pub fn render_found(lang: Lang, requests: &[FoundRequest]) -> String {
    let mut table = Table::new(&[
        lang.pick("request id", "申请ID"),
        lang.pick("tracking", "受理编号"),
        lang.pick("site", "站点"),
        lang.pick("service", "服务"),
        lang.pick("applicant", "申请人"),
        lang.pick("state", "状态"),
        lang.pick("submitted", "提交时间"),
        lang.pick("deadline", "期限"),
    ]);
    for request in requests {
        table.row(vec![
            request.request_id.clone(),
            request.tracking_code.clone(),
            request.site_id.clone(),
            request.service_name.clone(),
            request.applicant_name_masked.clone(),
            labels::state(lang, request.state),
            labels::time(request.submitted_at.as_ref()),
            labels::deadline(lang, request.deadline.as_ref()),
        ]);
    }
    table.render()
}

/// The queue as a table.
pub fn render_queue(lang: Lang, items: &[QueueItem]) -> String {
    let mut table = Table::new(&[
        lang.pick("request id", "申请ID"),
        lang.pick("tracking", "受理编号"),
        lang.pick("site", "站点"),
        lang.pick("service", "服务"),
        lang.pick("applicant", "申请人"),
        lang.pick("state", "状态"),
        lang.pick("assignee", "经办人"),
        lang.pick("deadline", "期限"),
        lang.pick("sla", "督办"),
    ]);
    for item in items {
        let sla = item.deadline.as_ref().map_or(0, |d| d.sla_status);
        table.row(vec![
            item.request_id.clone(),
            item.tracking_code.clone(),
            item.site_id.clone(),
            item.service_name.clone(),
            if item.applicant_name_masked.is_empty() {
                "-".into()
            } else {
                item.applicant_name_masked.clone()
            },
            labels::state(lang, item.state),
            if item.assignee.is_empty() {
                "-".into()
            } else {
                item.assignee.clone()
            },
            labels::deadline(lang, item.deadline.as_ref()),
            labels::sla(lang, sla),
        ]);
    }
    table.render()
}

/// One request in full, for caseworkers.
pub fn render_detail(lang: Lang, detail: &RequestDetail) -> String {
    let applicant = detail
        .applicant
        .as_ref()
        .map(|a| a.name.clone())
        .unwrap_or_default();
    let mut pairs = vec![
        (
            lang.pick("request id", "申请ID").to_string(),
            detail.request_id.clone(),
        ),
        (
            lang.pick("tracking code", "受理编号").into(),
            detail.tracking_code.clone(),
        ),
        (
            lang.pick("service", "服务").into(),
            format!(
                "{} {} (v{})",
                detail.service_code, detail.service_name, detail.service_version
            ),
        ),
        (
            lang.pick("category", "类别").into(),
            detail.category.clone(),
        ),
        (lang.pick("site", "站点").into(), detail.site_id.clone()),
        (lang.pick("applicant", "申请人").into(), applicant),
        (
            lang.pick("state", "状态").into(),
            labels::state(lang, detail.state),
        ),
        (
            lang.pick("version", "版本").into(),
            detail.version.to_string(),
        ),
        (
            lang.pick("assignee", "经办人").into(),
            if detail.assignee.is_empty() {
                "-".into()
            } else {
                detail.assignee.clone()
            },
        ),
        (
            lang.pick("deadline", "期限").into(),
            labels::deadline(lang, detail.deadline.as_ref()),
        ),
        (
            lang.pick("approvals", "审批").into(),
            format!(
                "{}/{}",
                detail
                    .approvals
                    .iter()
                    .filter(|a| a.approved && a.level > 0)
                    .count(),
                detail.approval_levels_required
            ),
        ),
    ];
    if !detail.fulfilment_steps.is_empty() {
        let steps: Vec<String> = detail
            .fulfilment_steps
            .iter()
            .map(|s| format!("{}{}", if s.done { "✓" } else { "·" }, s.code))
            .collect();
        pairs.push((lang.pick("steps", "办理步骤").into(), steps.join(" ")));
    }
    for approval in detail.approvals.iter().filter(|a| !a.comment.is_empty()) {
        pairs.push((
            format!(
                "{} {}",
                lang.pick("opinion, level", "意见 级别"),
                approval.level
            ),
            approval.comment.clone(),
        ));
    }
    if !detail.decision_reason.is_empty() {
        pairs.push((
            lang.pick("reason", "理由").into(),
            detail.decision_reason.clone(),
        ));
    }
    if !detail.legal_basis.is_empty() {
        pairs.push((
            lang.pick("legal basis", "法律依据").into(),
            detail.legal_basis.clone(),
        ));
    }
    if !detail.materials.is_empty() {
        let mut materials: Vec<String> = detail
            .materials
            .iter()
            .map(|(code, a)| format!("{code} {}", a.file_name).trim().to_string())
            .collect();
        materials.sort();
        pairs.push((lang.pick("materials", "材料").into(), materials.join("; ")));
    }
    for note in &detail.notes {
        let label = if note.internal {
            lang.pick("note (internal)", "备注（内部）")
        } else {
            lang.pick("note (to resident)", "备注（告知申请人）")
        };
        pairs.push((label.into(), note.text.clone()));
    }
    if let Some(rating) = &detail.rating {
        pairs.push((
            lang.pick("rating", "评价").into(),
            format!(
                "{}; {} {}; {} {}",
                labels::grade(lang, rating.grade),
                lang.pick("remediation", "整改"),
                labels::remediation(lang, rating.remediation),
                lang.pick("appeal", "申诉"),
                labels::appeal(lang, rating.appeal)
            ),
        ));
    }
    let mut out = key_values(&pairs);
    out.push('\n');
    out.push_str(&crate::resident::timeline_table(lang, &detail.timeline));
    out
}
