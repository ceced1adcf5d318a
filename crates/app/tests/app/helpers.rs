//! Shared test setup: an application over a real log in a temporary directory, a
//! manual clock, the shipped catalogue, actors, valid submissions and log capture.

use anju_app::{AppConfig, Application, ManualClock, SubmitInput, Submitted};
use anju_domain::{
    Action, Actor, Category, Event, FieldKind, RequestId, Scope, ServiceCode, ServiceDefinition,
    SiteId, Timestamp,
};
use anju_eventlog::Direction;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const SITE: &str = "site-a";
pub const OTHER_SITE: &str = "site-b";
/// A valid mainland mobile number and a valid identity number (published sample).
pub const PHONE: &str = "13912345678";
pub const ID_NUMBER: &str = "11010519491231002X";

/// Monday 2 March 2026, 09:00 in Beijing: a working day.
pub fn start_time() -> Timestamp {
    Timestamp::cst(2026, 3, 2, 9, 0)
}

pub struct TestApp {
    pub app: Application,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
}

impl TestApp {
    pub async fn start() -> TestApp {
        init_logging();
        let dir = tempfile::tempdir().expect("temporary directory");
        let clock = Arc::new(ManualClock::new(start_time()));
        let app = Application::open(config(dir.path()), clock.clone())
            .await
            .expect("application opens");
        TestApp { app, clock, dir }
    }

    /// Closes and opens the application again on the same directory and clock.
    pub async fn reopen(self) -> TestApp {
        let TestApp { app, clock, dir } = self;
        app.close().await.expect("application closes");
        // The log's directory lock goes with the last handle.
        drop(app);
        let app = Application::open(config(dir.path()), clock.clone())
            .await
            .expect("application reopens");
        TestApp { app, clock, dir }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The events of a request's stream, decoded.
    pub async fn events(&self, request_id: RequestId) -> Vec<Event> {
        self.app
            .log()
            .read_stream(&request_id.stream_name(), 0, Direction::Forwards, 4096)
            .await
            .expect("stream reads")
            .into_iter()
            .map(|r| {
                Event::from_json(&r.event_type, r.schema_version, &r.payload)
                    .expect("event decodes")
            })
            .collect()
    }

    pub async fn count_events(&self, request_id: RequestId, event_type: &str) -> usize {
        self.events(request_id)
            .await
            .iter()
            .filter(|e| e.event_type() == event_type)
            .count()
    }

    /// Waits until the stream holds at least `count` events of `event_type`.
    pub async fn wait_for_event(&self, request_id: RequestId, event_type: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.count_events(request_id, event_type).await >= count {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{event_type} did not appear on {request_id}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn run(
        &self,
        request_id: RequestId,
        actor: &Actor,
        action: Action,
    ) -> anju_app::Executed {
        let name = action.name();
        self.app
            .execute(request_id, actor.clone(), action)
            .await
            .unwrap_or_else(|e| panic!("{name} by {} failed: {e}", actor.id))
    }

    pub async fn submit(&self, input: SubmitInput) -> Submitted {
        self.app.submit(input).await.expect("submission succeeds")
    }
}

pub fn config(dir: &Path) -> AppConfig {
    let mut config = AppConfig::new(dir);
    config.timer_interval = Duration::from_millis(50);
    config.log_options.segment_size = 1 << 20;
    config
}

pub fn resident() -> Actor {
    Actor::resident("resident-1")
}

pub fn caseworker(id: &str) -> Actor {
    Actor::caseworker(id, [SiteId::new(SITE)], Category::ALL)
}

pub fn supervisor(id: &str) -> Actor {
    Actor::supervisor(id, [SiteId::new(SITE)])
}

pub fn manager() -> Actor {
    Actor::manager("manager-1", Scope::only([SiteId::new(SITE)]))
}

pub fn admin() -> Actor {
    Actor::admin("admin-1")
}

/// A valid clear answer for every field of a definition.
pub fn valid_answers(definition: &ServiceDefinition) -> BTreeMap<String, Vec<String>> {
    let mut answers = BTreeMap::new();
    for field in &definition.fields {
        let value = match field.kind {
            FieldKind::Number => vec![field
                .min
                .unwrap_or(1.0)
                .max(1.0)
                .min(field.max.unwrap_or(f64::MAX))
                .to_string()],
            FieldKind::Date => vec!["2020-05-01".to_string()],
            FieldKind::SingleChoice | FieldKind::MultipleChoice => vec![field.options[0].clone()],
            FieldKind::String if field.name.contains("id_number") => vec![ID_NUMBER.to_string()],
            FieldKind::String => {
                let min = field.min_length.unwrap_or(1).max(1) as usize;
                vec!["安置区测试内容"
                    .chars()
                    .cycle()
                    .take(min.max(4).min(field.max_length.unwrap_or(64) as usize))
                    .collect()]
            }
        };
        answers.insert(field.name.clone(), value);
    }
    answers
}

/// A valid submission by `resident()` for the current version of `service_code`.
pub fn submission(app: &Application, service_code: &str, key: &str) -> SubmitInput {
    let code = ServiceCode::parse(service_code).expect("service code");
    let definition = app
        .catalogue()
        .get(&code)
        .expect("service in the shipped catalogue");
    SubmitInput {
        actor: resident(),
        idempotency_key: key.to_string(),
        site: SITE.to_string(),
        service_code: service_code.to_string(),
        definition_version: None,
        answers: valid_answers(definition),
        applicant_name: "王芳".to_string(),
        phone: PHONE.to_string(),
        id_number: Some(ID_NUMBER.to_string()),
        on_behalf_of: None,
        materials: Default::default(),
    }
}

/// Every byte of every file under `dir`.
pub fn all_file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                stack.push(entry.expect("dir entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.push((path, bytes));
        }
    }
    files
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every log line any test in this binary wrote.
pub fn captured_logs() -> Vec<u8> {
    LOGS.get()
        .map(|l| l.lock().expect("log buffer").clone())
        .unwrap_or_default()
}

static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    let buffer = LOGS
        .get_or_init(|| Arc::new(Mutex::new(Vec::new())))
        .clone();
    let writer = move || Capture(buffer.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,anju_app=trace"))
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
}
