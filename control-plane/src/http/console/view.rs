//! What the console's templates show: view models built from domain types, and
//! the formatting every page shares (times, badges, banners, masked keys).
//! Templates live in `control-plane/templates/console/` and are compiled in
//! (askama), escaping every value.

use crate::domain::audit::AuditRecord;
use crate::domain::license::{License, State, Status};
use crate::domain::user::{Permission, Role};
use crate::service::Session;
use askama::Template;
use keys::UnixTime;

/// `YYYY-MM-DD HH:MM UTC`, the console's one time format.
pub fn time(at: UnixTime) -> String {
    let text = at.to_rfc3339();
    match text.get(..16) {
        Some(minutes) => format!("{} UTC", minutes.replacen('T', " ", 1)),
        None => text,
    }
}

pub fn time_or(at: Option<UnixTime>, none: &str) -> String {
    at.map_or_else(|| none.to_owned(), time)
}

/// The end of a `YYYY-MM-DD` day, UTC (a subscription that "ends on" a date
/// runs through it).
pub fn end_of_day(date: &str) -> Option<UnixTime> {
    let start = UnixTime::parse_rfc3339(&format!("{}T00:00:00Z", date.trim()))?;
    Some(start.plus(86_400))
}

/// The start of a `YYYY-MM-DD` day, UTC.
pub fn start_of_day(date: &str) -> Option<UnixTime> {
    UnixTime::parse_rfc3339(&format!("{}T00:00:00Z", date.trim()))
}

/// A duration in words: "14 days", "60 s".
pub fn span(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 && s > 0 => format!("{} days", s / 86_400),
        s if s % 3600 == 0 && s > 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `pk_•••…•Ab3f`: the key's prefix and its last four characters.
pub fn masked_key(hint: Option<&str>) -> String {
    format!("pk_•••…•{}", hint.unwrap_or("••••"))
}

/// The badge text and CSS class of a status.
pub fn badge(status: Status) -> (String, &'static str) {
    (status.as_str().to_uppercase(), status.as_str())
}

/// A customer-facing banner (DESIGN.md "Banners", the seeds' wording).
#[derive(Debug, Clone)]
pub struct Banner {
    pub kind: &'static str,
    pub text: String,
}

/// The banner a customer sees for a license, if any.
pub fn banner(license: &License) -> Option<Banner> {
    match license.state {
        State::Grace { until } => Some(Banner {
            kind: "grace",
            text: format!(
                "License in grace period. Service will stop on {}. Contact your administrator.",
                time(until)
            ),
        }),
        // The appliance shows the same red banner for both (appliance
        // `eval::banner`): to the customer, a lapsed subscription and a
        // finished revoke both mean "contact your administrator".
        State::Expired | State::Suspended => Some(Banner {
            kind: "expired",
            text: "License expired. Contact your administrator to restore service.".into(),
        }),
        State::Issued | State::Active => None,
    }
}

/// What every signed-in page's frame shows.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub page: &'static str,
    pub user_name: String,
    pub role: &'static str,
    pub customer: Option<String>,
    pub csrf: String,
    pub can_issue: bool,
    pub is_staff: bool,
    pub can_manage: bool,
    pub flash: Option<String>,
}

impl Chrome {
    pub fn new(page: &'static str, session: &Session) -> Chrome {
        let role = session.user.role;
        Chrome {
            page,
            user_name: session.user.name.clone(),
            role: role.as_str(),
            customer: session.user.customer.clone(),
            csrf: session.csrf.clone(),
            can_issue: role.allows(Permission::LicenseIssue),
            is_staff: role != Role::Customer,
            can_manage: role.allows(Permission::SigningManage),
            flash: None,
        }
    }

