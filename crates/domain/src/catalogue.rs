//! The service catalogue: versioned service definitions loaded from data, and the
//! validation of a resident's form answers against a definition.

use crate::ids::{Category, ServiceCode};
use crate::time::CivilDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

const SHIPPED: &str = include_str!("../data/catalogue.toml");

/// The type of a form field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    String,
    Number,
    /// `YYYY-MM-DD`
    Date,
    SingleChoice,
    MultipleChoice,
}

impl FieldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::String => "string",
            FieldKind::Number => "number",
            FieldKind::Date => "date",
            FieldKind::SingleChoice => "single_choice",
            FieldKind::MultipleChoice => "multiple_choice",
        }
    }
}

/// One typed field of a service's form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDefinition {
    /// ASCII snake_case key of the answer.
    pub name: String,
    pub label_zh: String,
    pub label_en: String,
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    /// Identity numbers, health, disability and child data: the server seals the
    /// answer (see [`ValidatedForm::seal_sensitive`]) so it never reaches an event in clear.
    #[serde(default)]
    pub sensitive: bool,
    /// Length limits in characters, for strings.
    #[serde(default)]
    pub min_length: Option<u32>,
    #[serde(default)]
    pub max_length: Option<u32>,
    /// Inclusive range, for numbers.
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
    /// Allowed values, for single and multiple choice.
    #[serde(default)]
    pub options: Vec<String>,
}

/// One step of fulfilment, completed by a caseworker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulfilmentStep {
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
}

/// One version of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDefinition {
    pub code: ServiceCode,
    pub version: u32,
    pub category: Category,
    pub name_zh: String,
    pub name_en: String,
    pub description_zh: String,
    pub description_en: String,
    /// 0, 1 or 2 sign-offs after review.
    pub approval_levels: u8,
    /// The promised limit (承诺时限), in working days from acceptance.
    pub promised_days: u32,
    /// The statutory limit (法定时限), in working days from acceptance.
    pub statutory_days: u32,
    #[serde(default, rename = "field")]
    pub fields: Vec<FieldDefinition>,
    #[serde(default, rename = "step")]
    pub steps: Vec<FulfilmentStep>,
    /// What a resident brings or uploads (申报材料), shown before they start.
    #[serde(default, rename = "material")]
    pub materials: Vec<MaterialDefinition>,
    /// Site ids that offer the service; `["*"]` (the default) is every site.
    #[serde(default = "every_site")]
    pub sites: Vec<String>,
}

fn every_site() -> Vec<String> {
    vec!["*".to_string()]
}

/// One material a service asks for (申报材料).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialDefinition {
    /// ASCII key, e.g. `hukou`; caseworkers name it when asking for it again.
    pub code: String,
    pub name_zh: String,
    pub name_en: String,
    /// What exactly is wanted, for the resident.
    pub description_zh: String,
    #[serde(default = "required_by_default")]
    pub required: bool,
}

fn required_by_default() -> bool {
    true
}

impl ServiceDefinition {
    /// Whether the service is offered at `site` (`"*"` in `sites` is every site).
    pub fn offered_at(&self, site: &str) -> bool {
        self.sites.iter().any(|s| s == "*" || s == site)
    }

    pub fn field(&self, name: &str) -> Option<&FieldDefinition> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The terms a request keeps for its whole life, whatever later versions say.
    pub fn terms(&self) -> ServiceTerms {
        ServiceTerms {
            version: self.version,
            approval_levels: self.approval_levels,
            promised_days: self.promised_days,
            statutory_days: self.statutory_days,
            steps: self.steps.iter().map(|s| s.code.clone()).collect(),
        }
    }
}

/// What a request copies from its service definition when it is submitted, so later
/// catalogue changes do not change an open request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTerms {
    pub version: u32,
    pub approval_levels: u8,
    pub promised_days: u32,
    pub statutory_days: u32,
    pub steps: Vec<String>,
}

/// Why a catalogue file was rejected; names the service and field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    #[error("catalogue file is not valid toml: {0}")]
    Toml(String),
    #[error("catalogue service {service} v{version}: {problem}")]
    Service {
        service: String,
        version: u32,
        problem: String,
    },
    #[error("catalogue service {service} v{version} field {field}: {problem}")]
    Field {
        service: String,
        version: u32,
        field: String,
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    #[serde(rename = "service")]
    services: Vec<ServiceDefinition>,
}

