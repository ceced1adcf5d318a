//! The `Application`: opening and closing everything, submission, commands, erasure.

use crate::clock::Clock;
use crate::error::AppError;
use crate::input::{parse_id_number, parse_idempotency_key, parse_phone, typed_answers};
use crate::keys::{KeyStore, KeyStoreError};
use crate::seal::{self, Contact};
use anju_domain::{
    decide, validate_form, Action, Actor, ActorId, Answer, Applicant, Calendar, Catalogue,
    Category, Command, Context, Event, FieldViolation, FormAnswers, Lookup, Materials, Problem,
    RequestId, RequestState, Role, Scope, ServiceCode, ServiceDefinition, SiteId, Status,
    Submission, TimerKind, Timestamp, TrackingCode, ValidatedForm,
};
use anju_eventlog::{
    AppendError, Direction, EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent,
};
use anju_projections::Projections;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server secret residents' ids are derived with; `Debug` never shows it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ResidentSecret(pub [u8; 32]);

impl std::fmt::Debug for ResidentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResidentSecret(hidden)")
    }
}

/// Where the application keeps its data and how it behaves.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The log goes in `data_dir/log`, the key store in `data_dir/keys`.
    pub data_dir: PathBuf,
    /// A catalogue file to load instead of the shipped one.
    pub catalogue_file: Option<PathBuf>,
    /// A calendar file to load instead of the shipped years (the years installed in
    /// `data_dir/calendar/` are added to it).
    pub calendar_file: Option<PathBuf>,
    pub log_options: LogOptions,
    /// How often the timer scheduler looks for due timers.
    pub timer_interval: Duration,
    /// The most timers fired per scheduler round.
    pub timer_batch: usize,
    /// The server secret residents' ids are derived with; `None` reads (or creates)
    /// `data_dir/keys/secret`.
    pub resident_secret: Option<ResidentSecret>,
    /// The longest a query waits for `min_position` when the caller gives no timeout.
    pub query_timeout: Duration,
    /// How often the read models write their snapshot (when something changed).
    pub snapshot_interval: Duration,
}

impl AppConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> AppConfig {
        AppConfig {
            data_dir: data_dir.into(),
            catalogue_file: None,
            calendar_file: None,
            log_options: LogOptions::default(),
            timer_interval: Duration::from_millis(500),
            timer_batch: 256,
            resident_secret: None,
            query_timeout: Duration::from_secs(5),
            snapshot_interval: anju_projections::SNAPSHOT_INTERVAL,
        }
    }
}

/// A new request as a caller hands it over, before any parsing.
#[derive(Clone, PartialEq)]
pub struct SubmitInput {
    pub actor: Actor,
    /// 8 to 128 printable characters, unique per submitting account.
    pub idempotency_key: String,
    pub site: String,
    pub service_code: String,
    /// A definition version to fill in against; `None` is the current one.
    pub definition_version: Option<u32>,
    /// Answers by field name; a multiple-choice field takes several values, the others one.
    pub answers: BTreeMap<String, Vec<String>>,
    pub applicant_name: String,
    /// 11-digit mainland mobile number.
    pub phone: String,
    /// 18-character PRC identity number.
    pub id_number: Option<String>,
    /// The resident kiosk staff submit for (帮办); required for kiosk actors.
    pub on_behalf_of: Option<String>,
    /// Documents handed over with the submission, by material code.
    pub materials: Materials,
}

impl std::fmt::Debug for SubmitInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitInput")
            .field("actor", &self.actor.id)
            .field("site", &self.site)
            .field("service_code", &self.service_code)
            .field("phone", &seal::mask(&self.phone))
            .field("id_number", &self.id_number.as_ref().map(|_| "(hidden)"))
            .finish_non_exhaustive()
    }
}

/// What `submit` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub request_id: RequestId,
    pub tracking_code: TrackingCode,
    /// Log position of the `RequestSubmitted` event; pass it as `min_position` to read it.
    pub position: u64,
    /// False when this answers a retry of an earlier submission with the same key.
    pub created: bool,
    pub submitted_at: Timestamp,
    /// When the request counts as accepted if nobody acts (5 working days).
    pub intake_deadline: Timestamp,
}

/// What [`Application::backup`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppBackup {
    /// The copied log holds the events at positions `0..position`.
    pub position: u64,
    /// Key store records copied.
    pub key_records: u32,
    /// Every file written, relative to the backup directory, `/`-separated.
    pub files: Vec<String>,
}

/// What `execute` answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// Log position of the last event written, or of the request's last event when the
    /// command changed nothing.
    pub position: u64,
    pub events: Vec<Event>,
    /// The request's status after the command.
    pub status: Status,
    /// The stream version of the request's last event after the command.
    pub version: u64,
}

/// What may come with a command besides its action.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// A retry with the same key, by the same caller on the same request, answers what
    /// the first call did instead of deciding again. 8 to 128 printable characters.
    pub idempotency_key: Option<String>,
    /// The resident look-up the caller found the request with; it lets the holder of
    /// the receipt act as the applicant.
    pub lookup: Option<Lookup>,
}

