//! Finding a resident's requests by identity number, for staff who checked the card:
//! the keyed digest a submission records instead of the number, the look-up within
//! the caller's scope, and the audit record every look-up leaves in the log.
//!
//! The number itself is never kept: a submission records HMAC-SHA256 digests keyed by
//! the node's secret (`keys/secret`, the one resident ids are derived with), and a
//! look-up computes the same digest and asks the read models for it. An identity
//! number has few possible values (a birth date, a region, three digits), so a hash
//! without the key could be reversed by trying them all; with the key it cannot.

use crate::app::Application;
use crate::error::AppError;
use crate::input::parse_id_number;
use crate::keys::KeyStore;
use crate::seal;
use anju_domain::{
    Actor, ActorId, Category, FieldViolation, Problem, Request, Role, Scope, SiteId, Timestamp,
};
use anju_eventlog::{ExpectedVersion, Metadata, NewEvent};
use serde::{Deserialize, Serialize};

/// The log stream the look-ups' audit records go to. Read it with
/// `EventLogService.ReadStream` (admin) or
/// `anju tail --prefix audit-identity-lookups --from 0 --no-follow`.
pub const IDENTITY_AUDIT_STREAM: &str = "audit-identity-lookups";

/// The audit record's event type.
pub const IDENTITY_AUDIT_EVENT: &str = "RequestsFoundByIdentity";

/// The longest `reason` a look-up may give, in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// The HMAC domain of identity-number digests; changing it orphans every digest kept.
const DIGEST_DOMAIN: &[u8] = b"anju:id-number";

/// The digest a request records for an identity number already parsed (18 characters,
/// check character uppercase): 64 lowercase hex characters.
pub(crate) fn id_number_digest(keys: &KeyStore, id_number: &str) -> String {
    keys.keyed_hash(DIGEST_DOMAIN, &[id_number.as_bytes()])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What one look-up recorded in [`IDENTITY_AUDIT_STREAM`]: who asked, with what
/// authority, why, when, and which requests they were shown. It holds neither the
/// identity number nor its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityLookupAudit {
    pub by: ActorId,
    pub role: Role,
    pub sites: Scope<SiteId>,
    pub categories: Scope<Category>,
    pub reason: String,
    pub at: Timestamp,
    /// How many requests were shown.
    pub found: u32,
    /// The requests shown, by id.
    pub request_ids: Vec<String>,
}

/// One request a look-up found, as the read models hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityMatch {
    pub request: Request,
    /// Stream version of the request's last event.
    pub version: u64,
}

/// What a look-up answers.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundByIdentity {
    /// Oldest submission first.
    pub requests: Vec<IdentityMatch>,
    /// Log position of the audit record.
    pub audit_position: u64,
}

/// The reason a look-up gives: 1 to [`MAX_REASON_CHARS`] printable characters on one
/// line, holding neither the identity number nor any run of 11 or more digits (a phone
/// or an identity number typed into the wrong box would end up in the audit record).
fn parse_reason(text: &str, id_number: Option<&str>) -> Result<String, FieldViolation> {
    let reason = text.trim();
    let length = reason.chars().count();
    if length == 0 {
        return Err(FieldViolation::new("reason", Problem::Missing));
    }
    if length > MAX_REASON_CHARS {
        return Err(FieldViolation::new(
            "reason",
            Problem::TooLong {
                max_length: MAX_REASON_CHARS as u32,
                length: length as u32,
            },
        ));
    }
    if let Some(c) = anju_domain::refused_char(reason, anju_domain::Lines::One) {
        return Err(FieldViolation::new(
            "reason",
            Problem::Unprintable {
                character: anju_domain::text::code_point(c),
            },
        ));
    }
    let mut run = 0;
    let long_digits = reason.chars().any(|c| {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        run >= 11
    });
    let holds_number = id_number.is_some_and(|id| reason.to_ascii_uppercase().contains(id));
    if long_digits || holds_number {
        return Err(FieldViolation::new(
            "reason",
            Problem::Other {
                message: "must not hold an identity or phone number; it is kept in the audit \
                          record"
                    .into(),
            },
        ));
    }
    Ok(reason.to_string())
}