/// All service definitions, every version of each.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    /// Versions of each service, oldest first.
    services: BTreeMap<ServiceCode, Vec<ServiceDefinition>>,
}

impl Catalogue {
    /// The catalogue shipped with anju (`crates/domain/data/catalogue.toml`, embedded).
    pub fn shipped() -> Catalogue {
        // A test loads the embedded file, so a build that passed cannot fail here.
        Catalogue::from_toml_str(SHIPPED).unwrap_or_else(|_| Catalogue {
            services: BTreeMap::new(),
        })
    }

    /// Loads and validates a catalogue file in the shipped format.
    pub fn from_toml_str(text: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile =
            toml::from_str(text).map_err(|e| CatalogueError::Toml(e.to_string()))?;
        let mut services: BTreeMap<ServiceCode, Vec<ServiceDefinition>> = BTreeMap::new();
        for definition in file.services {
            let code = validate_definition(&definition)?;
            let versions = services.entry(code).or_default();
            if versions.iter().any(|d| d.version == definition.version) {
                return Err(CatalogueError::Service {
                    service: definition.code.to_string(),
                    version: definition.version,
                    problem: "version is defined twice".to_string(),
                });
            }
            versions.push(definition);
        }
        for versions in services.values_mut() {
            versions.sort_by_key(|d| d.version);
            let category = versions[0].category;
            if let Some(other) = versions.iter().find(|d| d.category != category) {
                return Err(CatalogueError::Service {
                    service: other.code.to_string(),
                    version: other.version,
                    problem: "a service cannot change category between versions".to_string(),
                });
            }
        }
        Ok(Catalogue { services })
    }

    /// The current (highest) version of every service, ordered by code.
    pub fn services(&self) -> impl Iterator<Item = &ServiceDefinition> {
        self.services
            .values()
            .filter_map(|versions| versions.last())
    }

    /// The current version of each service in a category.
    pub fn services_in(&self, category: Category) -> impl Iterator<Item = &ServiceDefinition> {
        self.services().filter(move |d| d.category == category)
    }

    /// The current version of a service.
    pub fn get(&self, code: &ServiceCode) -> Option<&ServiceDefinition> {
        self.services.get(code).and_then(|versions| versions.last())
    }

    /// A specific version of a service.
    pub fn get_version(&self, code: &ServiceCode, version: u32) -> Option<&ServiceDefinition> {
        self.services
            .get(code)
            .and_then(|versions| versions.iter().find(|d| d.version == version))
    }
}

impl Default for Catalogue {
    fn default() -> Self {
        Catalogue::shipped()
    }
}