/// The caseworker a request is reassigned to, with the scope the caller's directory
/// gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignTarget {
    pub id: ActorId,
    pub role: Role,
    pub sites: Scope<SiteId>,
    pub categories: Scope<Category>,
}

/// What erasing a resident did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureReport {
    /// The resident's pseudonymous key id (hex), for the audit trail.
    pub resident_key_id: String,
    /// False when the resident had no key (never submitted, or already erased).
    pub key_erased: bool,
}

/// The parsed, validated parts of a submission.
struct ParsedSubmission<'a> {
    idempotency_key: String,
    site: SiteId,
    /// Borrowed from the catalogue: a definition is large and never changes.
    definition: &'a ServiceDefinition,
    form: ValidatedForm,
    display_name: String,
    resident_id: ActorId,
    on_behalf_of: Option<ActorId>,
    contact: Contact,
    materials: Materials,
}

/// The running application; clones share it.
#[derive(Clone)]
pub struct Application {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("data_dir", &self.inner.config.data_dir)
            .field("log_head", &self.inner.log.head_position())
            .field("projections_position", &self.inner.projections.position())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) log: EventLog,
    pub(crate) catalogue: Arc<Catalogue>,
    pub(crate) calendar: Arc<Calendar>,
    /// Held while a calendar year is installed: one at a time.
    pub(crate) calendar_install: std::sync::Mutex<()>,
    pub(crate) keys: KeyStore,
    pub(crate) projections: Projections,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: AppConfig,
    scheduler: Mutex<Option<crate::scheduler::SchedulerHandle>>,
}

fn unavailable_keys(error: KeyStoreError) -> AppError {
    AppError::unavailable(error)
}

fn append_error(error: AppendError) -> AppError {
    match error {
        AppendError::WrongExpectedVersion { .. } | AppendError::PartiallyDuplicate { .. } => {
            AppError::Conflict("the request changed while this command was decided".into())
        }
        AppendError::Invalid(message) => {
            AppError::Unavailable(format!("the log refused the append: {message}"))
        }
        AppendError::Closed => AppError::Unavailable("the event log is closed".into()),
        AppendError::Io(message) => {
            AppError::Unavailable(format!("the event log failed: {message}"))
        }
    }
}

