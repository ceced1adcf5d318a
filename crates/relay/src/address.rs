//! The NATS address the relay and anju-insight connect to, as an operator writes it: one
//! server or several separated by commas, each `nats://host:port` (or `tls://`, `ws://`,
//! `wss://`; a bare `host:port` means `nats://`), with the credentials NATS URLs carry,
//! `nats://user:password@host:port` or `nats://token@host:port`.
//!
//! async-nats takes neither from the string it is given: it parses the whole text as one
//! URL, and it sends only the credentials of its connect options, never those of the URL.
//! So this splits the list, moves the credentials into the options, and keeps a redacted
//! form (`nats://anju:***@host:4222`) for logs, errors and metrics, where a password must
//! never appear.

use std::fmt;

use url::Url;

const SCHEMES: [&str; 4] = ["nats", "tls", "ws", "wss"];

/// What a NATS URL authenticates with.
#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    UserPassword { user: String, password: String },
    Token(String),
}

/// Shows user names, never passwords or tokens.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// A parsed NATS address: the servers without their credentials, and the credentials.
#[derive(Clone)]
pub struct NatsAddress {
    servers: Vec<Url>,
    credentials: Option<Credentials>,
}

/// Why a NATS address was refused; its text never holds a password or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AddressError(String);

impl NatsAddress {
    /// Parses `text` (see the module docs). Credentials may be on one server or on
    /// several; where several give them they must be the same.
    pub fn parse(text: &str) -> Result<NatsAddress, AddressError> {
        let mut servers = Vec::new();
        let mut credentials: Option<Credentials> = None;
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(AddressError(if text.trim().is_empty() {
                    "the NATS address is empty; give nats://host:port, or several separated by commas".into()
                } else {
                    format!(
                        "the NATS address `{}` has an empty entry between commas",
                        redact_text(text)
                    )
                }));
            }
            let with_scheme = if part.contains("://") {
                part.to_string()
            } else {
                format!("nats://{part}")
            };
            let mut url = Url::parse(&with_scheme).map_err(|e| {
                AddressError(format!("`{}` is not a NATS URL: {e}", redact_text(part)))
            })?;
            if !SCHEMES.contains(&url.scheme()) {
                return Err(AddressError(format!(
                    "`{}` has the scheme `{}`; a NATS URL starts with nats://, tls://, ws:// or wss://",
                    redact_text(part),
                    url.scheme()
                )));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(AddressError(format!(
                    "`{}` names no host",
                    redact_text(part)
                )));
            }
            let user = decode(url.username(), part)?;
            let password = url.password().map(|p| decode(p, part)).transpose()?;
            let found = match (user.is_empty(), password) {
                (true, None) => None,
                (true, Some(_)) => {
                    return Err(AddressError(format!(
                        "`{}` gives a password but no user",
                        redact_text(part)
                    )))
                }
                (false, None) => Some(Credentials::Token(user)),
                (false, Some(password)) => Some(Credentials::UserPassword { user, password }),
            };
            if let Some(found) = found {
                match &credentials {
                    Some(earlier) if *earlier != found => {
                        return Err(AddressError(format!(
                            "the servers of `{}` give different credentials; one connection uses one set, so give the same on each (or on one)",
                            redact_text(text)
                        )));
                    }
                    _ => credentials = Some(found),
                }
                // Both always succeed on a URL with a host.
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            servers.push(url);
        }
        Ok(NatsAddress {
            servers,
            credentials,
        })
    }

    /// The servers, without credentials, for `ConnectOptions::connect`.
    pub fn servers(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|url| url.as_str().trim_end_matches('/').to_string())
            .collect()
    }

    /// Connect options carrying the address's credentials, if any.
    fn connect_options(&self) -> async_nats::ConnectOptions {
        match &self.credentials {
            None => async_nats::ConnectOptions::new(),
            Some(Credentials::UserPassword { user, password }) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Some(Credentials::Token(token)) => {
                async_nats::ConnectOptions::with_token(token.clone())
            }
        }
    }

    /// Connects to these servers with these credentials and `options`' other settings
    /// applied by `configure` (timeouts, names).
    pub async fn connect(
        &self,
        configure: impl FnOnce(async_nats::ConnectOptions) -> async_nats::ConnectOptions,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        configure(self.connect_options())
            .connect(self.servers())
            .await
    }
}

/// The address as it may be shown: user names kept, passwords and tokens as `***`.
impl fmt::Display for NatsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let userinfo = match &self.credentials {
            None => String::new(),
            Some(Credentials::UserPassword { user, .. }) => format!("{user}:***@"),
            Some(Credentials::Token(_)) => "***@".to_string(),
        };
        for (n, url) in self.servers.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            let text = url.as_str().trim_end_matches('/');
            match text.split_once("://") {
                Some((scheme, rest)) => write!(f, "{scheme}://{userinfo}{rest}")?,
                None => f.write_str(text)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for NatsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsAddress({self})")
    }
}

