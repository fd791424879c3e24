//! Table-driven tests for `decide`, one row (or more) per harp-compat.md §7 H-id.
//! This file holds the harness; `paths` covers H-21..H-38 (path, metadata, management, bans),
//! `routes` covers H-41..H-70 (signed requests, sessions, routes, forwarding, client IP).

mod paths;
mod routes;

use std::net::IpAddr;

use ipnet::IpNet;

use super::*;
use crate::exapps::{
    classify_meta_response, parse_push, parse_record, AccessLevel, MetaFetch, State, UserAnswer,
    UserInfo,
};

const KEY: &str = "k3y";
const SECRET: &str = "s3cret";
const NOW: u64 = 1_000_000;
const LIFETIME_MS: u64 = 3_000;
const PEER: &str = "198.51.100.7";

/// Routes of the test app: admin `/admin`, then public `/pub`, user `/user`, a bad regex,
/// public `/later`, user `/bf` with a brute-force list.
const ROUTES: &str = r#"[
    {"url": "^/admin", "access_level": 2},
    {"url": "^/pub", "access_level": 0},
    {"url": "/user", "access_level": "1"},
    {"url": "(", "access_level": 0},
    {"url": "/later", "access_level": 0},
    {"url": "/bf", "access_level": 1, "bruteforce_protection": [401, 403, 70000]},
    {"url": "/api", "access_level": 0}
]"#;

fn record_json(version: &str) -> String {
    format!(
        r#"{{"exapp_token": "{SECRET}", "exapp_version": "{version}", "host": "127.0.0.1",
            "port": "23001", "routes": {ROUTES}, "extra": true}}"#
    )
}

struct World {
    key: Secret,
    trusted: Vec<IpNet>,
    state: State,
    now: u64,
}

impl World {
    fn new() -> World {
        World {
            key: Secret::new(KEY.into()),
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            state: State::new(LIFETIME_MS, 10, 300_000),
            now: NOW,
        }
    }

    /// A world where app `app` is cached (as after a push).
    fn with_app() -> World {
        let mut w = World::new();
        w.state
            .apply(parse_push("app", record_json("1.2.3").as_bytes()).unwrap());
        w
    }

    fn decide(&self, req: &Req) -> Decision {
        let (path, query) = split_target(req.target.as_bytes());
        let headers: Vec<(&str, &[u8])> = req
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_bytes()))
            .collect();
        let facts = Facts {
            path,
            query,
            headers: headers.as_slice(),
            peer_ip: req.peer.parse().unwrap(),
            pass_cookie: req.cookie.as_bytes(),
        };
        decide(&facts, &self.ctx(), &req.resume)
    }

    /// The decision's view of this world.
    fn ctx(&self) -> Context<'_> {
        Context {
            shared_key: &self.key,
            trusted_proxies: &self.trusted,
            state: &self.state,
            now_ms: self.now,
        }
    }

    /// Decide and apply the effects, as the proxy does.
    fn decide_apply(&mut self, req: &Req) -> Verdict {
        let d = self.decide(req);
        for e in d.effects {
            self.state.apply(e.into_update(self.now));
        }
        d.verdict
    }
}

#[derive(Clone)]
struct Req {
    target: String,
    headers: Vec<(&'static str, String)>,
    peer: &'static str,
    cookie: &'static str,
    resume: Resume,
}

fn req(target: &str) -> Req {
    Req {
        target: target.into(),
        headers: vec![],
        peer: PEER,
        cookie: "",
        resume: Resume::default(),
    }
}

impl Req {
    fn h(mut self, name: &'static str, value: &str) -> Req {
        self.headers.push((name, value.into()));
        self
    }
    fn key(self) -> Req {
        self.h("harp-shared-key", KEY)
    }
    fn peer(mut self, peer: &'static str) -> Req {
        self.peer = peer;
        self
    }
    fn cookie(mut self, c: &'static str) -> Req {
        self.cookie = c;
        self
    }
    fn meta(mut self, m: MetaFetch) -> Req {
        self.resume.meta = Some(m);
        self
    }
    fn user(mut self, u: UserAnswer) -> Req {
        self.resume.user = Some(u);
        self
    }
    /// All six AppAPI headers with the given key.
    fn signed(self, key: &str) -> Req {
        self.h("ex-app-version", "9.9.9")
            .h("ex-app-id", "app")
            .h("ex-app-host", "exapp.local")
            .h("ex-app-port", "23050")
            .h("authorization-app-api", "dXNlcjpzZWNyZXQ=")
            .h("harp-shared-key", key)
    }
}

fn user(id: &str, level: AccessLevel) -> UserAnswer {
    UserAnswer::User(UserInfo {
        user_id: id.into(),
        access_level: level,
    })
}

fn fail(ip: &str) -> Vec<Effect> {
    vec![Effect::RecordFailure { ip: ip.into() }]
}

fn forward(v: &Verdict) -> &Forward {
    match v {
        Verdict::ExApp(f) => f,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn header<'f>(f: &'f Forward, name: &str) -> &'f [u8] {
    &f.set_headers.iter().find(|(n, _)| *n == name).unwrap().1
}

const DROP: Verdict = Verdict::Drop;
const E401: Verdict = Verdict::Deny(DenyStatus::Unauthorized401);
const E403: Verdict = Verdict::Deny(DenyStatus::Forbidden403);
const E404: Verdict = Verdict::Deny(DenyStatus::NotFound404);
const E503: Verdict = Verdict::Deny(DenyStatus::Unavailable503);

/// Rows of (id, world, request, verdict, effects).
fn check_rows(rows: Vec<(&str, &World, Req, Verdict, Vec<Effect>)>) {
    for (id, world, r, verdict, effects) in rows {
        let d = world.decide(&r);
        assert_eq!(d.verdict, verdict, "{id}: {}", r.target);
        assert_eq!(d.effects, effects, "{id}: {}", r.target);
    }
}
