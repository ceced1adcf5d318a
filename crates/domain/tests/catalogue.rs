//! The shipped catalogue, catalogue validation errors, form validation and sealing,
//! and the parsed service and tracking codes.

use anju_domain::*;
use std::collections::BTreeSet;

fn dibao() -> ServiceDefinition {
    Catalogue::shipped()
        .get(&ServiceCode::parse("MZ-DIBAO").unwrap())
        .unwrap()
        .clone()
}

#[test]
fn the_shipped_catalogue_has_at_least_two_real_services_per_category() {
    let catalogue = Catalogue::shipped();
    for category in Category::ALL {
        let services: Vec<_> = catalogue.services_in(category).collect();
        assert!(
            services.len() >= 2,
            "{} has {} services",
            category.name_zh(),
            services.len()
        );
        for s in services {
            assert!(!s.name_zh.is_empty() && !s.name_en.is_empty() && !s.description_en.is_empty());
            assert!(!s.steps.is_empty());
            assert!(s.promised_days <= s.statutory_days);
            // Issue 16, item 18: a kiosk can tell residents what to bring and where.
            assert!(!s.materials.is_empty(), "{} lists no materials", s.code);
            assert!(s.materials.iter().any(|m| m.required), "{}", s.code);
            assert!(!s.sites.is_empty(), "{}", s.code);
            for field in &s.fields {
                if field.kind == FieldKind::Number {
                    assert!(
                        field.min.is_some() && field.max.is_some(),
                        "{}.{}",
                        s.code,
                        field.name
                    );
                }
            }
        }
    }
    let levels: BTreeSet<u8> = catalogue.services().map(|s| s.approval_levels).collect();
    assert_eq!(levels, BTreeSet::from([0, 1, 2]));
    let kinds: BTreeSet<&str> = catalogue
        .services()
        .flat_map(|s| s.fields.iter().map(|f| f.kind.as_str()))
        .collect();
    assert_eq!(kinds.len(), 5, "every field kind is used: {kinds:?}");
    assert!(catalogue
        .services()
        .any(|s| s.fields.iter().any(|f| f.sensitive)));
}

#[test]
fn definitions_are_versioned() {
    let catalogue = Catalogue::shipped();
    let code = ServiceCode::parse("MZ-DIBAO").unwrap();
    assert_eq!(catalogue.get(&code).unwrap().version, 2);
    assert_eq!(catalogue.get_version(&code, 1).unwrap().promised_days, 20);
    assert!(catalogue.get_version(&code, 3).is_none());
    assert_eq!(catalogue.services().filter(|s| s.code == code).count(), 1);
}

const ONE_SERVICE: &str = r#"
[[service]]
code = "TEST-ONE"
version = 1
category = "社区"
name_zh = "测试"
name_en = "Test"
description_zh = "测试服务"
description_en = "A test service"
approval_levels = 1
promised_days = 3
statutory_days = 5

[[service.field]]
name = "colour"
label_zh = "颜色"
label_en = "Colour"
kind = "single_choice"
options = ["red", "blue"]

[[service.step]]
code = "do-it"
name_zh = "办理"
name_en = "Do it"
"#;

#[test]
fn a_custom_catalogue_loads_from_toml() {
    let catalogue = Catalogue::from_toml_str(ONE_SERVICE).unwrap();
    let one = catalogue
        .get(&ServiceCode::parse("TEST-ONE").unwrap())
        .unwrap();
    assert_eq!(one.category, Category::Community);
    assert_eq!(one.fields[0].options, vec!["red", "blue"]);
}

#[test]
fn catalogue_errors_name_the_service_and_field() {
    let err = |from: &str, to: &str| {
        Catalogue::from_toml_str(&ONE_SERVICE.replace(from, to))
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err("options = [\"red\", \"blue\"]", "options = []"),
        "catalogue service TEST-ONE v1 field colour: a choice field needs options"
    );
    assert_eq!(
        err("approval_levels = 1", "approval_levels = 3"),
        "catalogue service TEST-ONE v1: approval_levels must be 0, 1 or 2"
    );
    assert_eq!(
        err("promised_days = 3", "promised_days = 9"),
        "catalogue service TEST-ONE v1: promised_days must not exceed statutory_days"
    );
    assert_eq!(
        err("kind = \"single_choice\"", "kind = \"string\""),
        "catalogue service TEST-ONE v1 field colour: only choice fields have options"
    );
    assert_eq!(
        err("name = \"colour\"", "name = \"Colour!\""),
        "catalogue service TEST-ONE v1 field Colour!: name must be lowercase ascii, digits, _ or -"
    );
    assert!(err("code = \"TEST-ONE\"", "code = \"test one\"")
        .contains("service code \"test one\" is malformed"));
    assert!(
        err("kind = \"single_choice\"", "kind = \"colour\"").contains("unknown variant `colour`")
    );
    let twice = format!("{ONE_SERVICE}\n{ONE_SERVICE}");
    assert_eq!(
        Catalogue::from_toml_str(&twice).unwrap_err().to_string(),
        "catalogue service TEST-ONE v1: version is defined twice"
    );
}

