//! Parsing what a caller sends into typed values: phone numbers, identity numbers,
//! idempotency keys and text form answers. Problems name the field, never the value.

use anju_domain::{Answer, FieldKind, FieldViolation, FormAnswers, Problem, ServiceDefinition};
use std::collections::BTreeMap;

fn other(field: &str, message: &str) -> FieldViolation {
    FieldViolation::new(
        field,
        Problem::Other {
            message: message.to_string(),
        },
    )
}

/// An idempotency key: 8 to 128 printable ASCII characters.
pub fn parse_idempotency_key(text: &str) -> Result<String, FieldViolation> {
    let length = text.chars().count();
    if length == 0 {
        return Err(FieldViolation::new("idempotency_key", Problem::Missing));
    }
    if length < 8 {
        return Err(FieldViolation::new(
            "idempotency_key",
            Problem::TooShort {
                min_length: 8,
                length: length as u32,
            },
        ));
    }
    if length > 128 {
        return Err(FieldViolation::new(
            "idempotency_key",
            Problem::TooLong {
                max_length: 128,
                length: length as u32,
            },
        ));
    }
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(other(
            "idempotency_key",
            "must be printable ascii without spaces",
        ));
    }
    Ok(text.to_string())
}

/// A mainland mobile number: 11 digits starting with 1 and then 3 to 9. Spaces and
/// hyphens are ignored, and a leading +86 or 86 is dropped.
pub fn parse_phone(field: &str, text: &str) -> Result<String, FieldViolation> {
    let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if digits.is_empty() {
        return Err(FieldViolation::new(field, Problem::Missing));
    }
    let digits = digits
        .strip_prefix("+86")
        .or_else(|| digits.strip_prefix("86").filter(|d| d.len() == 11))
        .unwrap_or(&digits);
    let bytes = digits.as_bytes();
    if bytes.len() != 11
        || !bytes.iter().all(u8::is_ascii_digit)
        || bytes[0] != b'1'
        || bytes[1] < b'3'
    {
        return Err(other(
            field,
            "must be an 11-digit mainland mobile number starting with 13 to 19",
        ));
    }
    Ok(digits.to_string())
}

/// An 18-character PRC resident identity number: 17 digits and a check character
/// (0-9 or X) by ISO 7064 MOD 11-2, with a real birth date in positions 7 to 14.
pub fn parse_id_number(field: &str, text: &str) -> Result<String, FieldViolation> {
    let id: String = text.trim().to_ascii_uppercase();
    let bytes = id.as_bytes();
    if bytes.len() != 18
        || !bytes[..17].iter().all(u8::is_ascii_digit)
        || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
    {
        return Err(other(
            field,
            "must be 18 characters: 17 digits and a digit or X",
        ));
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = bytes[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    if CHECK[(sum % 11) as usize] != bytes[17] {
        return Err(other(
            field,
            "check character does not match; the number is mistyped",
        ));
    }
    let birth = format!("{}-{}-{}", &id[6..10], &id[10..12], &id[12..14]);
    if anju_domain::CivilDate::parse(&birth).is_none_or(|d| d.year < 1900) {
        return Err(other(field, "does not hold a valid birth date"));
    }
    Ok(id)
}

/// The largest magnitude a number answer may have: numbers are kept as doubles, which
/// hold every integer up to 2^53 exactly and round beyond it (2^63 - 1 would come back
/// as 9223372036854776000).
pub const MAX_EXACT_NUMBER: f64 = 9_007_199_254_740_992.0;

/// A number answer: finite and small enough to be kept exactly.
fn parse_number(name: &str, text: &str) -> Result<Answer, FieldViolation> {
    match text.parse::<f64>() {
        Err(_) => Err(FieldViolation::new(
            name,
            Problem::WrongType {
                expected: "number".into(),
                got: "text".into(),
            },
        )),
        Ok(n) if !n.is_finite() => Err(other(name, "must be a finite number")),
        Ok(n) if n.abs() > MAX_EXACT_NUMBER => Err(other(
            name,
            "must be between -9007199254740992 and 9007199254740992 (2^53), the largest \
             numbers that are kept exactly",
        )),
        Ok(n) => Ok(Answer::Number(n)),
    }
}

/// Turns text answers into typed answers by the definition's field kinds: a number
/// field takes one number, a multiple-choice field a list, the others one text.
/// Unknown fields are passed through as text so `validate_form` names them.
pub fn typed_answers(
    definition: &ServiceDefinition,
    text: &BTreeMap<String, Vec<String>>,
) -> Result<FormAnswers, Vec<FieldViolation>> {
    let mut answers = FormAnswers::new();
    let mut violations = Vec::new();
    for (name, values) in text {
        let Some(field) = definition.field(name) else {
            answers.insert(name.clone(), Answer::Text(values.join(",")));
            continue;
        };
        let single = || -> Result<&str, FieldViolation> {
            match values.as_slice() {
                [] => Ok(""),
                [one] => Ok(one.as_str()),
                _ => Err(other(name, "takes one value")),
            }
        };
        let answer = match field.kind {
            FieldKind::MultipleChoice => Ok(Answer::Choices(
                values.iter().map(|v| v.trim().to_string()).collect(),
            )),
            FieldKind::Number => single().and_then(|v| {
                let v = v.trim();
                if v.is_empty() {
                    Ok(Answer::Text(String::new()))
                } else {
                    parse_number(name, v)
                }
            }),
            _ => single().map(|v| Answer::Text(v.to_string())),
        };
        match answer {
            Ok(answer) => {
                answers.insert(name.clone(), answer);
            }
            Err(violation) => violations.push(violation),
        }
    }
    if violations.is_empty() {
        Ok(answers)
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_numbers_need_a_matching_check_character() {
        // A commonly published sample number with a valid checksum.
        assert!(parse_id_number("id", "11010519491231002X").is_ok());
        assert!(parse_id_number("id", "110105194912310021").is_err());
        assert!(parse_id_number("id", "11010519491331002X").is_err());
        assert!(parse_id_number("id", "1101051949123100").is_err());
    }

    #[test]
    fn phones_are_normalized() {
        assert_eq!(
            parse_phone("phone", "+86 138-0013-8000").unwrap(),
            "13800138000"
        );
        assert_eq!(
            parse_phone("phone", "8613800138000").unwrap(),
            "13800138000"
        );
        assert!(parse_phone("phone", "12800138000").is_err());
        assert!(parse_phone("phone", "1380013800").is_err());
    }

    #[test]
    fn numbers_are_finite_and_kept_exactly() {
        assert_eq!(
            parse_number("n", " 12.5".trim()).unwrap(),
            Answer::Number(12.5)
        );
        let nan = parse_number("n", "NaN").unwrap_err().to_string();
        assert!(nan.contains("finite"), "{nan}");
        let huge = parse_number("n", "9223372036854775807")
            .unwrap_err()
            .to_string();
        assert!(huge.contains("2^53"), "{huge}");
        assert!(parse_number("n", "9007199254740992").is_ok());
        let text = parse_number("n", "three").unwrap_err().to_string();
        assert!(text.contains("got a text"), "{text}");
    }

    #[test]
    fn idempotency_keys_have_limits() {
        assert!(parse_idempotency_key("short").is_err());
        assert!(parse_idempotency_key(&"k".repeat(129)).is_err());
        assert!(parse_idempotency_key("with space 123").is_err());
        assert!(parse_idempotency_key("0190b2f4-key").is_ok());
    }
}
