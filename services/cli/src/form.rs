//! `--field key=value` answers, checked against a service's form before anything is
//! sent: unknown keys, missing required fields, values of the wrong type, choices
//! that are not on the list and texts that are too long are all reported at once.

use std::collections::BTreeMap;

use anju_proto::v1::form_value::Value;
use anju_proto::v1::{Date, FieldType, FormField, FormValue, StringList};

/// Splits `key=value`; the value may itself hold `=`.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}

/// One problem with one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

/// Checks `answers` against `fields` and returns them as the text answers the server
/// parses (choice labels are replaced by their codes), or every problem found.
pub fn check_answers(
    fields: &[FormField],
    answers: &[(String, String)],
) -> Result<BTreeMap<String, String>, Vec<FieldProblem>> {
    let mut problems = Vec::new();
    let mut checked = BTreeMap::new();
    for (key, value) in answers {
        let Some(field) = fields.iter().find(|f| &f.key == key) else {
            let known: Vec<&str> = fields.iter().map(|f| f.key.as_str()).collect();
            problems.push(FieldProblem {
                field: key.clone(),
                problem: format!(
                    "this service has no such field; its fields are {}",
                    known.join(", ")
                ),
            });
            continue;
        };
        if checked.contains_key(key) {
            problems.push(FieldProblem {
                field: key.clone(),
                problem: "given more than once".into(),
            });
            continue;
        }
        match check_value(field, value) {
            Ok(text) => {
                checked.insert(key.clone(), text);
            }
            Err(problem) => problems.push(FieldProblem {
                field: key.clone(),
                problem,
            }),
        }
    }
    for field in fields {
        if field.required
            && !checked.contains_key(&field.key)
            && !problems.iter().any(|p| p.field == field.key)
        {
            problems.push(FieldProblem {
                field: field.key.clone(),
                problem: format!("required ({}): add --field {}=...", field.label, field.key),
            });
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

fn check_value(field: &FormField, value: &str) -> Result<String, String> {
    let kind = FieldType::try_from(field.r#type).unwrap_or(FieldType::Unspecified);
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err("empty value".into());
    }
    match kind {
        FieldType::Integer => trimmed
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| format!("expected a whole number, got {value:?}")),
        FieldType::Decimal => trimmed
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(|_| trimmed.to_string())
            .ok_or_else(|| format!("expected a number, got {value:?}")),
        FieldType::Flag => match trimmed.to_lowercase().as_str() {
            "true" | "yes" | "1" | "是" => Ok("true".into()),
            "false" | "no" | "0" | "否" => Ok("false".into()),
            _ => Err(format!("expected yes or no, got {value:?}")),
        },
        FieldType::Date => crate::labels::parse_date(trimmed)
            .map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
            .ok_or_else(|| format!("expected a date YYYY-MM-DD, got {value:?}")),
        FieldType::Choice => choice_code(field, trimmed),
        FieldType::Choices => {
            let codes: Result<Vec<String>, String> = trimmed
                .split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| choice_code(field, part))
                .collect();
            Ok(codes?.join(","))
        }
        FieldType::Text | FieldType::Attachment | FieldType::Unspecified => {
            let chars = value.chars().count();
            if field.max_length > 0 && chars > field.max_length as usize {
                Err(format!(
                    "{chars} characters, at most {} allowed",
                    field.max_length
                ))
            } else {
                Ok(value.to_string())
            }
        }
    }
}

/// The code of the choice `text` names, by code or label (or the code's first word,
/// so `务工` finds `务工 wages`).
fn choice_code(field: &FormField, text: &str) -> Result<String, String> {
    field
        .choices
        .iter()
        .find(|c| c.code == text || c.label == text)
        .or_else(|| {
            field.choices.iter().find(|c| {
                c.code.split_whitespace().next() == Some(text)
                    || c.code
                        .split_whitespace()
                        .skip(1)
                        .collect::<Vec<_>>()
                        .join(" ")
                        == text
            })
        })
        .map(|c| c.code.clone())
        .ok_or_else(|| {
            let codes: Vec<&str> = field.choices.iter().map(|c| c.code.as_str()).collect();
            format!("{text:?} is not one of: {}", codes.join(" | "))
        })
}

/// Checked text answers as typed form values, by each field's type.
pub fn typed_answers(
    fields: &[FormField],
    checked: &BTreeMap<String, String>,
) -> std::collections::HashMap<String, FormValue> {
    checked
        .iter()
        .map(|(key, text)| {
            let kind = fields
                .iter()
                .find(|f| &f.key == key)
                .map_or(FieldType::Text, |f| {
                    FieldType::try_from(f.r#type).unwrap_or(FieldType::Text)
                });
            let value = match kind {
                FieldType::Integer => text
                    .parse()
                    .map(Value::Integer)
                    .unwrap_or_else(|_| Value::Text(text.clone())),
                FieldType::Decimal => text
                    .parse()
                    .map(Value::Decimal)
                    .unwrap_or_else(|_| Value::Text(text.clone())),
                FieldType::Flag => Value::Flag(text == "true"),
                FieldType::Date => match crate::labels::parse_date(text) {
                    Some((year, month, day)) => Value::Date(Date {
                        year,
                        month: month as i32,
                        day: day as i32,
                    }),
                    None => Value::Text(text.clone()),
                },
                FieldType::Choice => Value::Choice(text.clone()),
                FieldType::Choices => Value::Choices(StringList {
                    values: text.split(',').map(str::to_string).collect(),
                }),
                _ => Value::Text(text.clone()),
            };
            (key.clone(), FormValue { value: Some(value) })
        })
        .collect()
}

/// The type of a field in words, for `anju services show`.
pub fn type_name(kind: i32) -> &'static str {
    match FieldType::try_from(kind).unwrap_or(FieldType::Unspecified) {
        FieldType::Unspecified => "-",
        FieldType::Text => "text",
        FieldType::Integer => "integer",
        FieldType::Decimal => "number",
        FieldType::Flag => "yes/no",
        FieldType::Date => "date",
        FieldType::Choice => "choice",
        FieldType::Choices => "choices",
        FieldType::Attachment => "attachment",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anju_proto::v1::FieldChoice;

    fn fields() -> Vec<FormField> {
        vec![
            FormField {
                key: "household_size".into(),
                label: "家庭人口数".into(),
                r#type: FieldType::Integer as i32,
                required: true,
                ..FormField::default()
            },
            FormField {
                key: "income_sources".into(),
                label: "收入来源".into(),
                r#type: FieldType::Choices as i32,
                required: false,
                choices: vec![
                    FieldChoice {
                        code: "务工 wages".into(),
                        label: "务工 wages".into(),
                    },
                    FieldChoice {
                        code: "其他 other".into(),
                        label: "其他 other".into(),
                    },
                ],
                ..FormField::default()
            },
            FormField {
                key: "situation".into(),
                label: "情况".into(),
                r#type: FieldType::Text as i32,
                max_length: 4,
                ..FormField::default()
            },
        ]
    }

    #[test]
    fn good_answers_pass_with_choice_codes_filled_in() {
        let answers = vec![
            parse_pair("household_size=4").unwrap(),
            parse_pair("income_sources=务工, other").unwrap(),
        ];
        let checked = check_answers(&fields(), &answers).unwrap();
        assert_eq!(checked["household_size"], "4");
        assert_eq!(checked["income_sources"], "务工 wages,其他 other");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let answers = vec![
            parse_pair("income_sources=lottery").unwrap(),
            parse_pair("situation=太长的说明").unwrap(),
            parse_pair("colour=blue").unwrap(),
        ];
        let problems = check_answers(&fields(), &answers).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["income_sources", "situation", "colour", "household_size"]
        );
        assert!(problems[3].problem.starts_with("required"));
        assert!(parse_pair("novalue").is_err());
    }
}
