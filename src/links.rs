//! Signed project links: read-only access to one project's page and JSON without an account.
//!
//! A link carries `key=v1.<project, base64url>.<expiry, epoch seconds>.<key id>.<HMAC-SHA256,
//! base64url>`; the MAC covers the version, the project, the expiry and the key id, so none of
//! them can be changed without the key. Several keys are accepted (`[links] keys`), the first
//! signs: adding a new key first and removing the old one after the links' lifetime rotates keys
//! without breaking links in flight. A refusal says which check failed and what to do, and
//! never shows data. HMAC from `ring` (already in the tree through rustls), compared in
//! constant time by `ring::hmac::verify`.

use crate::secret::{Secret, SecretSource};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::Deserialize;
use std::fmt;

/// Default lifetime of a link: 35 days (a monthly digest's link outlives the next one).
pub const DEFAULT_LIFETIME_DAYS: u32 = 35;
/// Shortest key accepted, in bytes (HMAC-SHA256's block of security).
const MIN_KEY_BYTES: usize = 32;
const VERSION: &str = "v1";

/// One key of `[links] keys` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    id: String,
    #[serde(default)]
    key_env: Option<String>,
    #[serde(default)]
    key_file: Option<std::path::PathBuf>,
}

/// The `[links]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLinks {
    keys: Vec<RawKey>,
    #[serde(default = "default_lifetime")]
    lifetime_days: u32,
}

fn default_lifetime() -> u32 {
    DEFAULT_LIFETIME_DAYS
}

/// A configured key: its id and where its secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySetting {
    /// Named in every link it signs.
    pub id: String,
    /// The secret (env or file; never inline).
    pub source: SecretSource,
}

/// `[links]`, validated: the keys (the first signs) and the lifetime of new links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// Accepted keys, the signing one first.
    pub keys: Vec<KeySetting>,
    /// Lifetime of a new link.
    pub lifetime_days: u32,
}

impl RawLinks {
    /// Validate; `resolve` makes a relative `key_file` relative to the configuration file.
    pub(crate) fn validate(self, resolve: impl Fn(&std::path::Path) -> std::path::PathBuf) -> Result<LinkSettings, String> {
        if self.keys.is_empty() {
            return Err("links.keys: give at least one key ({ id = \"…\", key_env = \"…\" } or key_file)".into());
        }
        if self.lifetime_days == 0 || self.lifetime_days > 366 {
            return Err(format!("links.lifetime_days: {} is not between 1 and 366", self.lifetime_days));
        }
        let mut keys: Vec<KeySetting> = Vec::new();
        for (i, k) in self.keys.into_iter().enumerate() {
            let at = format!("links.keys[{i}]");
            if k.id.is_empty() || !k.id.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
                return Err(format!("{at}.id: {:?}: use letters, digits, `-` or `_`", k.id));
            }
            if keys.iter().any(|x| x.id == k.id) {
                return Err(format!("{at}.id: {:?} is given twice", k.id));
            }
            let source = SecretSource::from_keys(&at, "key", k.key_env, k.key_file.map(|f| resolve(&f)))?
                .ok_or_else(|| format!("{at}: give key_env or key_file"))?;
            keys.push(KeySetting { id: k.id, source });
        }
        Ok(LinkSettings { keys, lifetime_days: self.lifetime_days })
    }
}

/// The keys, read (at start and at each reload, like the API token).
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, ring::hmac::Key)>,
    lifetime_days: u32,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "Keyring({ids:?}, [redacted])")
    }
}

