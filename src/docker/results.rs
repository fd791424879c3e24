//! JSON result shapes AppAPI reads: `wait_for_start` (harp-compat.md §4.4.1, H-80) and
//! `image_remove` (§4.4, H-82). Pure: the wrappers feed in what the engine said.

use serde_json::{json, Value};

/// What one container inspect says about start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `State.Status`.
    pub status: String,
    /// `State.Health.Status`, `None` without a health check.
    pub health: Option<String>,
}

impl Observed {
    /// HaRP's state before the first inspect.
    pub fn unknown() -> Self {
        Observed {
            status: "unknown".into(),
            health: None,
        }
    }

    /// Read `State` from an inspect document.
    pub fn from_inspect(doc: &Value) -> Self {
        let state = &doc["State"];
        let status = state["Status"].as_str().unwrap_or("unknown").to_string();
        // Podman reports `Health.Status = ""` for containers without a health check where
        // Docker omits `Health`; both mean "no health check".
        let health = state["Health"]["Status"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_string);
        Observed { status, health }
    }
}

/// The answer for one observation, or `None` to keep polling (§4.4.1 table).
pub fn wait_verdict(o: &Observed) -> Option<Value> {
    let health = o.health.as_deref();
    match o.status.as_str() {
        "running" => match health {
            None | Some("healthy") => {
                Some(json!({ "started": true, "status": "running", "health": health }))
            }
            // Quirk kept (§8.12): unhealthy still counts as started.
            Some("unhealthy") => Some(json!({
                "started": true, "status": "running", "health": "unhealthy", "reason": "unhealthy"
            })),
            _ => None,
        },
        "paused" | "exited" | "dead" => Some(json!({
            "started": false,
            "status": o.status,
            "health": health,
            "reason": format!("non-recoverable state: {}", o.status),
        })),
        _ => None,
    }
}

/// Container vanished while waiting.
pub fn wait_not_found() -> Value {
    json!({ "started": false, "status": "not_found", "reason": "container not found" })
}

/// One inspect call timed out (`overall timeout`) or the polls ran out.
pub fn wait_gave_up(last: &Observed, reason: &str) -> Value {
    json!({ "started": false, "status": last.status, "health": last.health, "reason": reason })
}

pub const WAIT_REASON_CALL_TIMEOUT: &str = "overall timeout";
pub const WAIT_REASON_MAX_TRIES: &str = "timeout after max tries";

/// `image_remove` when the image does not exist (inspect or delete said 404).
pub fn image_not_found() -> Value {
    json!({ "deleted": true, "bytes_freed": 0, "reason": "not_found" })
}

/// `image_remove` when the image is used by a container (delete said 409).
pub fn image_in_use() -> Value {
    json!({ "deleted": false, "reason": "in_use" })
}

/// `image_remove` after a 200 from `DELETE /images/<ref>`: the inspected size counts only if
/// a layer was really deleted (an untag-only answer frees nothing).
pub fn image_deleted(size: u64, delete_answer: &Value) -> Value {
    let deleted_something = delete_answer
        .as_array()
        .is_some_and(|items| items.iter().any(|i| i.get("Deleted").is_some()));
    json!({ "deleted": true, "bytes_freed": if deleted_something { size } else { 0 } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(status: &str, health: Option<&str>) -> Observed {
        Observed {
            status: status.into(),
            health: health.map(str::to_string),
        }
    }

    /// H-80: one row per §4.4.1 line.
    #[test]
    fn h80_wait_verdicts() {
        let rows: Vec<(Observed, Option<Value>)> = vec![
            (
                obs("running", None),
                Some(json!({"started": true, "status": "running", "health": null})),
            ),
            (
                obs("running", Some("healthy")),
                Some(json!({"started": true, "status": "running", "health": "healthy"})),
            ),
            (
                obs("running", Some("unhealthy")),
                Some(
                    json!({"started": true, "status": "running", "health": "unhealthy", "reason": "unhealthy"}),
                ),
            ),
            (obs("running", Some("starting")), None),
            (obs("created", None), None),
            (obs("restarting", None), None),
            (
                obs("exited", None),
                Some(
                    json!({"started": false, "status": "exited", "health": null, "reason": "non-recoverable state: exited"}),
                ),
            ),
            (
                obs("paused", Some("healthy")),
                Some(
                    json!({"started": false, "status": "paused", "health": "healthy", "reason": "non-recoverable state: paused"}),
                ),
            ),
            (
                obs("dead", None),
                Some(
                    json!({"started": false, "status": "dead", "health": null, "reason": "non-recoverable state: dead"}),
                ),
            ),
        ];
        for (o, want) in rows {
            assert_eq!(wait_verdict(&o), want, "{o:?}");
        }
        assert_eq!(
            wait_not_found(),
            json!({"started": false, "status": "not_found", "reason": "container not found"})
        );
        assert_eq!(
            wait_gave_up(&Observed::unknown(), WAIT_REASON_CALL_TIMEOUT),
            json!({"started": false, "status": "unknown", "health": null, "reason": "overall timeout"})
        );
        assert_eq!(
            wait_gave_up(&obs("created", Some("starting")), WAIT_REASON_MAX_TRIES),
            json!({"started": false, "status": "created", "health": "starting", "reason": "timeout after max tries"})
        );
    }

    #[test]
    fn observed_from_inspect() {
        let rows = [
            (
                json!({"State": {"Status": "running"}}),
                obs("running", None),
            ),
            (
                json!({"State": {"Status": "running", "Health": {"Status": ""}}}),
                obs("running", None),
            ),
            (
                json!({"State": {"Status": "running", "Health": {"Status": "starting"}}}),
                obs("running", Some("starting")),
            ),
            (json!({}), obs("unknown", None)),
        ];
        for (doc, want) in rows {
            assert_eq!(Observed::from_inspect(&doc), want, "{doc}");
        }
    }

    /// H-82: image_remove shapes.
    #[test]
    fn h82_image_remove_shapes() {
        let layers = json!([{"Untagged": "img:1"}, {"Deleted": "sha256:aa"}]);
        let untag_only = json!([{"Untagged": "img:1"}]);
        assert_eq!(
            image_deleted(1234, &layers),
            json!({"deleted": true, "bytes_freed": 1234})
        );
        assert_eq!(
            image_deleted(1234, &untag_only),
            json!({"deleted": true, "bytes_freed": 0})
        );
        assert_eq!(
            image_deleted(1234, &Value::Null),
            json!({"deleted": true, "bytes_freed": 0})
        );
        assert_eq!(
            image_not_found(),
            json!({"deleted": true, "bytes_freed": 0, "reason": "not_found"})
        );
        assert_eq!(
            image_in_use(),
            json!({"deleted": false, "reason": "in_use"})
        );
    }
}
