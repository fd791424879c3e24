//! The ordered checks of harp-compat.md §3.3-§3.5 and §3.8, one function per stage.
//! `Run` carries the per-request facts; every stage returns the final `Verdict` or hands
//! over to the next stage. Failures are collected in `effects`, never applied here.

use std::rc::Rc;

use base64::Engine as _;

use super::path::{find_app_id, has_parent_segment, target_path};
use super::{
    client_ip, Context, Decision, DenyStatus, Effect, Facts, Forward, HeaderLookup, Resume, Verdict,
};
use crate::exapps::{
    parse_decimal_int, AccessLevel, ExAppRecord, Lookup, MetaFetch, UserAnswer, UserInfo,
};

/// The six headers that make a request AppAPI-signed (§3.5).
const SIGNED_HEADERS: [&str; 6] = [
    "ex-app-version",
    "ex-app-id",
    "ex-app-host",
    "ex-app-port",
    "authorization-app-api",
    "harp-shared-key",
];

/// ExApp endpoints only AppAPI may call (§3.3 step 8a).
const INTERNAL_ENDPOINTS: [&[u8]; 3] = [b"/heartbeat", b"/init", b"/enabled"];

/// Decide what to do with one request (see the module doc for the caller's loop).
pub fn decide<H: HeaderLookup + ?Sized>(
    facts: &Facts<'_, H>,
    ctx: &Context<'_>,
    resume: &Resume,
) -> Decision {
    let client_ip =
        client_ip::client_ip(facts.peer_ip, facts.headers, ctx.trusted_proxies).to_string();
    let key_ok = facts
        .headers
        .header("harp-shared-key")
        .is_some_and(|k| ctx.shared_key.matches(k.trim_ascii()));
    let mut run = Run {
        facts,
        ctx,
        resume,
        client_ip,
        key_ok,
        effects: Vec::new(),
    };
    let verdict = run.checks();
    Decision {
        verdict,
        effects: run.effects,
        client_ip: run.client_ip,
    }
}

/// Where the metadata for an app id stands.
enum Meta {
    Record(Rc<ExAppRecord>),
    /// Nextcloud said 401/404 (now or negative-cached).
    NotFound,
    /// Invalid body or any other error: 404 without a failure.
    Failed,
    Need,
}

struct Run<'r, 'a, H: HeaderLookup + ?Sized> {
    facts: &'r Facts<'a, H>,
    ctx: &'r Context<'r>,
    resume: &'r Resume,
    client_ip: String,
    /// The request carries the correct `harp-shared-key` ("trusted" in §3.9).
    key_ok: bool,
    effects: Vec<Effect>,
}