fn validate_definition(d: &ServiceDefinition) -> Result<ServiceCode, CatalogueError> {
    let code = d.code.clone();
    let service_error = |problem: &str| CatalogueError::Service {
        service: d.code.to_string(),
        version: d.version,
        problem: problem.to_string(),
    };
    if d.version == 0 {
        return Err(service_error("version must be 1 or more"));
    }
    for (name, value) in [
        ("name_zh", &d.name_zh),
        ("name_en", &d.name_en),
        ("description_zh", &d.description_zh),
        ("description_en", &d.description_en),
    ] {
        if value.trim().is_empty() {
            return Err(service_error(&format!("{name} is empty")));
        }
    }
    if d.approval_levels > 2 {
        return Err(service_error("approval_levels must be 0, 1 or 2"));
    }
    if d.promised_days == 0 {
        return Err(service_error("promised_days must be at least 1"));
    }
    if d.promised_days > d.statutory_days {
        return Err(service_error(
            "promised_days must not exceed statutory_days",
        ));
    }
    if d.statutory_days > 365 {
        return Err(service_error("statutory_days must be at most 365"));
    }
    if d.steps.is_empty() {
        return Err(service_error("at least one fulfilment step is needed"));
    }
    let mut step_codes = BTreeSet::new();
    for step in &d.steps {
        if !is_key(&step.code) {
            return Err(service_error(&format!(
                "step code {:?} must be lowercase ascii, digits, _ or -",
                step.code
            )));
        }
        if !step_codes.insert(step.code.as_str()) {
            return Err(service_error(&format!(
                "step {} is listed twice",
                step.code
            )));
        }
    }
    let mut material_codes = BTreeSet::new();
    for material in &d.materials {
        if !is_key(&material.code) {
            return Err(service_error(&format!(
                "material code {:?} must be lowercase ascii, digits, _ or -",
                material.code
            )));
        }
        if !material_codes.insert(material.code.as_str()) {
            return Err(service_error(&format!(
                "material {} is listed twice",
                material.code
            )));
        }
        if material.name_zh.trim().is_empty() || material.description_zh.trim().is_empty() {
            return Err(service_error(&format!(
                "material {} needs name_zh and description_zh",
                material.code
            )));
        }
    }
    if d.sites.is_empty() || d.sites.iter().any(|s| s.trim().is_empty()) {
        return Err(service_error(
            "sites must name at least one site id, or \"*\" for every site",
        ));
    }
    let mut names = BTreeSet::new();
    for field in &d.fields {
        let field_error = |problem: &str| CatalogueError::Field {
            service: d.code.to_string(),
            version: d.version,
            field: field.name.clone(),
            problem: problem.to_string(),
        };
        if !is_key(&field.name) {
            return Err(field_error("name must be lowercase ascii, digits, _ or -"));
        }
        if !names.insert(field.name.as_str()) {
            return Err(field_error("is defined twice"));
        }
        if field.label_zh.trim().is_empty() || field.label_en.trim().is_empty() {
            return Err(field_error("needs both a chinese and an english label"));
        }
        let is_choice = matches!(
            field.kind,
            FieldKind::SingleChoice | FieldKind::MultipleChoice
        );
        if is_choice && field.options.is_empty() {
            return Err(field_error("a choice field needs options"));
        }
        if !is_choice && !field.options.is_empty() {
            return Err(field_error("only choice fields have options"));
        }
        let distinct: BTreeSet<_> = field.options.iter().collect();
        if distinct.len() != field.options.len() {
            return Err(field_error("options are not distinct"));
        }
        let has_length = field.min_length.is_some() || field.max_length.is_some();
        if has_length && field.kind != FieldKind::String {
            return Err(field_error("only string fields have length limits"));
        }
        if field.kind == FieldKind::String && field.max_length.is_none() {
            return Err(field_error("a string field needs max_length"));
        }
        if let (Some(min), Some(max)) = (field.min_length, field.max_length) {
            if min > max {
                return Err(field_error("min_length is greater than max_length"));
            }
        }
        let has_range = field.min.is_some() || field.max.is_some();
        if has_range && field.kind != FieldKind::Number {
            return Err(field_error("only number fields have min and max"));
        }
        if let (Some(min), Some(max)) = (field.min, field.max) {
            if min > max {
                return Err(field_error("min is greater than max"));
            }
        }
    }
    Ok(code)
}

fn is_key(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// One answer on a form. In JSON: a number, a string (text, a date `YYYY-MM-DD` or
/// a single choice), an array of strings (multiple choice), or `{"sealed": "..."}`
/// for a sensitive answer the server has encrypted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Number(f64),
    Text(String),
    Choices(Vec<String>),
    Sealed { sealed: String },
}