impl Application {
    /// The requests whose applicant named this identity number (as the applicant's
    /// number or as the form's `id_number` answer) that the caller may work on:
    /// caseworkers their sites and categories, supervisors their sites, admins all.
    /// Requests of an erased resident are not found, nor requests submitted before
    /// digests were kept. Every look-up that passes validation is recorded in
    /// [`IDENTITY_AUDIT_STREAM`] before it answers; without the record there is no
    /// answer. Residents, kiosks, managers and the system may not look up (Forbidden).
    pub async fn find_by_identity(
        &self,
        actor: &Actor,
        identity_number: &str,
        reason: &str,
    ) -> Result<FoundByIdentity, AppError> {
        if !matches!(
            actor.role,
            Role::Caseworker | Role::Supervisor | Role::Admin
        ) {
            return Err(AppError::Forbidden(format!(
                "a {} may not look requests up by identity number",
                actor.role
            )));
        }
        let mut violations = Vec::new();
        let id_number = match identity_number.trim() {
            "" => {
                violations.push(FieldViolation::new("identity_number", Problem::Missing));
                None
            }
            text => match parse_id_number("identity_number", text) {
                Ok(id) => Some(id),
                Err(v) => {
                    violations.push(v);
                    None
                }
            },
        };
        let reason = match parse_reason(reason, id_number.as_deref()) {
            Ok(reason) => reason,
            Err(v) => {
                violations.push(v);
                String::new()
            }
        };
        let Some(id_number) = id_number.filter(|_| violations.is_empty()) else {
            return Err(AppError::Invalid(violations));
        };
        let keys = &self.inner.keys;
        let digest = id_number_digest(keys, &id_number);
        let projections = &self.inner.projections;
        let ids = projections
            .request_ids_by_identity(&digest)
            .map_err(|e| AppError::unavailable(format!("read models failed: {e}")))?;
        let mut requests = Vec::new();
        for id in ids {
            let Some(view) = projections
                .request(&id)
                .map_err(|e| AppError::unavailable(format!("read models failed: {e}")))?
            else {
                continue;
            };
            let Some(request) = view.state.request() else {
                continue;
            };
            let in_scope = match actor.role {
                Role::Admin => true,
                Role::Supervisor => actor.sites.contains(&request.site),
                _ => {
                    actor.sites.contains(&request.site)
                        && actor.categories.contains(&request.category)
                }
            };
            // An erased resident's contact no longer opens; their requests stay in the
            // log but are not found by their number any more.
            let erased = seal::sealed_key_id(&request.applicant.sealed_contact)
                .is_none_or(|key| keys.get(key).is_none());
            if in_scope && !erased {
                requests.push(IdentityMatch {
                    request: request.clone(),
                    version: view.version,
                });
            }
        }
        requests.sort_by_key(|m| (m.request.submitted_at, m.request.id.0));
        let at = self.now();
        let audit = IdentityLookupAudit {
            by: actor.id.clone(),
            role: actor.role,
            sites: actor.sites.clone(),
            categories: actor.categories.clone(),
            reason,
            at,
            found: requests.len() as u32,
            request_ids: requests.iter().map(|m| m.request.id.to_string()).collect(),
        };
        let audit_position = self.append_audit(actor, &audit).await?;
        tracing::info!(
            by = %actor.id,
            role = %actor.role,
            found = audit.found,
            audit_position,
            "requests looked up by identity number"
        );
        Ok(FoundByIdentity {
            requests,
            audit_position,
        })
    }

    async fn append_audit(
        &self,
        actor: &Actor,
        audit: &IdentityLookupAudit,
    ) -> Result<u64, AppError> {
        let payload = serde_json::to_vec(audit).map_err(AppError::unavailable)?;
        let mut random = [0u8; 10];
        getrandom::fill(&mut random).map_err(|e| {
            AppError::unavailable(format!("operating system randomness failed: {e}"))
        })?;
        let millis = u64::try_from(audit.at.0).unwrap_or(0);
        let event = NewEvent {
            event_id: uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid(),
            event_type: IDENTITY_AUDIT_EVENT.to_string(),
            schema_version: 1,
            metadata: Metadata {
                correlation_id: None,
                causation_id: None,
                actor: actor.id.0.clone(),
            },
            payload,
        };
        let appended = self
            .inner
            .log
            .append(IDENTITY_AUDIT_STREAM, ExpectedVersion::Any, vec![event])
            .await
            .map_err(|e| AppError::unavailable(format!("the audit record was not written: {e}")))?;
        Ok(appended.last_position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short_printable_and_hold_no_numbers() {
        let id = "11010519491231002X";
        assert_eq!(
            parse_reason("  lost the receipt ", Some(id)).unwrap(),
            "lost the receipt"
        );
        let field = |r: Result<String, FieldViolation>| r.unwrap_err().field;
        assert_eq!(field(parse_reason(" ", Some(id))), "reason");
        assert_eq!(field(parse_reason(&"x".repeat(201), Some(id))), "reason");
        assert_eq!(field(parse_reason("a\u{1b}[2J", Some(id))), "reason");
        assert_eq!(field(parse_reason("phone 13800130427", Some(id))), "reason");
        assert_eq!(
            field(parse_reason("card 11010519491231002x", Some(id))),
            "reason"
        );
        assert!(parse_reason("room 3-2-501, 2026", Some(id)).is_ok());
    }
}