impl Keyring {
    /// Read every key; an unreadable or short key is an error naming it (never showing it).
    pub fn load(s: &LinkSettings) -> Result<Keyring, String> {
        let mut keys = Vec::new();
        for (i, k) in s.keys.iter().enumerate() {
            let secret: Secret = k.source.read_as(&format!("links.keys[{i}]"), "key")?;
            let bytes = secret.expose().trim().as_bytes();
            if bytes.len() < MIN_KEY_BYTES {
                return Err(format!(
                    "links.keys[{i}] ({}): the key from {} has {} bytes; use at least {MIN_KEY_BYTES} (e.g. `openssl rand -base64 48`)",
                    k.id,
                    k.source.describe(),
                    bytes.len()
                ));
            }
            keys.push((k.id.clone(), ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes)));
        }
        Ok(Keyring { keys, lifetime_days: s.lifetime_days })
    }

    /// A keyring from raw keys (tests).
    #[cfg(test)]
    fn of(keys: &[(&str, &[u8])]) -> Keyring {
        Keyring { keys: keys.iter().map(|(id, k)| (id.to_string(), ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k))).collect(), lifetime_days: DEFAULT_LIFETIME_DAYS }
    }

    /// Lifetime of new links, seconds.
    pub fn lifetime_s(&self) -> i64 {
        i64::from(self.lifetime_days) * 86_400
    }

    /// The `key=` value of a link to `project` expiring at `expires_s` (epoch seconds), signed
    /// with the first key.
    pub fn sign(&self, project: &str, expires_s: i64) -> String {
        let (id, key) = &self.keys[0];
        let tag = ring::hmac::sign(key, message(project, expires_s, id).as_bytes());
        format!("{VERSION}.{}.{expires_s}.{id}.{}", B64.encode(project), B64.encode(tag.as_ref()))
    }

    /// Check a presented `key=` value for `project` at `now_s`: the project it grants when
    /// valid, else why not.
    pub fn verify(&self, token: &str, project: &str, now_s: i64) -> Result<String, Refusal> {
        let t = Token::parse(token).ok_or(Refusal::Malformed)?;
        let Some((_, key)) = self.keys.iter().find(|(k, _)| k == t.key_id) else { return Err(Refusal::UnknownKey(t.key_id.to_string())) };
        ring::hmac::verify(key, message(&t.project, t.expires_s, t.key_id).as_bytes(), &t.mac).map_err(|_| Refusal::Tampered)?;
        if now_s >= t.expires_s {
            return Err(Refusal::Expired { project: t.project, expired_s: t.expires_s });
        }
        if t.project != project {
            return Err(Refusal::OtherProject { granted: t.project });
        }
        Ok(t.project)
    }

    /// The project a valid token grants, whatever path it is presented on (for the routes that
    /// are not a project's: they refuse it, naming the project it is for).
    pub fn granted(&self, token: &str, now_s: i64) -> Result<String, Refusal> {
        let project = Token::parse(token).ok_or(Refusal::Malformed)?.project;
        self.verify(token, &project, now_s)
    }
}

/// A `key=` value taken apart (not yet verified): the one reader of the token format.
struct Token<'a> {
    project: String,
    expires_s: i64,
    key_id: &'a str,
    mac: Vec<u8>,
}

impl<'a> Token<'a> {
    fn parse(token: &'a str) -> Option<Token<'a>> {
        let parts: Vec<&str> = token.split('.').collect();
        let [version, p64, expiry, key_id, mac] = parts[..] else { return None };
        if version != VERSION {
            return None;
        }
        Some(Token {
            project: String::from_utf8(B64.decode(p64).ok()?).ok()?,
            expires_s: expiry.parse().ok()?,
            key_id,
            mac: B64.decode(mac).ok()?,
        })
    }
}

/// When a token says it expires (epoch seconds), for showing it; `None` if it is not one.
/// Says nothing of its validity: [`Keyring::verify`] does.
pub fn expiry_of(token: &str) -> Option<i64> {
    Token::parse(token).map(|t| t.expires_s)
}

/// What makes links: the public address and the keys, read from the configuration (`None`
/// without `[links]`). Built at start and at each reload, like the API token.
#[derive(Debug, Clone)]
pub struct LinkMaker {
    /// `[http] public_url`.
    pub public_url: String,
    /// The keys.
    pub keyring: Keyring,
}

impl LinkMaker {
    /// From `[links]` and `[http] public_url` (`config.links`, `config.http…public_url`):
    /// `Ok(None)` without `[links]`; an unreadable or short key is an error naming it.
    pub fn new(settings: Option<&LinkSettings>, public_url: Option<&str>) -> Result<Option<LinkMaker>, String> {
        let Some(settings) = settings else { return Ok(None) };
        let public_url = public_url.ok_or("links: signed links need [http] public_url")?.to_string();
        Ok(Some(LinkMaker { public_url, keyring: Keyring::load(settings)? }))
    }