/// A configured NATS address as it may appear in logs, errors and metrics: parsed and
/// shown with passwords and tokens as `***`, or, when it does not parse, [`redact_text`].
pub fn shown_nats_url(text: &str) -> String {
    NatsAddress::parse(text)
        .map(|address| address.to_string())
        .unwrap_or_else(|_| redact_text(text))
}

/// `text` as it may be shown: whatever stands between a `://` (or the start) and the
/// last `@` of each entry becomes `***`. For text that did not parse.
pub fn redact_text(text: &str) -> String {
    text.split(',')
        .map(|part| {
            let Some(at) = part.rfind('@') else {
                return part.to_string();
            };
            let start = part.find("://").map_or(0, |i| i + 3);
            if start > at {
                return part.to_string();
            }
            format!("{}***{}", &part[..start], &part[at..])
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn decode(text: &str, part: &str) -> Result<String, AddressError> {
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| {
            AddressError(format!(
                "the credentials of `{}` are not UTF-8 once percent-decoded",
                redact_text(part)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> NatsAddress {
        NatsAddress::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn refused(text: &str) -> String {
        match NatsAddress::parse(text) {
            Ok(address) => panic!("{text} was taken as {address}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn one_server_or_several_with_the_scheme_defaulting_to_nats() {
        let address = parsed("nats://127.0.0.1:4222");
        assert_eq!(address.servers(), ["nats://127.0.0.1:4222"]);
        assert!(address.credentials.is_none());
        let address = parsed(" nats://a:4222, b:4223 ,tls://c.example:4443,ws://[::1]:8080");
        assert_eq!(
            address.servers(),
            [
                "nats://a:4222",
                "nats://b:4223",
                "tls://c.example:4443",
                "ws://[::1]:8080"
            ]
        );
        assert_eq!(
            address.to_string(),
            "nats://a:4222,nats://b:4223,tls://c.example:4443,ws://[::1]:8080"
        );
    }

    #[test]
    fn credentials_move_out_of_the_urls_and_are_shown_redacted() {
        let address = parsed("nats://anju:s3cr%40t@10.0.3.7:4222,nats://10.0.3.8:4222");
        assert_eq!(
            address.credentials,
            Some(Credentials::UserPassword {
                user: "anju".into(),
                password: "s3cr@t".into()
            })
        );
        assert_eq!(
            address.servers(),
            ["nats://10.0.3.7:4222", "nats://10.0.3.8:4222"]
        );
        let shown = address.to_string();
        assert_eq!(
            shown,
            "nats://anju:***@10.0.3.7:4222,nats://anju:***@10.0.3.8:4222"
        );
        assert!(!format!("{address:?}").contains("s3cr"));

        let address = parsed("tok3n@127.0.0.1:4222");
        assert_eq!(
            address.credentials,
            Some(Credentials::Token("tok3n".into()))
        );
        assert_eq!(address.servers(), ["nats://127.0.0.1:4222"]);
        assert_eq!(address.to_string(), "nats://***@127.0.0.1:4222");

        // The same credentials on every server are one set.
        let address = parsed("nats://u:p@a:1,nats://u:p@b:2");
        assert_eq!(address.servers(), ["nats://a:1", "nats://b:2"]);
    }

    #[test]
    fn bad_addresses_are_refused_by_name_without_their_secrets() {
        for (text, expected) in [
            ("", "the NATS address is empty"),
            ("  ", "the NATS address is empty"),
            (
                "nats://a:4222,,nats://b:4222",
                "an empty entry between commas",
            ),
            ("http://a:4222", "has the scheme `http`"),
            ("nats://a:notaport", "is not a NATS URL"),
            ("nats://:secret@a:4222", "gives a password but no user"),
            (
                "nats://u:pw1@a:1,nats://u:pw2@b:2",
                "give different credentials",
            ),
            (
                "nats://u:pw1@a:1,nats://other@b:2",
                "give different credentials",
            ),
        ] {
            let message = refused(text);
            assert!(message.contains(expected), "{text}: {message}");
            for secret in ["secret", "pw1", "pw2"] {
                assert!(!message.contains(secret), "{text}: {message}");
            }
        }
    }

    #[test]
    fn unparsed_text_is_redacted_between_the_scheme_and_the_last_at() {
        assert_eq!(redact_text("nats://u:p@w@h:1"), "nats://***@h:1");
        assert_eq!(redact_text("u:p@h:1,nats://h:2"), "***@h:1,nats://h:2");
        assert_eq!(redact_text("nats://h:1"), "nats://h:1");
    }
}