fn answers(pairs: &[(&str, Answer)]) -> FormAnswers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn valid_answers_are_cleaned_and_sensitive_ones_sealed() {
    let form = validate_form(
        &dibao(),
        &answers(&[
            ("household_size", Answer::Number(3.0)),
            ("monthly_income_yuan", Answer::Number(900.0)),
            (
                "income_sources",
                Answer::Choices(vec!["务工 wages".into(), "其他 other".into()]),
            ),
            ("id_number", Answer::Text(" 510101199001011234 ".into())),
            ("situation", Answer::Text("  老人生病  ".into())),
        ]),
    )
    .expect("valid");
    assert_eq!(form.answers()["situation"], Answer::Text("老人生病".into()));
    assert_eq!(
        form.sensitive_fields().collect::<Vec<_>>(),
        vec!["id_number"]
    );
    let sealed = form.seal_sensitive(|field, _| format!("sealed:{field}"));
    assert_eq!(
        sealed["id_number"],
        Answer::Sealed {
            sealed: "sealed:id_number".into()
        }
    );
    assert_eq!(sealed["household_size"], Answer::Number(3.0));
    // What the server submits passes the submission check; the clear form does not.
    assert!(validate_sealed_form(&dibao(), &sealed).is_ok());
}

#[test]
fn every_violation_is_named() {
    let violations = validate_form(
        &dibao(),
        &answers(&[
            ("household_size", Answer::Number(0.0)),
            ("monthly_income_yuan", Answer::Choices(vec![])),
            (
                "income_sources",
                Answer::Choices(vec![
                    "务工 wages".into(),
                    "务工 wages".into(),
                    "lottery".into(),
                ]),
            ),
            ("id_number", Answer::Text("123".into())),
            ("situation", Answer::Sealed { sealed: "x".into() }),
            ("pet", Answer::Text("cat".into())),
        ]),
    )
    .unwrap_err();
    let messages: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "pet is not a field of this service",
            "household_size value 0 is outside 1..=20",
            "monthly_income_yuan is required",
            "income_sources lists \"务工 wages\" twice",
            "income_sources value \"lottery\" is not allowed (allowed: 务工 wages, 种养殖 farming, 社区工厂 community factory, 公益性岗位 public-welfare post, 其他 other)",
            "id_number is too short: 3 characters, at least 18",
            "situation is sealed but must be given in clear",
        ]
    );
}

#[test]
fn dates_and_single_choices_are_checked() {
    let linshi = Catalogue::shipped()
        .get(&ServiceCode::parse("MZ-LINSHI").unwrap())
        .unwrap()
        .clone();
    let violations = validate_form(
        &linshi,
        &answers(&[
            ("emergency_type", Answer::Choices(vec!["火灾 fire".into()])),
            ("occurred_on", Answer::Text("2026-02-30".into())),
        ]),
    )
    .unwrap_err();
    let messages: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "emergency_type must be a single choice, got a list",
            "occurred_on value \"2026-02-30\" is not a date (YYYY-MM-DD)"
        ]
    );
}

#[test]
fn answers_have_a_plain_json_form() {
    let json = r#"{"household_size": 3, "income_sources": ["务工 wages"], "id_number": {"sealed": "abc"}, "situation": "text"}"#;
    let parsed: FormAnswers = serde_json::from_str(json).unwrap();
    assert_eq!(parsed["household_size"], Answer::Number(3.0));
    assert_eq!(
        parsed["id_number"],
        Answer::Sealed {
            sealed: "abc".into()
        }
    );
    assert_eq!(parsed["situation"], Answer::Text("text".into()));
}

#[test]
fn service_codes_are_parsed() {
    assert_eq!(ServiceCode::parse("MZ-DIBAO").unwrap().as_str(), "MZ-DIBAO");
    for bad in [
        "mz-dibao",
        "MZ--DIBAO",
        "MZ-",
        "-MZ",
        "M",
        "MZ DIBAO",
        "1MZ",
    ] {
        assert!(ServiceCode::parse(bad).is_err(), "{bad} should be rejected");
    }
    assert!(ServiceCode::parse("mz")
        .unwrap_err()
        .to_string()
        .starts_with("service code \"mz\" is malformed"));
}