    /// A link to `project` made at `now_s`, valid for the configured lifetime (or `days`),
    /// rounded up to the next UTC midnight so that every link made the same day is the same.
    pub fn link(&self, project: &str, now_s: i64, days: Option<u32>) -> Link {
        let lifetime = days.map_or_else(|| self.keyring.lifetime_s(), |d| i64::from(d) * 86_400);
        let expires_s = (now_s + lifetime).div_euclid(86_400) * 86_400 + 86_400;
        let token = self.keyring.sign(project, expires_s);
        Link { url: project_url(&self.public_url, project, &token), expires_s }
    }
}

/// A signed link and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Link {
    /// The whole URL to open.
    pub url: String,
    /// Expiry, epoch seconds.
    pub expires_s: i64,
}

/// The link itself: `{public_url}/projects/{project}?key={token}` (the project percent-encoded
/// as one path segment). Every researcher e-mail and `allocwatch link` print this.
pub fn project_url(public_url: &str, project: &str, token: &str) -> String {
    format!("{}/projects/{}?key={token}", public_url.trim_end_matches('/'), segment(project))
}

/// Percent-encoding of one URL path segment or query value (RFC 3986 unreserved characters
/// kept, everything else `%XX`).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the MAC covers.
fn message(project: &str, expires_s: i64, key_id: &str) -> String {
    format!("allocwatch-link\n{VERSION}\n{project}\n{expires_s}\n{key_id}")
}

/// Why a link is refused; each says what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a link allocwatch made (cut short, or not one at all).
    Malformed,
    /// Signed with a key this server no longer accepts (rotated out).
    UnknownKey(String),
    /// The project, expiry or key id was changed: the signature does not match.
    Tampered,
    /// Past its expiry.
    Expired {
        /// The project it was for.
        project: String,
        /// When it expired, epoch seconds.
        expired_s: i64,
    },
    /// Valid, but for another project than the one asked for.
    OtherProject {
        /// The project it is for.
        granted: String,
    },
}

impl Refusal {
    /// One sentence for the 403 page and the JSON error.
    pub fn explain(&self) -> String {
        match self {
            Refusal::Malformed => "This is not a complete allocwatch link: it may have been cut when copied. Open the link from the e-mail again, or ask the operations team for a new one.".into(),
            Refusal::UnknownKey(id) => format!("This link was signed with key {id:?}, which this server no longer accepts (keys are rotated). Ask the operations team for a new link; the next e-mail about your project also carries one."),
            Refusal::Tampered => "This link has been altered: its signature does not match the project, expiry or key it names. Use the link exactly as it was sent, or ask the operations team for a new one.".into(),
            Refusal::Expired { project, expired_s } => format!(
                "This link to project {project} expired on {}. The next e-mail about your project carries a new one, or ask the operations team (allocwatch link --project {project}).",
                crate::domain::time::rfc3339(*expired_s)
            ),
            Refusal::OtherProject { granted } => format!("This link opens project {granted} only, not this page. Follow the link to your project's page."),
        }
    }

    /// A short machine-readable reason.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnknownKey(_) => "unknown_key",
            Refusal::Tampered => "tampered",
            Refusal::Expired { .. } => "expired",
            Refusal::OtherProject { .. } => "other_project",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &[u8] = b"0123456789abcdef0123456789abcdef-one";
    const K2: &[u8] = b"0123456789abcdef0123456789abcdef-two";