/// Read by the JSON value's own type, in one pass. (serde's `untagged` buffers the
/// value and tries each variant in turn, formatting an error for every miss: about 1 %
/// of the server's time under the submission load went to those messages.)
impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Answer, D::Error> {
        struct AnswerVisitor;
        impl<'de> serde::de::Visitor<'de> for AnswerVisitor {
            type Value = Answer;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, a string, a list of strings or {\"sealed\": \"...\"}")
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Answer, E> {
                Ok(Answer::Number(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Answer, E> {
                Ok(Answer::Number(v as f64))
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Answer, E> {
                Ok(Answer::Number(v as f64))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Answer, E> {
                Ok(Answer::Text(v.to_owned()))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Answer, E> {
                Ok(Answer::Text(v))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Answer, A::Error> {
                let mut choices = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(choice) = seq.next_element::<String>()? {
                    choices.push(choice);
                }
                Ok(Answer::Choices(choices))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Answer, A::Error> {
                let mut sealed = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "sealed" && sealed.is_none() {
                        sealed = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                sealed
                    .map(|sealed| Answer::Sealed { sealed })
                    .ok_or_else(|| serde::de::Error::missing_field("sealed"))
            }
        }
        deserializer.deserialize_any(AnswerVisitor)
    }
}

impl Answer {
    fn type_name(&self) -> &'static str {
        match self {
            Answer::Number(_) => "number",
            Answer::Text(_) => "text",
            Answer::Choices(_) => "list",
            Answer::Sealed { .. } => "sealed value",
        }
    }
}

/// Answers keyed by field name.
pub type FormAnswers = BTreeMap<String, Answer>;

/// What is wrong with one field (or one command argument).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    Missing,
    UnknownField,
    WrongType {
        expected: String,
        got: String,
    },
    TooShort {
        min_length: u32,
        length: u32,
    },
    TooLong {
        max_length: u32,
        length: u32,
    },
    NotAllowed {
        value: String,
        allowed: Vec<String>,
    },
    Duplicate {
        value: String,
    },
    OutOfRange {
        min: Option<f64>,
        max: Option<f64>,
        value: f64,
    },
    NotADate {
        value: String,
    },
    /// A sensitive answer arrived in clear where only a sealed one may go.
    NotSealed,
    /// A sealed answer where a clear one was needed.
    UnexpectedSealed,
    /// A control character, terminal escape or bidirectional override, named by its
    /// code point (`U+001B`).
    Unprintable {
        character: String,
    },
    /// Any other problem with a command argument, said in words.
    Other {
        message: String,
    },
}

/// A field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldViolation {
    pub field: String,
    #[serde(flatten)]
    pub problem: Problem,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, problem: Problem) -> Self {
        FieldViolation {
            field: field.into(),
            problem,
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = &self.field;
        match &self.problem {
            Problem::Missing => write!(f, "{field} is required"),
            Problem::UnknownField => write!(f, "{field} is not a field of this service"),
            Problem::WrongType { expected, got } => {
                write!(f, "{field} must be a {expected}, got a {got}")
            }
            Problem::TooShort { min_length, length } => {
                write!(
                    f,
                    "{field} is too short: {length} characters, at least {min_length}"
                )
            }
            Problem::TooLong { max_length, length } => {
                write!(
                    f,
                    "{field} is too long: {length} characters, at most {max_length}"
                )
            }
            Problem::NotAllowed { value, allowed } => {
                write!(
                    f,
                    "{field} value {value:?} is not allowed (allowed: {})",
                    allowed.join(", ")
                )
            }
            Problem::Duplicate { value } => write!(f, "{field} lists {value:?} twice"),
            Problem::OutOfRange { min, max, value } => {
                let min = min.map_or("-inf".to_string(), |m| m.to_string());
                let max = max.map_or("inf".to_string(), |m| m.to_string());
                write!(f, "{field} value {value} is outside {min}..={max}")
            }
            Problem::NotADate { value } => {
                write!(f, "{field} value {value:?} is not a date (YYYY-MM-DD)")
            }
            Problem::NotSealed => write!(
                f,
                "{field} is sensitive and must be sealed before submission"
            ),
            Problem::UnexpectedSealed => write!(f, "{field} is sealed but must be given in clear"),
            Problem::Unprintable { character } => write!(
                f,
                "{field} holds the unprintable character {character}: control characters, \
                 terminal escapes and bidirectional overrides are refused"
            ),
            Problem::Other { message } => write!(f, "{field}: {message}"),
        }
    }
}

/// Answers that passed [`validate_form`]: trimmed, dates normalized, nothing unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedForm {
    answers: FormAnswers,
    sensitive_fields: BTreeSet<String>,
}

impl ValidatedForm {
    pub fn answers(&self) -> &FormAnswers {
        &self.answers
    }

    /// Names of the answered fields the definition marks sensitive.
    pub fn sensitive_fields(&self) -> impl Iterator<Item = &str> {
        self.sensitive_fields.iter().map(String::as_str)
    }

    /// Replaces every sensitive answer with `{"sealed": seal(field, answer)}`; `seal` is
    /// the server's encryption. The result is what a `Submit` command carries.
    pub fn seal_sensitive(self, mut seal: impl FnMut(&str, &Answer) -> String) -> FormAnswers {
        let mut answers = self.answers;
        for name in &self.sensitive_fields {
            if let Some(answer) = answers.get_mut(name) {
                *answer = Answer::Sealed {
                    sealed: seal(name, answer),
                };
            }
        }
        answers
    }
}

/// Checks clear answers against a definition, before the server seals the sensitive
/// ones. Every violation is reported, not just the first.
pub fn validate_form(
    definition: &ServiceDefinition,
    answers: &FormAnswers,
) -> Result<ValidatedForm, Vec<FieldViolation>> {
    check_form(definition, answers, SealMode::Clear)
}

/// Checks answers as they arrive in a `Submit` command: sensitive answers must be
/// sealed (their content was checked by [`validate_form`] before sealing), the others
/// must be clear and valid.
pub fn validate_sealed_form(
    definition: &ServiceDefinition,
    answers: &FormAnswers,
) -> Result<ValidatedForm, Vec<FieldViolation>> {
    check_form(definition, answers, SealMode::SensitiveSealed)
}

#[derive(Clone, Copy, PartialEq)]
enum SealMode {
    Clear,
    SensitiveSealed,
}

fn check_form(
    definition: &ServiceDefinition,
    answers: &FormAnswers,
    mode: SealMode,
) -> Result<ValidatedForm, Vec<FieldViolation>> {
    let mut violations = Vec::new();
    for name in answers.keys() {
        if definition.field(name).is_none() {
            violations.push(FieldViolation::new(
                crate::text::escaped(name),
                Problem::UnknownField,
            ));
        }
    }
    let mut cleaned = FormAnswers::new();
    let mut sensitive_fields = BTreeSet::new();
    for field in &definition.fields {
        let answer = answers.get(&field.name).filter(|a| !is_blank(a));
        let Some(answer) = answer else {
            if field.required {
                violations.push(FieldViolation::new(field.name.clone(), Problem::Missing));
            }
            continue;
        };
        if field.sensitive {
            sensitive_fields.insert(field.name.clone());
        }
        match (answer, field.sensitive, mode) {
            (Answer::Sealed { .. }, true, SealMode::SensitiveSealed) => {
                cleaned.insert(field.name.clone(), answer.clone());
                continue;
            }
            (_, true, SealMode::SensitiveSealed) => {
                violations.push(FieldViolation::new(field.name.clone(), Problem::NotSealed));
                continue;
            }
            (Answer::Sealed { .. }, _, _) => {
                violations.push(FieldViolation::new(
                    field.name.clone(),
                    Problem::UnexpectedSealed,
                ));
                continue;
            }
            _ => {}
        }
        match check_answer(field, answer) {
            Ok(clean) => {
                cleaned.insert(field.name.clone(), clean);
            }
            Err(problems) if field.sensitive => violations.extend(problems.into_iter().map(redact)),
            Err(mut problems) => violations.append(&mut problems),
        }
    }
    if violations.is_empty() {
        Ok(ValidatedForm {
            answers: cleaned,
            sensitive_fields,
        })
    } else {
        Err(violations)
    }
}

/// Violations may be logged or shown; a sensitive answer's value never appears in one.
fn redact(mut violation: FieldViolation) -> FieldViolation {
    const HIDDEN: &str = "(sensitive value hidden)";
    match &mut violation.problem {
        Problem::NotAllowed { value, .. }
        | Problem::Duplicate { value }
        | Problem::NotADate { value } => {
            *value = HIDDEN.to_string();
        }
        Problem::OutOfRange { value, .. } => *value = f64::NAN,
        _ => {}
    }
    violation
}

fn is_blank(answer: &Answer) -> bool {
    match answer {
        Answer::Text(text) => text.trim().is_empty(),
        Answer::Choices(list) => list.is_empty(),
        Answer::Sealed { sealed } => sealed.is_empty(),
        Answer::Number(_) => false,
    }
}

fn check_answer(field: &FieldDefinition, answer: &Answer) -> Result<Answer, Vec<FieldViolation>> {
    let name = &field.name;
    let violation = |problem| vec![FieldViolation::new(name.clone(), problem)];
    let wrong_type = |expected: &str| {
        violation(Problem::WrongType {
            expected: expected.to_string(),
            got: answer.type_name().to_string(),
        })
    };
    match field.kind {
        FieldKind::String => {
            let Answer::Text(text) = answer else {
                return Err(wrong_type("text"));
            };
            let text = text.trim();
            if let Some(c) = crate::text::refused_char(text, crate::text::Lines::Many) {
                return Err(violation(Problem::Unprintable {
                    character: crate::text::code_point(c),
                }));
            }
            let length = text.chars().count() as u32;
            if let Some(max_length) = field.max_length.filter(|max| length > *max) {
                return Err(violation(Problem::TooLong { max_length, length }));
            }
            if let Some(min_length) = field.min_length.filter(|min| length < *min) {
                return Err(violation(Problem::TooShort { min_length, length }));
            }
            Ok(Answer::Text(text.to_string()))
        }
        FieldKind::Number => {
            let Answer::Number(value) = answer else {
                return Err(wrong_type("number"));
            };
            let value = *value;
            let below = field.min.is_some_and(|min| value < min);
            let above = field.max.is_some_and(|max| value > max);
            if !value.is_finite() || below || above {
                return Err(violation(Problem::OutOfRange {
                    min: field.min,
                    max: field.max,
                    value,
                }));
            }
            Ok(Answer::Number(value))
        }
        FieldKind::Date => {
            let Answer::Text(text) = answer else {
                return Err(wrong_type("date"));
            };
            match CivilDate::parse(text.trim()) {
                Some(date) => Ok(Answer::Text(date.to_string())),
                None => Err(violation(Problem::NotADate {
                    value: text.clone(),
                })),
            }
        }
        FieldKind::SingleChoice => {
            let Answer::Text(text) = answer else {
                return Err(wrong_type("single choice"));
            };
            let text = text.trim();
            if field.options.iter().any(|o| o == text) {
                Ok(Answer::Text(text.to_string()))
            } else {
                Err(violation(Problem::NotAllowed {
                    value: text.to_string(),
                    allowed: field.options.clone(),
                }))
            }
        }
        FieldKind::MultipleChoice => {
            let Answer::Choices(list) = answer else {
                return Err(wrong_type("list of choices"));
            };
            let mut problems = Vec::new();
            let mut seen = BTreeSet::new();
            for value in list {
                if !field.options.contains(value) {
                    problems.push(FieldViolation::new(
                        name.clone(),
                        Problem::NotAllowed {
                            value: value.clone(),
                            allowed: field.options.clone(),
                        },
                    ));
                } else if !seen.insert(value) {
                    problems.push(FieldViolation::new(
                        name.clone(),
                        Problem::Duplicate {
                            value: value.clone(),
                        },
                    ));
                }
            }
            if problems.is_empty() {
                Ok(Answer::Choices(list.clone()))
            } else {
                Err(problems)
            }
        }
    }
}

#[cfg(test)]
mod answer_json_tests {
    use super::*;

    #[test]
    fn answers_read_back_from_json_by_their_type() {
        let cases = [
            (r#"3"#, Answer::Number(3.0)),
            (r#"-2"#, Answer::Number(-2.0)),
            (r#"2.5"#, Answer::Number(2.5)),
            (r#""2026-12-02""#, Answer::Text("2026-12-02".into())),
            (r#""带\"引号""#, Answer::Text("带\"引号".into())),
            (
                r#"["a","b"]"#,
                Answer::Choices(vec!["a".into(), "b".into()]),
            ),
            (r#"[]"#, Answer::Choices(Vec::new())),
            (
                r#"{"sealed":"v1.x"}"#,
                Answer::Sealed {
                    sealed: "v1.x".into(),
                },
            ),
        ];
        for (json, answer) in cases {
            assert_eq!(
                serde_json::from_str::<Answer>(json).unwrap(),
                answer,
                "{json}"
            );
            let again = serde_json::to_string(&answer).unwrap();
            assert_eq!(serde_json::from_str::<Answer>(&again).unwrap(), answer);
        }
        for bad in [
            r#"true"#,
            r#"null"#,
            r#"[1]"#,
            r#"{"other":"x"}"#,
            r#"{"sealed":1}"#,
        ] {
            assert!(serde_json::from_str::<Answer>(bad).is_err(), "{bad}");
        }
    }
}