#[test]
fn tracking_codes_are_made_from_random_bytes_and_parsed_forgivingly() {
    let code = TrackingCode::from_random_bytes([0xff; 8]);
    assert_eq!(code.as_str(), "AJ-ZZZZ-ZZZZ-ZZZZ");
    let code = TrackingCode::from_random_bytes([0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(code.as_str(), "AJ-0000-0000-0001");
    let code = TrackingCode::from_random_bytes([0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0]);
    assert_eq!(TrackingCode::parse(code.as_str()).unwrap(), code);
    assert_eq!(
        TrackingCode::parse(&code.as_str().to_lowercase().replace('-', " ")).unwrap(),
        code
    );
    assert_eq!(
        TrackingCode::parse("aj-oooo-iiii-llll").unwrap().as_str(),
        "AJ-0000-1111-1111"
    );
    assert_eq!(
        TrackingCode::parse("AJ-1234").unwrap_err().to_string(),
        "tracking code \"AJ-1234\" is malformed: expected AJ- followed by 12 letters or digits, like AJ-7K2M-QX9D-4HTR"
    );
    assert_eq!(
        TrackingCode::parse("AJ-UUUU-0000-0000")
            .unwrap_err()
            .to_string(),
        "tracking code \"AJ-UUUU-0000-0000\" contains 'U', which is not used in tracking codes"
    );
    assert!(TrackingCode::parse("XX-0000-0000-0000").is_err());
    assert!(serde_json::from_str::<TrackingCode>("\"AJ-12\"").is_err());
    // The 60 bits a code carries, and back (the read models key codes by them).
    assert_eq!(code.value(), 0x0234_5678_9abc_def0);
    assert_eq!(
        TrackingCode::from_random_bytes([0xff; 8]).value(),
        (1 << 60) - 1
    );
    let mut value = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..1000 {
        value = value.rotate_left(7).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let code = TrackingCode::from_value(value);
        assert_eq!(code.value(), value & ((1 << 60) - 1));
        assert_eq!(TrackingCode::from_value(code.value()), code);
        assert_eq!(
            TrackingCode::parse(code.as_str()).unwrap().value(),
            code.value()
        );
    }
}

#[test]
fn sensitive_values_never_appear_in_violations() {
    let zc = Catalogue::shipped()
        .get(&ServiceCode::parse("ZC-LIANGXIANG").unwrap())
        .unwrap()
        .clone();
    let violations = validate_form(
        &zc,
        &answers(&[
            (
                "subsidies",
                Answer::Choices(vec!["护理补贴 care subsidy".into()]),
            ),
            (
                "certificate_number",
                Answer::Text("51010119900101123442".into()),
            ),
            ("disability_grade", Answer::Text("五级 secret".into())),
        ]),
    )
    .unwrap_err();
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    assert!(
        message.contains("disability_grade value \"(sensitive value hidden)\" is not allowed"),
        "{message}"
    );
    assert!(!message.contains("secret"));
}

/// Issue 16, item 18: a service names the sites offering it ("*" by default) and the
/// materials it asks for; a bad material or an empty site list is a catalogue error.
#[test]
fn services_name_their_sites_and_materials() {
    let toml = |extra: &str| {
        format!(
            r#"
[[service]]
code = "SQ-TEST"
version = 1
category = "社区"
name_zh = "测试"
name_en = "Test"
description_zh = "测试服务"
description_en = "A test service"
approval_levels = 0
promised_days = 1
statutory_days = 2
{extra}

[[service.step]]
code = "done"
name_zh = "完成"
name_en = "Done"

[[service.material]]
code = "id_card"
name_zh = "身份证"
name_en = "Identity card"
description_zh = "本人身份证原件。"
"#
        )
    };
    let catalogue = Catalogue::from_toml_str(&toml(r#"sites = ["site-x"]"#)).unwrap();
    let service = catalogue
        .get(&ServiceCode::parse("SQ-TEST").unwrap())
        .unwrap();
    assert!(service.offered_at("site-x"));
    assert!(!service.offered_at("site-y"));
    assert_eq!(service.materials.len(), 1);
    assert!(service.materials[0].required);
    let everywhere = Catalogue::from_toml_str(&toml("")).unwrap();
    let service = everywhere
        .get(&ServiceCode::parse("SQ-TEST").unwrap())
        .unwrap();
    assert!(service.offered_at("any-site"));
    assert!(Catalogue::from_toml_str(&toml("sites = []")).is_err());
}