impl<H: HeaderLookup + ?Sized> Run<'_, '_, H> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.facts.headers.header(name).map(<[u8]>::trim_ascii)
    }

    fn fail(&mut self, ip: String) {
        self.effects.push(Effect::RecordFailure { ip });
    }

    fn fail_client(&mut self) {
        self.fail(self.client_ip.clone());
    }

    /// "Record failure unless trusted" (§3.9).
    fn fail_unless_trusted(&mut self) {
        if !self.key_ok {
            self.fail_client();
        }
    }

    /// §3.3 steps 1-6.
    fn checks(&mut self) -> Verdict {
        let path = self.facts.path;
        if self
            .ctx
            .state
            .bans
            .is_banned(&self.client_ip, self.ctx.now_ms)
        {
            return Verdict::Drop;
        }
        if has_parent_segment(path) {
            self.fail_unless_trusted();
            return Verdict::Drop;
        }
        let Some(app_id) = find_app_id(path) else {
            self.fail_unless_trusted();
            return Verdict::Deny(DenyStatus::NotFound404);
        };
        let target = target_path(path, app_id);
        if app_id == b"app_api" {
            return self.management(target);
        }
        let app = App {
            id: app_id,
            id_lc: String::from_utf8_lossy(app_id).to_lowercase(),
            target,
        };
        if SIGNED_HEADERS
            .iter()
            .all(|h| self.facts.headers.header(h).is_some())
        {
            return self.signed(&app);
        }
        self.user_request(&app)
    }

    /// §3.4: `/exapps/app_api/...` goes to the control API or a Docker engine port.
    fn management(&mut self, target: &[u8]) -> Verdict {
        if !self.key_ok {
            self.fail_client();
            return Verdict::Deny(DenyStatus::Unauthorized401);
        }
        let path_and_query = self.with_query(target);
        match self.header("docker-engine-port").filter(|v| !v.is_empty()) {
            Some(port) if !target.starts_with(b"/docker/") => {
                match parse_decimal_int(port).and_then(|p| u16::try_from(p).ok()) {
                    Some(port) => Verdict::Docker {
                        port,
                        path_and_query,
                    },
                    None => Verdict::Deny(DenyStatus::Unavailable503),
                }
            }
            _ => Verdict::Control { path_and_query },
        }
    }

    /// §3.5: AppAPI-signed; route and session checks are skipped.
    fn signed(&mut self, app: &App<'_>) -> Verdict {
        if !self.key_ok {
            // Quirk (§8 item 1): the failure goes to the TCP peer, not the client IP.
            self.fail(self.facts.peer_ip.to_canonical().to_string());
            return Verdict::Drop;
        }
        let record = match self.metadata(&app.id_lc) {
            Meta::Record(r) => r,
            Meta::Need => {
                return Verdict::NeedMetadata {
                    app_id_lc: app.id_lc.clone(),
                }
            }
            Meta::NotFound | Meta::Failed => match self.synthesized_record() {
                Some(r) => Rc::new(r),
                None => return Verdict::Deny(DenyStatus::Unavailable503),
            },
        };
        let token = self
            .header("authorization-app-api")
            .unwrap_or_default()
            .to_vec();
        self.forward(app, &record, token, Vec::new())
    }

    /// §3.5: the temporary record built from `ex-app-*` headers (not cached).
    fn synthesized_record(&self) -> Option<ExAppRecord> {
        let text =
            |name| String::from_utf8_lossy(self.header(name).unwrap_or_default()).into_owned();
        let port = parse_decimal_int(self.header("ex-app-port")?)?;
        Some(ExAppRecord {
            exapp_token: String::new(),
            exapp_version: text("ex-app-version"),
            host: text("ex-app-host"),
            port: u16::try_from(port).ok()?,
            routes: Vec::new(),
            resolved_host: String::new(),
        })
    }

    /// §3.3 step 7 through the cache (§3.6), then what the caller fetched.
    fn metadata(&self, app_id_lc: &str) -> Meta {
        match self.ctx.state.registry.lookup(app_id_lc, self.ctx.now_ms) {
            Lookup::Found(r) => Meta::Record(r),
            Lookup::NotFound => Meta::NotFound,
            Lookup::Miss => match &self.resume.meta {
                None => Meta::Need,
                Some(MetaFetch::Found(r)) => Meta::Record(Rc::new(r.clone())),
                Some(MetaFetch::NotFound) => Meta::NotFound,
                Some(MetaFetch::Invalid(_) | MetaFetch::Error(_)) => Meta::Failed,
            },
        }
    }

    /// §3.3 steps 7-10 for an ordinary (unsigned) request.
    fn user_request(&mut self, app: &App<'_>) -> Verdict {
        let record = match self.metadata(&app.id_lc) {
            Meta::Record(r) => r,
            Meta::Need => {
                return Verdict::NeedMetadata {
                    app_id_lc: app.id_lc.clone(),
                }
            }
            Meta::NotFound => {
                self.fail_unless_trusted();
                return Verdict::Deny(DenyStatus::NotFound404);
            }
            Meta::Failed => return Verdict::Deny(DenyStatus::NotFound404),
        };
        if INTERNAL_ENDPOINTS.contains(&app.target) {
            self.fail_client();
            return Verdict::Drop;
        }
        let user = match self.user(&app.id_lc) {
            Ok(user) => user,
            Err(verdict) => return verdict,
        };
        let Some(route) = record.routes.iter().find(|r| r.matches(app.target)) else {
            self.fail_client();
            return Verdict::Deny(DenyStatus::NotFound404);
        };
        let allowed = route.access_level == AccessLevel::Public
            || user
                .as_ref()
                .is_some_and(|u| route.access_level <= u.access_level);
        if !allowed {
            self.fail_client();
            return Verdict::Deny(DenyStatus::Forbidden403);
        }
        let user_id = user.as_ref().map_or("", |u| u.user_id.as_str());
        let token = app_api_token(user_id, &record.exapp_token);
        let statuses = route
            .bruteforce_protection
            .iter()
            .filter_map(|&s| u16::try_from(s).ok())
            .collect();
        self.forward(app, &record, token, statuses)
    }

    /// §3.3 step 8b / §3.8: `Ok(None)` = anonymous.
    fn user(&self, app_id_lc: &str) -> Result<Option<UserInfo>, Verdict> {
        let cookie = self.facts.pass_cookie;
        if cookie.is_empty() && self.facts.headers.header("authorization").is_none() {
            return Ok(None);
        }
        if let Some(user) = self.ctx.state.sessions.peek(cookie, self.ctx.now_ms) {
            return Ok(Some(user.clone()));
        }
        match &self.resume.user {
            None => Err(Verdict::NeedUser {
                app_id_lc: app_id_lc.to_string(),
                pass_cookie: cookie.to_vec(),
            }),
            Some(UserAnswer::User(u)) => Ok(Some(u.clone())),
            Some(UserAnswer::Anonymous) => Ok(None),
            Some(UserAnswer::Failed(_)) => Err(Verdict::Deny(DenyStatus::Unauthorized401)),
        }
    }

    /// The request-target sent to the ExApp. `/exapps/<app>` alone leaves an empty path,
    /// which is no valid origin-form target: it becomes `/` (routes still matched "").
    fn with_query(&self, target: &[u8]) -> Vec<u8> {
        let mut out = if target.is_empty() {
            b"/".to_vec()
        } else {
            target.to_vec()
        };
        if let Some(q) = self.facts.query {
            out.push(b'?');
            out.extend_from_slice(q);
        }
        out
    }

    /// §3.7.
    fn forward(
        &self,
        app: &App<'_>,
        record: &ExAppRecord,
        token: Vec<u8>,
        statuses: Vec<u16>,
    ) -> Verdict {
        Verdict::ExApp(Box::new(Forward {
            target_path: self.with_query(app.target),
            set_headers: [
                ("EX-APP-ID", app.id.to_vec()),
                ("EX-APP-VERSION", record.exapp_version.as_bytes().to_vec()),
                ("AUTHORIZATION-APP-API", token),
                ("AA-VERSION", b"32".to_vec()),
            ],
            app_id_lc: app.id_lc.clone(),
            host: record.host.clone(),
            resolved_host: Some(record.resolved_host.clone()).filter(|h| !h.is_empty()),
            port: record.port,
            bruteforce_statuses: statuses,
            client_ip: self.client_ip.clone(),
        }))
    }
}

/// The app id as found in the path and what follows from it.
struct App<'p> {
    /// Case as in the URL (sent as `EX-APP-ID`).
    id: &'p [u8],
    /// Registry / Nextcloud key.
    id_lc: String,
    target: &'p [u8],
}

/// §3.3 step 9: standard padded base64 of `<user_id>:<exapp_token>`.
pub fn app_api_token(user_id: &str, exapp_token: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(format!("{user_id}:{exapp_token}"))
        .into_bytes()
}