    pub fn with_flash(mut self, flash: Option<String>) -> Chrome {
        self.flash = flash;
        self
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct LoginPage {
    pub error: Option<String>,
    pub csrf: String,
    pub username: String,
}

/// An error page for a request without a session frame.
#[derive(Template)]
#[template(path = "console/bare.html")]
pub struct Bare {
    pub heading: String,
    pub message: String,
}

#[derive(Debug)]
pub struct Row {
    pub id: String,
    pub customer: String,
    pub product: String,
    pub status: String,
    pub status_class: &'static str,
    pub last_heartbeat: String,
    pub version: String,
    pub ip: String,
    pub lease_end: String,
}

impl Row {
    pub fn of(license: &License) -> Row {
        let (status, status_class) = badge(license.state.status());
        Row {
            id: license.id.to_string(),
            customer: license.customer.clone(),
            product: license.entitlements.product.clone(),
            status,
            status_class,
            last_heartbeat: time_or(license.last_seen.as_ref().map(|s| s.at), "never"),
            version: license
                .last_seen
                .as_ref()
                .map_or_else(|| "—".to_owned(), |s| s.version.clone()),
            ip: license
                .last_seen
                .as_ref()
                .map_or_else(|| "—".to_owned(), |s| s.ip.clone()),
            lease_end: time_or(license.lease_expires_at, "—"),
        }
    }
}

#[derive(Template)]
#[template(path = "console/licenses.html")]
pub struct Licenses {
    pub chrome: Chrome,
    pub banners: Vec<Banner>,
    pub statuses: Vec<(&'static str, String)>,
    pub filter_status: String,
    pub filter_customer: String,
    pub rows: Vec<Row>,
    pub next: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct NewLicenseForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub customer: String,
    #[serde(default)]
    pub product: String,
    #[serde(default)]
    pub seats: String,
    #[serde(default)]
    pub features: String,
    #[serde(default)]
    pub subscription_ends: String,
}

#[derive(Template)]
#[template(path = "console/license_new.html")]
pub struct LicenseNew {
    pub chrome: Chrome,
    pub error: Option<String>,
    pub form: NewLicenseForm,
}

/// A key shown once: a new license's, or a regenerated one.
#[derive(Template)]
#[template(path = "console/new_key.html")]
pub struct NewKey {
    pub chrome: Chrome,
    pub heading: &'static str,
    pub id: String,
    pub key: String,
}

pub struct KeyView {
    pub text: String,
    pub revealed: bool,
}

pub struct CardView {
    pub id: String,
    pub customer: String,
    pub product: String,
    pub entitlements: String,
    pub status: String,
    pub status_class: &'static str,
    pub installed_version: String,
    pub last_heartbeat: String,
    pub grace_expires: Option<String>,
    pub subscription_ends: String,
    pub lease_end: String,
    pub device: String,
    pub fingerprint: Vec<(String, String)>,
    pub bound_at: String,
    pub created_at: String,
}

impl CardView {
    pub fn of(license: &License) -> CardView {
        let row = Row::of(license);
        let e = &license.entitlements;
        let mut entitlements = Vec::new();
        entitlements.extend(e.limits.iter().map(|(k, v)| format!("{k}: {v}")));
        if !e.features.is_empty() {
            entitlements.push(format!("features: {}", e.features.join(", ")));
        }
        CardView {
            id: row.id,
            customer: row.customer,
            product: row.product,
            entitlements: if entitlements.is_empty() {
                "—".into()
            } else {
                entitlements.join(" · ")
            },
            status: row.status,
            status_class: row.status_class,
            installed_version: row.version,
            last_heartbeat: match &license.last_seen {
                Some(seen) => format!("{} from {}", time(seen.at), seen.ip),
                None => "never".into(),
            },
            grace_expires: license.state.grace_until().map(time),
            subscription_ends: time_or(license.subscription_ends_at, "no end"),
            lease_end: row.lease_end,
            device: license
                .binding
                .device_key
                .clone()
                .unwrap_or_else(|| "none yet".into()),
            fingerprint: license
                .binding
                .components
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.chars().take(16).collect::<String>() + "…"))
                .collect(),
            bound_at: time_or(license.binding.bound_at, "—"),
            created_at: time(license.created_at),
        }
    }
}

pub struct ActionLink {
    pub action: &'static str,
    pub label: &'static str,
    pub danger: bool,
}

pub struct AuditRow {
    pub seq: u64,
    pub at: String,
    pub action: String,
    pub target: String,
    pub actor: String,
    pub ip: String,
    pub metadata: String,
}

impl AuditRow {
    pub fn of(record: &AuditRecord) -> AuditRow {
        let e = &record.event;
        AuditRow {
            seq: record.seq,
            at: time(record.at),
            action: e.action.clone(),
            target: e.target.clone(),
            actor: e.actor_name.clone(),
            ip: e.ip.clone(),
            metadata: if e.metadata.as_object().is_some_and(|m| m.is_empty()) {
                String::new()
            } else {
                e.metadata.to_string()
            },
        }
    }
}

#[derive(Template)]
#[template(path = "console/card.html")]
pub struct Card {
    pub chrome: Chrome,
    pub card: CardView,
    pub banners: Vec<Banner>,
    pub key: Option<KeyView>,
    pub can_reveal: bool,
    pub actions: Vec<ActionLink>,
    pub audit: Vec<AuditRow>,
}

#[derive(Template)]
#[template(path = "console/confirm.html")]
pub struct Confirm {
    pub chrome: Chrome,
    pub id: String,
    pub action: &'static str,
    pub label: &'static str,
    pub explanation: &'static str,
    pub danger: bool,
    pub grace_days: u32,
}

pub struct KeyRow {
    pub kid: String,
    pub role: &'static str,
    pub state: &'static str,
    pub held: &'static str,
    pub cert_end: String,
    pub live_leases: u64,
    pub actions: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/signing.html")]
pub struct Signing {
    pub chrome: Chrome,
    pub created: Option<String>,
    pub keys: Vec<KeyRow>,
}

pub struct Clone {
    pub at: String,
    pub license: String,
    pub ip: String,
    pub why: String,
}

pub struct Group {
    pub id: &'static str,
    pub title: &'static str,
    pub total: usize,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "console/heartbeats.html")]
pub struct Heartbeats {
    pub chrome: Chrome,
    pub interval: String,
    pub offline_after: String,
    pub clones: Vec<Clone>,
    pub groups: Vec<Group>,
}

pub struct SettingsView {
    pub offline_window_days: String,
    pub heartbeat_interval_secs: u32,
    pub default_grace_days: u32,
    pub exact: bool,
    pub k: u32,
    pub clock_skew_tolerance_secs: u32,
    pub airgap_offline_window_days: String,
}

#[derive(Template)]
#[template(path = "console/settings.html")]
pub struct SettingsPage {
    pub chrome: Chrome,
    pub error: Option<String>,
    pub s: SettingsView,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditFilter {
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub before: Option<u64>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct Audit {
    pub chrome: Chrome,
    pub f: AuditFilter,
    pub rows: Vec<AuditRow>,
    pub next: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_dates_and_keys_format_as_the_console_shows_them() {
        let at = UnixTime::parse_rfc3339("2026-12-05T14:07:09Z").unwrap();
        assert_eq!(time(at), "2026-12-05 14:07 UTC");
        assert_eq!(
            time(end_of_day("2026-12-05").unwrap()),
            "2026-12-06 00:00 UTC"
        );
        assert_eq!(end_of_day("5 Dec"), None);
        assert_eq!(masked_key(Some("Ab3f")), "pk_•••…•Ab3f");
        assert_eq!(span(14 * 86_400), "14 days");
        assert_eq!(span(60), "1 min");
        assert_eq!(span(61), "61 s");
    }
}
