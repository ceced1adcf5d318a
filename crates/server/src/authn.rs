//! Authentication at the edge: an interceptor that turns `authorization: Bearer ...`
//! into [`Claims`] in the request extensions, and the helpers handlers use to read
//! them and check role and site scope.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anju_auth::{AuthError, Claims, Role, Secret, VerifiedTokens};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{to_status, ApiError};
use crate::metrics::Metrics;

/// Verifies the bearer token of every call to an anju service. Health and reflection
/// are registered without it, so probes and tools need no token.
#[derive(Clone)]
pub struct AuthInterceptor {
    secret: Arc<Secret>,
    metrics: Arc<Metrics>,
    /// Shared by every service's interceptor.
    verified: Arc<VerifiedTokens>,
}

/// Verified tokens kept; more distinct live tokens than this only cost re-verifying.
const VERIFIED_TOKENS: usize = 16_384;

impl AuthInterceptor {
    pub fn new(secret: Arc<Secret>, metrics: Arc<Metrics>) -> AuthInterceptor {
        AuthInterceptor {
            secret,
            metrics,
            verified: Arc::new(VerifiedTokens::new(VERIFIED_TOKENS)),
        }
    }
}

fn now_unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads the bearer token from the `authorization` metadata.
fn bearer_token<T>(request: &Request<T>) -> Result<&str, AuthError> {
    let Some(value) = request.metadata().get("authorization") else {
        return Err(AuthError::Missing);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization header is not ascii".into()))?;
    let mut words = value.splitn(2, ' ');
    match (words.next(), words.next()) {
        (Some(scheme), Some(token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(AuthError::Malformed(
            "authorization must be `Bearer <token>`".into(),
        )),
    }
}

fn failure_reason(error: &AuthError) -> &'static str {
    match error {
        AuthError::Missing => "missing",
        AuthError::Malformed(_) => "malformed",
        AuthError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
        AuthError::BadSignature => "bad_signature",
        AuthError::Expired { .. } => "expired",
        AuthError::UnknownRole(_) => "unknown_role",
    }
}

impl Interceptor for AuthInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let verified = bearer_token(&request).and_then(|token| {
            self.verified
                .verify(&self.secret, token, now_unix_seconds())
        });
        match verified {
            Ok(claims) => {
                request.extensions_mut().insert(claims);
                Ok(request)
            }
            Err(error) => {
                let reason = failure_reason(&error);
                self.metrics.count_auth_failure(reason);
                tracing::info!(reason, "call refused: unauthenticated");
                Err(to_status(ApiError::Unauthenticated(error)))
            }
        }
    }
}

/// The verified claims of the call. Every anju service is behind
/// [`AuthInterceptor`], so absence means a wiring bug; it is still answered as
/// UNAUTHENTICATED rather than a panic.
pub fn claims<T>(request: &Request<T>) -> Result<&Claims, ApiError> {
    request
        .extensions()
        .get::<Claims>()
        .ok_or(ApiError::Unauthenticated(AuthError::Missing))
}

/// The claims, when the token's role is one of `roles`; PERMISSION_DENIED otherwise.
pub fn require_role<'a, T>(
    request: &'a Request<T>,
    roles: &[Role],
) -> Result<&'a Claims, ApiError> {
    let claims = claims(request)?;
    if claims.has_role(roles) {
        Ok(claims)
    } else {
        let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::PermissionDenied(format!(
            "role {} may not make this call; it needs one of: {}",
            claims.role,
            allowed.join(", ")
        )))
    }
}

/// PERMISSION_DENIED unless the token covers `site_id`.
pub fn require_site(claims: &Claims, site_id: &str) -> Result<(), ApiError> {
    if claims.covers_site(site_id) {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "token does not cover site {site_id:?}"
        )))
    }
}

/// PERMISSION_DENIED unless the token covers `category`.
pub fn require_category(claims: &Claims, category: &str) -> Result<(), ApiError> {
    if claims.covers_category(category) {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "token does not cover category {category:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Arc<Secret> {
        Arc::new(Secret::from_bytes(vec![1; 32]))
    }

    fn request_with(header: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = header {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    }

    fn token(role: Role, exp: u64) -> String {
        let claims = Claims {
            sub: "li".into(),
            role,
            sites: vec!["site-1".into()],
            categories: vec![],
            exp,
            iat: 0,
        };
        anju_auth::issue(&secret(), &claims)
    }

    #[test]
    fn valid_token_puts_claims_in_extensions() {
        let mut interceptor = AuthInterceptor::new(secret(), Arc::new(Metrics::new()));
        let header = format!(
            "Bearer {}",
            token(Role::Caseworker, now_unix_seconds() + 60)
        );
        let request = interceptor.call(request_with(Some(&header))).unwrap();
        let claims = require_role(&request, &[Role::Caseworker, Role::Supervisor]).unwrap();
        assert_eq!(claims.sub, "li");
        assert!(require_site(claims, "site-1").is_ok());
        assert!(matches!(
            require_site(claims, "site-2"),
            Err(ApiError::PermissionDenied(_))
        ));
        assert!(matches!(
            require_role(&request, &[Role::Admin]),
            Err(ApiError::PermissionDenied(_))
        ));
    }

    #[test]
    fn refusals_say_what_to_do() {
        let metrics = Arc::new(Metrics::new());
        let mut interceptor = AuthInterceptor::new(secret(), metrics.clone());
        let missing = interceptor.call(request_with(None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(
            missing.message().contains("anju token issue"),
            "{}",
            missing.message()
        );

        let expired = format!("Bearer {}", token(Role::Resident, 1));
        let expired = interceptor.call(request_with(Some(&expired))).unwrap_err();
        assert!(
            expired.message().contains("expired"),
            "{}",
            expired.message()
        );

        let basic = interceptor
            .call(request_with(Some("Basic abc")))
            .unwrap_err();
        assert_eq!(basic.code(), tonic::Code::Unauthenticated);
        assert!(metrics
            .render(0)
            .contains("anju_auth_failures_total{reason=\"expired\"} 1"));
    }
}