impl Application {
    /// Opens the log, catalogue, calendar and key store, starts the projections and
    /// the timer scheduler (whose first round fires what fell due while stopped).
    pub async fn open(config: AppConfig, clock: Arc<dyn Clock>) -> Result<Application, AppError> {
        let catalogue = match &config.catalogue_file {
            None => Catalogue::shipped(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    AppError::Unavailable(format!("cannot read catalogue {}: {e}", path.display()))
                })?;
                Catalogue::from_toml_str(&text).map_err(|e| AppError::Unavailable(e.to_string()))?
            }
        };
        let calendar = crate::calendar::load(&config)?;
        let keys_dir = config.data_dir.join("keys");
        let secret = config.resident_secret.map(|s| s.0);
        let (keys, stats) = tokio::task::spawn_blocking(move || KeyStore::open(&keys_dir, secret))
            .await
            .map_err(|e| AppError::unavailable(format!("opening the key store panicked: {e}")))?
            .map_err(unavailable_keys)?;
        tracing::info!(
            live_keys = stats.live_keys,
            dead_records = stats.dead_records,
            "key store open"
        );
        let log =
            match EventLog::open(config.data_dir.join("log"), config.log_options.clone()).await {
                Ok(log) => log,
                Err(e) => {
                    keys.close();
                    return Err(e.into());
                }
            };
        let calendar = Arc::new(calendar);
        let projections = match Projections::start_with_snapshot_interval(
            log.clone(),
            calendar.clone(),
            config.snapshot_interval,
        )
        .await
        {
            Ok(projections) => projections,
            Err(e) => {
                keys.close();
                let _ = log.close().await;
                return Err(AppError::unavailable(format!(
                    "starting the projections failed: {e}"
                )));
            }
        };
        let application = Application {
            inner: Arc::new(Inner {
                log,
                catalogue: Arc::new(catalogue),
                calendar,
                calendar_install: std::sync::Mutex::new(()),
                keys,
                projections,
                clock,
                config,
                scheduler: Mutex::new(None),
            }),
        };
        let handle = crate::scheduler::start(application.clone());
        *application
            .inner
            .scheduler
            .lock()
            .expect("scheduler lock poisoned") = Some(handle);
        Ok(application)
    }

    /// Stops the scheduler, the projections, the key store and the log, flushing each.
    pub async fn close(&self) -> Result<(), AppError> {
        let handle = self
            .inner
            .scheduler
            .lock()
            .expect("scheduler lock poisoned")
            .take();
        if let Some(handle) = handle {
            handle.stop().await;
        }
        self.inner.projections.clone().stop().await;
        self.inner.keys.close();
        self.inner.log.clone().close().await.map_err(AppError::from)
    }

    /// Whether each store's writes succeed: the event log (`log`) and the key store
    /// (`keys`). A failed write is retried by the next one; see docs/operations.md.
    pub fn write_health(&self) -> [(&'static str, Arc<anju_eventlog::WriteHealth>); 2] {
        [
            ("log", self.inner.log.write_health()),
            ("keys", self.inner.keys.write_health()),
        ]
    }

    /// Why writes fail now (the first failing store's last error), `None` while both
    /// succeed.
    pub fn write_failure(&self) -> Option<String> {
        self.write_health()
            .iter()
            .find_map(|(store, health)| health.failure().map(|f| format!("{store}: {f}")))
    }

    /// Copies what a restore needs into the new directory `to`, laid out as a data
    /// directory: the log's segments up to the head when the copy starts (position P),
    /// then the key store's synced records and its secret, and the demo clock file if
    /// there is one. The keys are copied after P is fixed, and a key is synced before any
    /// event sealed with it is appended, so the copy holds every key the events below P
    /// need. Read models and checkpoints are not copied: a restored server rebuilds them
    /// from the log (ADR 009). Appends and key writes go on meanwhile.
    pub async fn backup(&self, to: &std::path::Path) -> Result<AppBackup, AppError> {
        let log = self
            .inner
            .log
            .backup(to.join("log"))
            .await
            .map_err(|e| AppError::unavailable(format!("backing up the event log: {e}")))?;
        let keys = self
            .inner
            .keys
            .backup(&to.join("keys"))
            .await
            .map_err(|e| AppError::unavailable(format!("backing up the key store: {e}")))?;
        let mut files: Vec<String> = log.files.iter().map(|f| format!("log/{f}")).collect();
        files.extend(keys.files.iter().map(|f| format!("keys/{f}")));
        let demo = self.inner.config.data_dir.join(crate::DEMO_CLOCK_FILE);
        if demo.exists() {
            std::fs::copy(&demo, to.join(crate::DEMO_CLOCK_FILE))
                .map_err(|e| AppError::unavailable(format!("copying {}: {e}", demo.display())))?;
            files.push(crate::DEMO_CLOCK_FILE.to_string());
        }
        files.extend(crate::calendar::backup(&self.inner.config.data_dir, to)?);
        Ok(AppBackup {
            position: log.position,
            key_records: keys.records,
            files,
        })
    }

    /// The event log (for tests, admin tools and the relay).
    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.inner.catalogue
    }

    pub fn calendar(&self) -> &Calendar {
        &self.inner.calendar
    }

    pub fn projections(&self) -> &Projections {
        &self.inner.projections
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn context(&self) -> Context<'_> {
        Context {
            catalogue: &self.inner.catalogue,
            calendar: &self.inner.calendar,
        }
    }

    /// The request id a submission gets: a UUID v8 over (submitting account, idempotency
    /// key), so a retry lands on the same stream.
    pub fn request_id_for(actor: &ActorId, idempotency_key: &str) -> RequestId {
        let mut hash = Sha256::new();
        hash.update(b"anju request id v1\0");
        hash.update((actor.0.len() as u64).to_be_bytes());
        hash.update(actor.0.as_bytes());
        hash.update(idempotency_key.as_bytes());
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        RequestId(uuid::Uuid::new_v8(bytes))
    }

    /// Submits a new request; see the module docs for idempotency.
    pub async fn submit(&self, input: SubmitInput) -> Result<Submitted, AppError> {
        let actor = input.actor.clone();
        if !matches!(actor.role, Role::Resident | Role::Kiosk) {
            return Err(AppError::Forbidden(format!(
                "a {} cannot submit requests",
                actor.role
            )));
        }
        let parsed = self.parse_submission(&input)?;
        let now = self.inner.clock.now();
        let request_id = Self::request_id_for(&actor.id, &parsed.idempotency_key);
        let stream = request_id.stream_name();
        // Everything the domain checks is checked before anything is written, the key
        // store included: a dry run with placeholder seals.
        let placeholder = self.submission(
            &parsed,
            TrackingCode::from_random_bytes([0; 8]),
            "pending".into(),
            parsed.form.clone().seal_sensitive(|_, _| "pending".into()),
        );
        decide(
            &RequestState::default(),
            &Command::new(actor.clone(), now, request_id, Action::Submit(placeholder)),
            &self.context(),
        )?;
        if self.inner.log.stream_version(&stream).is_some() {
            return self.replay(request_id, &actor, &parsed).await;
        }
        let resident = self.inner.keys.resident_id(&parsed.contact.phone);
        let key = self
            .inner
            .keys
            .ensure(resident)
            .await
            .map_err(unavailable_keys)?;
        let contact_json = serde_json::to_vec(&parsed.contact).map_err(AppError::unavailable)?;
        let sealed_contact = seal::seal(
            resident,
            &key,
            &seal::context(request_id, "contact"),
            &contact_json,
        )
        .map_err(AppError::Unavailable)?;
        let mut seal_error = None;
        let answers = parsed.form.clone().seal_sensitive(|field, answer| {
            let clear = serde_json::to_vec(answer).unwrap_or_default();
            seal::seal(
                resident,
                &key,
                &seal::context(request_id, &format!("answers.{field}")),
                &clear,
            )
            .unwrap_or_else(|e| {
                seal_error = Some(e);
                String::new()
            })
        });
        if let Some(e) = seal_error {
            return Err(AppError::Unavailable(e));
        }
        let tracking_code = self.new_tracking_code()?;
        let submission = self.submission(&parsed, tracking_code.clone(), sealed_contact, answers);
        let command = Command::new(actor.clone(), now, request_id, Action::Submit(submission));
        let events = decide(&RequestState::default(), &command, &self.context())?;
        let new_events = new_events(request_id, 0, &actor, &events);
        match self
            .inner
            .log
            .append(&stream, ExpectedVersion::NoStream, new_events)
            .await
        {
            Ok(result) => {
                tracing::info!(%request_id, service = %parsed.definition.code, site = %parsed.site, "request submitted");
                Ok(Submitted {
                    request_id,
                    tracking_code,
                    position: result.last_position,
                    created: true,
                    submitted_at: now,
                    intake_deadline: submitted_intake_deadline(&events).unwrap_or(now),
                })
            }
            Err(AppendError::WrongExpectedVersion { .. }) => {
                self.replay(request_id, &actor, &parsed).await
            }
            Err(e) => Err(append_error(e)),
        }
    }

    /// A fresh tracking code from OS randomness. A code already in the read models is
    /// drawn again (best effort: 60 random bits make a clash very unlikely anyway).
    fn new_tracking_code(&self) -> Result<TrackingCode, AppError> {
        let mut code = None;
        for _ in 0..3 {
            let mut random = [0u8; 8];
            getrandom::fill(&mut random).map_err(|e| {
                AppError::unavailable(format!("operating system randomness failed: {e}"))
            })?;
            let candidate = TrackingCode::from_random_bytes(random);
            let taken = self
                .inner
                .projections
                .request_id_by_tracking(&candidate)
                .is_ok_and(|found| found.is_some());
            code = Some(candidate);
            if !taken {
                break;
            }
        }
        Ok(code.expect("the loop runs at least once"))
    }

    fn submission(
        &self,
        parsed: &ParsedSubmission<'_>,
        tracking_code: TrackingCode,
        sealed_contact: String,
        answers: FormAnswers,
    ) -> Submission {
        let phone = &parsed.contact.phone;
        // The applicant's number and the form's `id_number` answer (the person the
        // request is for, who may be someone else), as keyed digests.
        let form_id_number = match parsed.form.answers().get("id_number") {
            Some(Answer::Text(text)) => parse_id_number("id_number", text).ok(),
            _ => None,
        };
        let mut id_number_digests: Vec<String> = parsed
            .contact
            .id_number
            .iter()
            .chain(form_id_number.iter())
            .map(|id| crate::identity::id_number_digest(&self.inner.keys, id))
            .collect();
        id_number_digests.sort();
        id_number_digests.dedup();
        Submission {
            tracking_code,
            site: parsed.site.clone(),
            service_code: parsed.definition.code.clone(),
            definition_version: parsed.definition.version,
            answers,
            applicant: Applicant {
                resident_id: parsed.resident_id.clone(),
                display_name: parsed.display_name.clone(),
                phone_last4: phone[phone.len() - 4..].to_string(),
                sealed_contact,
                id_number_digests,
            },
            on_behalf_of: parsed.on_behalf_of.clone(),
            materials: parsed.materials.clone(),
        }
    }

    /// Parses every field and collects every problem before failing.
    fn parse_submission(&self, input: &SubmitInput) -> Result<ParsedSubmission<'_>, AppError> {
        let mut violations: Vec<FieldViolation> = Vec::new();
        let mut push = |result: Result<(), FieldViolation>| {
            if let Err(v) = result {
                violations.push(v);
            }
        };
        let mut idempotency_key = String::new();
        push(parse_idempotency_key(&input.idempotency_key).map(|k| idempotency_key = k));
        let site = input.site.trim();
        if site.is_empty() {
            push(Err(FieldViolation::new("site", Problem::Missing)));
        } else if site.chars().count() > 64 || site.chars().any(char::is_control) {
            push(Err(FieldViolation::new(
                "site",
                Problem::Other {
                    message: "must be at most 64 printable characters".into(),
                },
            )));
        }
        let mut phone = String::new();
        push(parse_phone("applicant.phone", &input.phone).map(|p| phone = p));
        let mut id_number = None;
        if let Some(text) = input.id_number.as_deref().filter(|t| !t.trim().is_empty()) {
            push(parse_id_number("applicant.id_number", text).map(|id| id_number = Some(id)));
        }
        let display_name = input.applicant_name.trim().to_string();
        let name_length = display_name.chars().count();
        if name_length == 0 {
            push(Err(FieldViolation::new(
                "applicant.display_name",
                Problem::Missing,
            )));
        } else if name_length > 40 {
            push(Err(FieldViolation::new(
                "applicant.display_name",
                Problem::TooLong {
                    max_length: 40,
                    length: name_length as u32,
                },
            )));
        } else if let Some(c) = anju_domain::refused_char(&display_name, anju_domain::Lines::One) {
            push(Err(FieldViolation::new(
                "applicant.display_name",
                Problem::Unprintable {
                    character: anju_domain::text::code_point(c),
                },
            )));
        }
        let on_behalf_of = input
            .on_behalf_of
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ActorId::new);
        let resident_id = match input.actor.role {
            Role::Kiosk => match &on_behalf_of {
                Some(resident) => resident.clone(),
                None => {
                    push(Err(FieldViolation::new(
                        "on_behalf_of",
                        Problem::Other {
                            message: "kiosk submissions must name the resident they are made for"
                                .into(),
                        },
                    )));
                    ActorId::new("")
                }
            },
            _ => {
                if on_behalf_of.is_some() {
                    push(Err(FieldViolation::new(
                        "on_behalf_of",
                        Problem::Other {
                            message: "only kiosk staff submit on a resident's behalf".into(),
                        },
                    )));
                }
                input.actor.id.clone()
            }
        };
        let definition = match ServiceCode::parse(input.service_code.trim()) {
            Err(e) => {
                push(Err(FieldViolation::new(
                    "service_code",
                    Problem::Other {
                        message: e.to_string(),
                    },
                )));
                None
            }
            Ok(code) => {
                let found = match input.definition_version {
                    Some(version) => self.inner.catalogue.get_version(&code, version),
                    None => self.inner.catalogue.get(&code),
                };
                if found.is_none() {
                    let message = match input.definition_version {
                        Some(version) if self.inner.catalogue.get(&code).is_some() => {
                            format!("service {code} has no version {version}")
                        }
                        _ => format!("no service {code} in the catalogue"),
                    };
                    push(Err(FieldViolation::new(
                        "service_code",
                        Problem::Other { message },
                    )));
                }
                found
            }
        };
        let form = definition.and_then(|definition| {
            let answers = match typed_answers(definition, &input.answers) {
                Ok(answers) => answers,
                Err(mut problems) => {
                    violations.append(&mut problems);
                    return None;
                }
            };
            match validate_form(definition, &answers) {
                Ok(form) => {
                    // Identity numbers in forms get the same checksum check as the applicant's.
                    for (name, answer) in form.answers() {
                        if let (true, Answer::Text(text)) = (name == "id_number", answer) {
                            if let Err(v) = parse_id_number(name, text) {
                                violations.push(v);
                            }
                        }
                    }
                    Some(form)
                }
                Err(mut problems) => {
                    violations.append(&mut problems);
                    None
                }
            }
        });
        match (violations.is_empty(), definition, form) {
            (true, Some(definition), Some(form)) => Ok(ParsedSubmission {
                idempotency_key,
                site: SiteId::new(site),
                definition,
                form,
                display_name,
                resident_id,
                on_behalf_of,
                contact: Contact { phone, id_number },
                materials: input.materials.clone(),
            }),
            _ => Err(AppError::Invalid(violations)),
        }
    }

    /// Answers a retried submission with the original request, or refuses it when the
    /// key was used for different content.
    async fn replay(
        &self,
        request_id: RequestId,
        actor: &Actor,
        parsed: &ParsedSubmission<'_>,
    ) -> Result<Submitted, AppError> {
        let stream = request_id.stream_name();
        let events = self
            .inner
            .log
            .read_stream(&stream, 0, Direction::Forwards, 1)
            .await?;
        let recorded = events
            .first()
            .ok_or_else(|| AppError::unavailable("the request stream is empty"))?;
        let event = Event::from_json(
            &recorded.event_type,
            recorded.schema_version,
            &recorded.payload,
        )
        .map_err(|e| AppError::unavailable(format!("cannot read {stream}: {e}")))?;
        let Event::RequestSubmitted {
            tracking_code,
            site,
            service_code,
            terms,
            answers,
            applicant,
            submitted_by,
            on_behalf_of,
            at,
            intake_deadline,
            materials,
            ..
        } = event
        else {
            return Err(AppError::IdempotencyMismatch);
        };
        let keys = &self.inner.keys;
        let contact = seal::unseal(
            keys,
            &seal::context(request_id, "contact"),
            &applicant.sealed_contact,
        )
        .and_then(|clear| serde_json::from_slice::<Contact>(&clear).ok());
        let same_answers = answers.len() == parsed.form.answers().len()
            && answers.iter().all(|(name, stored)| {
                let Some(given) = parsed.form.answers().get(name) else {
                    return false;
                };
                match stored {
                    Answer::Sealed { sealed } => seal::unseal(
                        keys,
                        &seal::context(request_id, &format!("answers.{name}")),
                        sealed,
                    )
                    .and_then(|clear| serde_json::from_slice::<Answer>(&clear).ok())
                    .is_some_and(|clear| clear == *given),
                    clear => clear == given,
                }
            });
        let same = submitted_by == actor.id
            && site == parsed.site
            && service_code == parsed.definition.code
            && terms.version == parsed.definition.version
            && applicant.display_name == parsed.display_name
            && applicant.resident_id == parsed.resident_id
            && on_behalf_of == parsed.on_behalf_of
            && contact.as_ref() == Some(&parsed.contact)
            && materials == parsed.materials
            && same_answers;
        if !same {
            return Err(AppError::IdempotencyMismatch);
        }
        Ok(Submitted {
            request_id,
            tracking_code,
            position: recorded.position,
            created: false,
            submitted_at: at,
            intake_deadline,
        })
    }

    /// Reads and folds a request's stream: its state, the version of its last event and
    /// that event's log position.
    pub(crate) async fn load(
        &self,
        request_id: RequestId,
    ) -> Result<(RequestState, Option<(u64, u64)>), AppError> {
        let (state, last, _) = self.load_keyed(request_id, None).await?;
        Ok((state, last))
    }

    /// [`Application::load`], and what an earlier command with this key wrote (its
    /// events carry the key as their causation id), as that command answered it.
    async fn load_keyed(
        &self,
        request_id: RequestId,
        command_key: Option<uuid::Uuid>,
    ) -> Result<(RequestState, Option<(u64, u64)>, Option<Executed>), AppError> {
        let stream = request_id.stream_name();
        let mut state = RequestState::default();
        let mut last = None;
        let mut earlier: Option<Executed> = None;
        let mut from = 0;
        loop {
            let batch = self
                .inner
                .log
                .read_stream(&stream, from, Direction::Forwards, 1024)
                .await?;
            let count = batch.len();
            for recorded in batch {
                let event = Event::from_json(
                    &recorded.event_type,
                    recorded.schema_version,
                    &recorded.payload,
                )
                .map_err(|e| {
                    AppError::unavailable(format!(
                        "cannot read {stream}@{}: {e}",
                        recorded.stream_version
                    ))
                })?;
                state = anju_domain::evolve(state, &event);
                last = Some((recorded.stream_version, recorded.position));
                from = recorded.stream_version + 1;
                let keyed = command_key.is_some() && recorded.metadata.causation_id == command_key;
                if keyed {
                    // One command's events are appended together, so they are adjacent.
                    let answer = earlier.get_or_insert_with(|| Executed {
                        position: recorded.position,
                        events: Vec::new(),
                        status: anju_domain::Status::Submitted,
                        version: recorded.stream_version,
                    });
                    answer.position = recorded.position;
                    answer.version = recorded.stream_version;
                    answer.events.push(event);
                    if let Some(status) = state.status() {
                        answer.status = status;
                    }
                }
            }
            if count < 1024 {
                return Ok((state, last, earlier));
            }
        }
    }

    /// Runs any command but `Submit` and `Reassign` (use [`Application::submit`] and
    /// [`Application::reassign`]). On a version conflict the request is re-read and the
    /// command decided once more; if it is then refused, that refusal is the answer.
    pub async fn execute(
        &self,
        request_id: RequestId,
        actor: Actor,
        action: Action,
    ) -> Result<Executed, AppError> {
        match action {
            Action::Submit(_) => Err(AppError::invalid("action", "use submit for new requests")),
            Action::Reassign { .. } => Err(AppError::invalid(
                "action",
                "use reassign, which checks the new assignee",
            )),
            action => self.run(request_id, actor, action, None, None).await,
        }
    }

    /// [`Application::execute`] with an idempotency key and the resident look-up.
    pub async fn execute_with(
        &self,
        request_id: RequestId,
        actor: Actor,
        action: Action,
        options: CommandOptions,
    ) -> Result<Executed, AppError> {
        let command_key = match &options.idempotency_key {
            None => None,
            Some(key) => {
                let key = parse_idempotency_key(key).map_err(|v| AppError::Invalid(vec![v]))?;
                Some(command_key(&actor.id, request_id, &key))
            }
        };
        match action {
            Action::Submit(_) | Action::Reassign { .. } => {
                self.execute(request_id, actor, action).await
            }
            action => {
                let command = Command::new(actor, self.inner.clock.now(), request_id, action)
                    .with_lookup(options.lookup);
                self.run_command(command, None, command_key).await
            }
        }
    }

    /// What an earlier command with this idempotency key answered, if one was written.
    pub async fn earlier_answer(
        &self,
        request_id: RequestId,
        actor: &Actor,
        idempotency_key: &str,
    ) -> Result<Option<Executed>, AppError> {
        let key = parse_idempotency_key(idempotency_key).map_err(|v| AppError::Invalid(vec![v]))?;
        let command_key = command_key(&actor.id, request_id, &key);
        Ok(self.load_keyed(request_id, Some(command_key)).await?.2)
    }

    /// Reassigns a request to a caseworker, who must serve its site and category.
    pub async fn reassign(
        &self,
        request_id: RequestId,
        actor: Actor,
        target: ReassignTarget,
    ) -> Result<Executed, AppError> {
        let action = Action::Reassign {
            to: target.id.clone(),
        };
        self.run(request_id, actor, action, Some(target), None)
            .await
    }

    /// Fires one timer as the scheduler; no events when it is not due or already fired.
    pub async fn fire_timer(
        &self,
        request_id: RequestId,
        kind: TimerKind,
        due_at: Timestamp,
    ) -> Result<Executed, AppError> {
        let executed = self
            .run(
                request_id,
                Actor::system(),
                Action::FireTimer { kind, due_at },
                None,
                None,
            )
            .await?;
        if !executed.events.is_empty() {
            tracing::info!(%request_id, kind = kind.as_str(), "timer fired");
        }
        Ok(executed)
    }

    async fn run(
        &self,
        request_id: RequestId,
        actor: Actor,
        action: Action,
        target: Option<ReassignTarget>,
        command_key: Option<uuid::Uuid>,
    ) -> Result<Executed, AppError> {
        let now = self.inner.clock.now();
        let command = Command::new(actor, now, request_id, action);
        self.run_command(command, target, command_key).await
    }

    async fn run_command(
        &self,
        command: Command,
        target: Option<ReassignTarget>,
        command_key: Option<uuid::Uuid>,
    ) -> Result<Executed, AppError> {
        let request_id = command.request_id;
        let stream = request_id.stream_name();
        for attempt in 0..2 {
            let (state, last, earlier) = self.load_keyed(request_id, command_key).await?;
            if let Some(earlier) = earlier {
                return Ok(earlier);
            }
            let Some(request) = state.request() else {
                return Err(AppError::NotFound);
            };
            let (version, position) = last.expect("an existing request has events");
            if let Some(target) = &target {
                anju_domain::authorize(&state, &command)?;
                let fits = target.role == Role::Caseworker
                    && target.sites.contains(&request.site)
                    && target.categories.contains(&request.category);
                if !fits {
                    return Err(AppError::Invalid(vec![FieldViolation::new(
                        "to",
                        Problem::Other {
                            message: format!(
                                "{} is not a caseworker for {} requests at site {}",
                                target.id, request.category, request.site
                            ),
                        },
                    )]));
                }
            }
            let events = decide(&state, &command, &self.context())?;
            if events.is_empty() {
                return Ok(Executed {
                    position,
                    status: request.status,
                    version,
                    events,
                });
            }
            let mut new = new_events(request_id, version + 1, &command.actor, &events);
            for event in &mut new {
                event.metadata.causation_id = command_key;
            }
            match self
                .inner
                .log
                .append(&stream, ExpectedVersion::Exact(version), new)
                .await
            {
                Ok(result) => {
                    let after = events.iter().fold(state.clone(), anju_domain::evolve);
                    return Ok(Executed {
                        position: result.last_position,
                        status: after.status().unwrap_or(request.status),
                        version: result.stream_version,
                        events,
                    });
                }
                Err(AppendError::WrongExpectedVersion { .. }) if attempt == 0 => continue,
                Err(e) => return Err(append_error(e)),
            }
        }
        Err(AppError::Conflict(
            "the request kept changing while this command was decided; try again".into(),
        ))
    }

    /// Erases a resident (admin only): their key is tombstoned, so every contact and
    /// sensitive answer sealed with it becomes unreadable; the log is left as it is.
    pub async fn erase_resident(
        &self,
        actor: &Actor,
        phone: &str,
    ) -> Result<ErasureReport, AppError> {
        if actor.role != Role::Admin {
            return Err(AppError::Forbidden(format!(
                "a {} cannot erase residents",
                actor.role
            )));
        }
        let phone = parse_phone("phone", phone).map_err(|v| AppError::Invalid(vec![v]))?;
        let resident = self.inner.keys.resident_id(&phone);
        let key_erased = self
            .inner
            .keys
            .erase(resident)
            .await
            .map_err(unavailable_keys)?;
        tracing::info!(resident = %resident.to_hex(), key_erased, by = %actor.id, "resident erased");
        Ok(ErasureReport {
            resident_key_id: resident.to_hex(),
            key_erased,
        })
    }

    /// Clears the read models and replays the log into them (admin); queries see partial
    /// data until it returns.
    pub async fn rebuild_projections(&self) -> Result<(), AppError> {
        self.inner
            .projections
            .rebuild()
            .await
            .map_err(|e| AppError::unavailable(format!("rebuilding the read models failed: {e}")))
    }

    /// Rewrites the key store without erased keys (also done on open when worthwhile).
    pub async fn compact_keys(&self) -> Result<crate::keys::KeyStoreStats, AppError> {
        self.inner.keys.compact().await.map_err(unavailable_keys)
    }

    /// The applicant's contact details in clear, for staff who may handle the request
    /// (admin; supervisor of its site; caseworker of its site and category). `None`
    /// when the resident was erased. Each unsealing is logged without the data.
    pub async fn unseal_contact(
        &self,
        actor: &Actor,
        request_id: RequestId,
    ) -> Result<Option<Contact>, AppError> {
        let request = self.staff_request(actor, request_id).await?;
        let contact = seal::unseal(
            &self.inner.keys,
            &seal::context(request_id, "contact"),
            &request.applicant.sealed_contact,
        )
        .and_then(|clear| serde_json::from_slice::<Contact>(&clear).ok());
        tracing::info!(%request_id, by = %actor.id, readable = contact.is_some(), "contact unsealed");
        Ok(contact)
    }

    /// The sensitive answers of a request in clear, under the same rules as
    /// [`Application::unseal_contact`]; an erased resident's answers are left out.
    pub async fn unseal_answers(
        &self,
        actor: &Actor,
        request_id: RequestId,
    ) -> Result<FormAnswers, AppError> {
        let request = self.staff_request(actor, request_id).await?;
        let mut clear = FormAnswers::new();
        for (name, answer) in &request.answers {
            if let Answer::Sealed { sealed } = answer {
                let opened = seal::unseal(
                    &self.inner.keys,
                    &seal::context(request_id, &format!("answers.{name}")),
                    sealed,
                )
                .and_then(|bytes| serde_json::from_slice::<Answer>(&bytes).ok());
                if let Some(opened) = opened {
                    clear.insert(name.clone(), opened);
                }
            }
        }
        tracing::info!(%request_id, by = %actor.id, "sensitive answers unsealed");
        Ok(clear)
    }

    /// The request, if this staff member may see its personal data; NotFound otherwise.
    async fn staff_request(
        &self,
        actor: &Actor,
        request_id: RequestId,
    ) -> Result<anju_domain::state::Request, AppError> {
        let (state, _) = self.load(request_id).await?;
        let request = state.request().ok_or(AppError::NotFound)?;
        let allowed = match actor.role {
            Role::Admin => true,
            Role::Supervisor => actor.sites.contains(&request.site),
            Role::Caseworker => {
                actor.sites.contains(&request.site) && actor.categories.contains(&request.category)
            }
            _ => false,
        };
        if !allowed {
            return Err(AppError::Forbidden(format!(
                "a {} may not read contact details of this request",
                actor.role
            )));
        }
        Ok(request.clone())
    }

    /// The resident key id of a sealed value, for tests and audits.
    pub fn sealed_key_id(sealed: &str) -> Option<String> {
        seal::sealed_key_id(sealed).map(|id| id.to_hex())
    }
}

