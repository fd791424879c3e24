//! Request bodies of `/docker/exapp/*` and the names derived from them (harp-compat.md §4.4).
//!
//! Validation follows HaRP's lenient (pydantic "lax") rules: extra fields are ignored, ints
//! accept numeric strings, bools accept `true/false/0/1` (and yes/no/on/off/t/f/y/n) strings;
//! strings must be JSON strings. An unparsable body is `Invalid JSON body`; schema errors list
//! every bad field (AppAPI only logs the text and branches on the 400).

use serde_json::{Map, Value};

/// The name payload every wrapper takes (`ExAppName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExAppName {
    pub name: String,
    pub instance_id: String,
    pub role_suffix: String,
}

impl ExAppName {
    /// `nc_app_[<instance_id>_]<name>[_<role_suffix>]` (H-85).
    pub fn container(&self) -> String {
        let mut c = self.volume_stem();
        if !self.role_suffix.is_empty() {
            c.push('_');
            c.push_str(&self.role_suffix);
        }
        c
    }

    /// `nc_app_[<instance_id>_]<name>_data`: never carries the role suffix, so every role of
    /// an ExApp shares one volume (H-85).
    pub fn volume(&self) -> String {
        self.volume_stem() + "_data"
    }

    fn volume_stem(&self) -> String {
        if self.instance_id.is_empty() {
            format!("nc_app_{}", self.name)
        } else {
            format!("nc_app_{}_{}", self.instance_id, self.name)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDevice {
    Cpu,
    Cuda,
    Rocm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub source: String,
    pub target: String,
    pub mode: String,
}

/// `create` body.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePayload {
    pub name: ExAppName,
    pub image_id: String,
    pub network_mode: String,
    pub environment_variables: Vec<String>,
    pub restart_policy: String,
    pub compute_device: ComputeDevice,
    pub mount_points: Vec<MountPoint>,
    /// Copied field by field (`memory`, `nanoCPUs`) as given, whatever their JSON type.
    pub resource_limits: Map<String, Value>,
}

/// `remove` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovePayload {
    pub name: ExAppName,
    pub remove_data: bool,
}

/// `install_certificates` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertsPayload {
    pub name: ExAppName,
    pub system_certs_bundle: Option<String>,
    pub install_frp_certs: bool,
}

/// Why a body was rejected (both 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// Not JSON at all: `Invalid JSON body`.
    InvalidJson,
    /// JSON with schema errors, one `field: reason` per entry.
    Invalid(Vec<String>),
}

impl PayloadError {
    /// The 400 body HaRP sends.
    pub fn message(&self) -> String {
        match self {
            PayloadError::InvalidJson => "Invalid JSON body".to_string(),
            PayloadError::Invalid(errs) => format!("Payload validation error: {}", errs.join("; ")),
        }
    }
}

/// Field reader that collects every schema error before failing.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<String>,
}

/// Parse the body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>, PayloadError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(PayloadError::Invalid(vec![
            "body: Input should be a valid dictionary".into(),
        ])),
        Err(_) => Err(PayloadError::InvalidJson),
    }
}

impl<'a> Fields<'a> {
    fn new(obj: &'a Map<String, Value>) -> Self {
        Fields {
            obj,
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, field: &str, why: &str) {
        self.errors.push(format!("{field}: {why}"));
    }

    fn finish<T>(self, value: T) -> Result<T, PayloadError> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(PayloadError::Invalid(self.errors))
        }
    }

    /// A string field; `default` None = required.
    fn string(&mut self, field: &str, default: Option<&str>) -> String {
        match (self.obj.get(field), default) {
            (Some(Value::String(s)), _) => s.clone(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                self.fail(field, "Field required");
                String::new()
            }
            (Some(_), _) => {
                self.fail(field, "Input should be a valid string");
                String::new()
            }
        }
    }

    fn optional_string(&mut self, field: &str) -> Option<String> {
        match self.obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.fail(field, "Input should be a valid string");
                None
            }
        }
    }

    fn boolean(&mut self, field: &str, default: bool) -> bool {
        let Some(v) = self.obj.get(field) else {
            return default;
        };
        match lax_bool(v) {
            Some(b) => b,
            None => {
                self.fail(field, "Input should be a valid boolean");
                default
            }
        }
    }

    fn string_list(&mut self, field: &str) -> Vec<String> {
        match self.obj.get(field) {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect();
                strings.unwrap_or_else(|| {
                    self.fail(field, "Input should be a list of valid strings");
                    Vec::new()
                })
            }
            Some(_) => {
                self.fail(field, "Input should be a valid list");
                Vec::new()
            }
        }
    }

    fn name(&mut self) -> ExAppName {
        ExAppName {
            name: self.string("name", None),
            instance_id: self.string("instance_id", Some("")),
            role_suffix: self.string("role_suffix", Some("")),
        }
    }
}