    #[test]
    fn a_link_opens_its_project_until_it_expires() {
        let ring = Keyring::of(&[("k1", K1)]);
        let t = ring.sign("A01.x/é", 1_000);
        assert_eq!(ring.verify(&t, "A01.x/é", 999), Ok("A01.x/é".into()));
        assert_eq!(ring.granted(&t, 999), Ok("A01.x/é".into()));
        assert_eq!(ring.verify(&t, "A01.x/é", 1_000), Err(Refusal::Expired { project: "A01.x/é".into(), expired_s: 1_000 }));
        assert_eq!(ring.verify(&t, "B02", 999), Err(Refusal::OtherProject { granted: "A01.x/é".into() }));
    }

    #[test]
    fn every_changed_field_breaks_the_signature() {
        let ring = Keyring::of(&[("k1", K1), ("k2", K2)]);
        let t = ring.sign("A01", 1_000);
        let f: Vec<&str> = t.split('.').collect();
        let other_project = format!("{}.{}.{}.{}.{}", f[0], B64.encode("B02"), f[2], f[3], f[4]);
        assert_eq!(ring.verify(&other_project, "B02", 10), Err(Refusal::Tampered));
        let later = format!("{}.{}.{}.{}.{}", f[0], f[1], 99_999, f[3], f[4]);
        assert_eq!(ring.verify(&later, "A01", 10), Err(Refusal::Tampered));
        let other_key = format!("{}.{}.{}.{}.{}", f[0], f[1], f[2], "k2", f[4]);
        assert_eq!(ring.verify(&other_key, "A01", 10), Err(Refusal::Tampered));
        let mut mac = f[4].to_string();
        mac.replace_range(0..1, if mac.starts_with('A') { "B" } else { "A" });
        assert_eq!(ring.verify(&format!("{}.{}.{}.{}.{mac}", f[0], f[1], f[2], f[3]), "A01", 10), Err(Refusal::Tampered));
        for bad in ["", "v1", "v2.QTAx.1000.k1.xx", "v1.QTAx.soon.k1.xx", "v1.QTAx.1000.k1.x.y", "v1.!!.1000.k1.xx"] {
            assert_eq!(ring.verify(bad, "A01", 10), Err(Refusal::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn keys_rotate_new_signs_old_still_verifies_until_removed() {
        let old = Keyring::of(&[("2026-05", K1)]);
        let t_old = old.sign("A01", 1_000);
        let rotated = Keyring::of(&[("2026-11", K2), ("2026-05", K1)]);
        assert_eq!(rotated.verify(&t_old, "A01", 10), Ok("A01".into()));
        assert!(rotated.sign("A01", 1_000).contains(".2026-11."));
        let removed = Keyring::of(&[("2026-11", K2)]);
        assert_eq!(removed.verify(&t_old, "A01", 10), Err(Refusal::UnknownKey("2026-05".into())));
        assert!(Refusal::UnknownKey("2026-05".into()).explain().contains("no longer accepts"));
    }

    #[test]
    fn settings_name_the_key_at_fault() {
        let raw: RawLinks = toml::from_str("keys = []").unwrap();
        assert!(raw.validate(|p| p.to_path_buf()).unwrap_err().contains("links.keys"));
        let raw: RawLinks = toml::from_str("keys = [{ id = \"a b\", key_env = \"X\" }]").unwrap();
        assert!(raw.validate(|p| p.to_path_buf()).unwrap_err().contains("links.keys[0].id"));
        let raw: RawLinks = toml::from_str("keys = [{ id = \"a\", key_env = \"X\" }, { id = \"a\", key_env = \"Y\" }]").unwrap();
        assert!(raw.validate(|p| p.to_path_buf()).unwrap_err().contains("given twice"));
        let raw: RawLinks = toml::from_str("keys = [{ id = \"a\" }]").unwrap();
        assert!(raw.validate(|p| p.to_path_buf()).unwrap_err().contains("links.keys[0]"));
        let raw: RawLinks = toml::from_str("keys = [{ id = \"a\", key_env = \"AW_LINKS_UNIT_TEST_KEY\" }]").unwrap();
        let s = raw.validate(|p| p.to_path_buf()).unwrap();
        assert_eq!(s.lifetime_days, 35);
    }
}