/// The causation id a keyed command's events carry: the key, scoped to the caller and
/// the request, so two callers' keys never collide.
fn command_key(actor: &ActorId, request_id: RequestId, key: &str) -> uuid::Uuid {
    let mut hash = Sha256::new();
    hash.update(b"anju command key v1\0");
    hash.update(request_id.0.as_bytes());
    hash.update((actor.0.len() as u64).to_be_bytes());
    hash.update(actor.0.as_bytes());
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes)
}

fn submitted_intake_deadline(events: &[Event]) -> Option<Timestamp> {
    events.iter().find_map(|event| match event {
        Event::RequestSubmitted {
            intake_deadline, ..
        } => Some(*intake_deadline),
        _ => None,
    })
}

/// Turns decided events into log events. Event ids are UUID v7 with the command's time
/// and bytes hashed from (request, stream version, actor, payload): a retried append of
/// the same decision carries the same ids, so the log's dedupe answers it, while two
/// different decisions at the same instant (two caseworkers claiming) never share an id.
fn new_events(
    request_id: RequestId,
    first_version: u64,
    actor: &Actor,
    events: &[Event],
) -> Vec<NewEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let payload = event.to_json();
            let version = first_version + i as u64;
            let mut hash = Sha256::new();
            hash.update(b"anju event id v1\0");
            hash.update(request_id.0.as_bytes());
            hash.update(version.to_be_bytes());
            hash.update((actor.id.0.len() as u64).to_be_bytes());
            hash.update(actor.id.0.as_bytes());
            hash.update(&payload);
            let digest = hash.finalize();
            let mut random = [0u8; 10];
            random.copy_from_slice(&digest[..10]);
            let millis = u64::try_from(event.at().0).unwrap_or(0);
            NewEvent {
                event_id: uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid(),
                event_type: event.event_type().to_string(),
                schema_version: event.schema_version(),
                metadata: Metadata {
                    correlation_id: Some(request_id.0),
                    causation_id: None,
                    actor: actor.id.0.clone(),
                },
                payload,
            }
        })
        .collect()
}