/// pydantic lax bool: JSON bools, 0/1, and the usual truthy/falsy words.
fn lax_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "true" | "t" | "yes" | "y" | "on" => Some(true),
            "0" | "false" | "f" | "no" | "n" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub fn parse_name(body: &[u8]) -> Result<ExAppName, PayloadError> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj);
    let name = f.name();
    f.finish(name)
}

pub fn parse_remove(body: &[u8]) -> Result<RemovePayload, PayloadError> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj);
    let p = RemovePayload {
        name: f.name(),
        remove_data: f.boolean("remove_data", false),
    };
    f.finish(p)
}

pub fn parse_certs(body: &[u8]) -> Result<CertsPayload, PayloadError> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj);
    let p = CertsPayload {
        name: f.name(),
        system_certs_bundle: f.optional_string("system_certs_bundle"),
        install_frp_certs: f.boolean("install_frp_certs", true),
    };
    f.finish(p)
}

/// `image_remove` body: a non-empty `image_ref`.
pub fn parse_image_ref(body: &[u8]) -> Result<String, PayloadError> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj);
    let image_ref = f.string("image_ref", None);
    if f.errors.is_empty() && image_ref.is_empty() {
        f.fail("image_ref", "String should have at least 1 character");
    }
    f.finish(image_ref)
}

pub fn parse_create(body: &[u8]) -> Result<CreatePayload, PayloadError> {
    let obj = object(body)?;
    let mut f = Fields::new(&obj);
    let name = f.name();
    // `image` is an alias, used only when `image_id` is absent.
    let image_key = if obj.contains_key("image_id") || !obj.contains_key("image") {
        "image_id"
    } else {
        "image"
    };
    let p = CreatePayload {
        name,
        image_id: f.string(image_key, None),
        network_mode: f.string("network_mode", Some("bridge")),
        environment_variables: f.string_list("environment_variables"),
        restart_policy: f.string("restart_policy", Some("unless-stopped")),
        compute_device: compute_device(&mut f),
        mount_points: mount_points(&mut f),
        resource_limits: resource_limits(&mut f),
    };
    f.finish(p)
}

fn compute_device(f: &mut Fields<'_>) -> ComputeDevice {
    match f.string("compute_device", Some("cpu")).as_str() {
        "cpu" => ComputeDevice::Cpu,
        "cuda" => ComputeDevice::Cuda,
        "rocm" => ComputeDevice::Rocm,
        _ => {
            f.fail("compute_device", "Input should be 'cpu', 'rocm' or 'cuda'");
            ComputeDevice::Cpu
        }
    }
}

fn mount_points(f: &mut Fields<'_>) -> Vec<MountPoint> {
    let items = match f.obj.get("mount_points") {
        None => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            f.fail("mount_points", "Input should be a valid list");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            f.fail(
                &format!("mount_points.{i}"),
                "Input should be a valid dictionary",
            );
            continue;
        };
        let mut inner = Fields::new(m);
        let mp = MountPoint {
            source: inner.string("source", None),
            target: inner.string("target", None),
            mode: inner.string("mode", Some("rw")),
        };
        f.errors.extend(
            inner
                .errors
                .into_iter()
                .map(|e| format!("mount_points.{i}.{e}")),
        );
        out.push(mp);
    }
    out
}

fn resource_limits(f: &mut Fields<'_>) -> Map<String, Value> {
    match f.obj.get("resource_limits") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            f.fail("resource_limits", "Input should be a valid dictionary");
            Map::new()
        }
    }
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
